"""Tracking: W&B through accelerate's tracker, offline when not logged in; the local metrics log."""

import json
import os

from conftest import TINY_BERT

from pipelines.config import load_recipe
from pipelines.engine.loop import train
from tasks.base import get_task


def test_wandb_runs_offline_and_logs_the_losses(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the default must be offline by itself
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    recipe = load_recipe("bert-tiny", TINY_BERT + [f"training.output_dir={tmp_path / 'run'}", "training.max_steps=3",
                                                   "training.report_to=wandb"])
    train(get_task(recipe.task)(recipe), recipe)
    assert os.environ["WANDB_MODE"] == "offline"
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    logged = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in logged if "lr" in r] == [1, 2, 3]
    assert all({"loss", "loss/mlm", "loss/nsp", "tokens_per_sec", "grad_norm"} <= r.keys() for r in logged if "lr" in r)


def test_unknown_reporter_is_refused(tmp_path):
    import pytest

    from pipelines.errors import LmforgeError

    with pytest.raises(LmforgeError, match="training.report_to: 'mlflw'"):  # at load, before any training
        load_recipe("bert-tiny", TINY_BERT + [f"training.output_dir={tmp_path}", "training.report_to=mlflw"])
    from pipelines.runs.tracking import log_with

    with pytest.raises(LmforgeError, match="mlflw"):  # and in the engine, for recipes built by hand
        log_with("mlflw")


def test_tensorboard_without_its_package_is_refused_not_silently_untracked():
    import importlib.util

    import pytest

    from pipelines.errors import LmforgeError
    from pipelines.runs.tracking import log_with

    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        assert log_with("tensorboard") == "tensorboard"
        return
    with pytest.raises(LmforgeError, match=r"package is not installed; pip install 'lmforge\[tensorboard\]'"):
        log_with("tensorboard")
