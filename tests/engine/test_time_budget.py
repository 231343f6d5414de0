"""training.time_budget (issue #21): the run ends at the budget or max_steps, whichever comes first;
the schedule runs over the elapsed fraction and always finishes its decay; a resume keeps the elapsed
time; several processes stop together on rank 0's clock."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from tiny_run import build_tiny_tokenizer, cli_command, cli_env, overrides, strict_json_lines, train_tiny

from pipelines.config import load_recipe, parse_duration
from pipelines.errors import LmforgeError

BUDGET = ["training.warmup_steps=0", "training.warmup_ratio=0.2", "training.max_steps=1000000",
          "training.logging_steps=5"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("60m", 3600), ("2h", 7200), ("1h30m", 5400),
                                           ("1.5h", 5400), ("3600", 3600), ("2M", 120)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("text", ["abc", "-5m", "0", "0m", "5 minutes", "m", "inf"])
def test_bad_durations_are_one_line_naming_the_field(text):
    with pytest.raises(LmforgeError, match=r"training\.time_budget: ") as err:
        load_recipe("bert-tiny", ["training.warmup_steps=0", f"training.time_budget={text}"])
    assert "\n" not in str(err.value)


def test_warmup_in_steps_is_refused_with_the_fix():
    with pytest.raises(LmforgeError, match=r"training\.warmup_steps=40: .*training\.warmup_ratio"):
        load_recipe("bert-tiny", ["training.time_budget=10m"])


def _lrs(out) -> list[tuple[int, float]]:
    return [(r["step"], r["lr"]) for r in strict_json_lines(out / "metrics.jsonl") if "lr" in r]


def test_the_budget_ends_the_run_and_the_schedule_finishes(tmp_path, tok):
    out = tmp_path / "budget"
    begun = time.monotonic()
    result = train_tiny(out, tok, *BUDGET, "training.time_budget=6s")
    took = time.monotonic() - begun
    results = json.loads((out / "results.json").read_text())
    assert results["ended_by"] == "time_budget" and results["time_budget_s"] == 6
    assert 6 <= results["elapsed_s"] < 6 + 5
    assert took < 6 + 60  # not the million steps
    assert 10 < result.steps < 1_000_000 and (out / "final" / "config.json").exists()
    lrs = [lr for _, lr in _lrs(out)]
    peak = max(lrs)
    assert peak > 0.5e-3  # warmup reached (about) the recipe's 1e-3
    top = lrs.index(peak)
    assert all(a <= b + 1e-12 for a, b in zip(lrs[:top], lrs[1:top + 1]))  # warmup rises
    assert all(a >= b - 1e-12 for a, b in zip(lrs[top:], lrs[top + 1:]))  # decay falls
    assert lrs[-1] < 0.1 * peak  # the decay finished with the budget
    elapsed = [r["elapsed_s"] for r in strict_json_lines(out / "metrics.jsonl") if "elapsed_s" in r]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 6


def test_max_steps_first_ends_the_run_with_the_schedule_done(tmp_path, tok):
    out = tmp_path / "steps"
    result = train_tiny(out, tok, *BUDGET[:2], "training.max_steps=12", "training.logging_steps=1",
                        "training.time_budget=1h")
    results = json.loads((out / "results.json").read_text())
    assert result.steps == 12 and results["ended_by"] == "max_steps" and results["elapsed_s"] < 600
    lrs = dict(_lrs(out))
    assert lrs[12] == pytest.approx(0.0, abs=1e-9)  # the step fraction reached 1: linear decay at 0


def test_a_resume_keeps_the_elapsed_time(tmp_path, tok):
    """SIGTERM after some training: the checkpoint records the elapsed time, and the resumed run trains
    only for what is left of the budget."""
    out = tmp_path / "resumed"
    args = overrides(out, tok, *BUDGET, "training.time_budget=8s")
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cli_command("pretrain", "bert-tiny", *args), cwd=REPO, env=cli_env(),
                                stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            records = strict_json_lines(out / "metrics.jsonl") if (out / "metrics.jsonl").exists() else []
            if any(r.get("elapsed_s", 0) >= 3 for r in records):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=240) == 143, err_path.read_text()[-3000:]
    [ckpt] = (out / "checkpoints").iterdir()
    before = json.loads((ckpt / "trainer_state.json").read_text())["elapsed"]
    assert 3 <= before < 8

    begun = time.monotonic()
    train_tiny(out, tok, *BUDGET, "training.time_budget=8s", "training.resume_from_checkpoint=latest")
    results = json.loads((out / "results.json").read_text())
    assert results["ended_by"] == "time_budget" and 8 <= results["elapsed_s"] < 8 + 5
    resumed = [r["elapsed_s"] for r in strict_json_lines(out / "metrics.jsonl") if "elapsed_s" in r]
    assert resumed[-1] >= 8 and min(resumed) < before + 2  # the curve continues from the checkpoint's clock
    assert time.monotonic() - begun < (8 - before) + 60


@pytest.mark.slow
def test_two_processes_stop_together_on_rank_0s_clock(tmp_path, tok):
    """Both ranks must take the same rates and stop at the same step (else DDP hangs or the replicas
    differ): the run finishes, at one step, with the decay done."""
    accelerate = str(Path(sys.executable).parent / "accelerate")
    out = tmp_path / "ddp"
    cmd = [accelerate, "launch", "--config_file", str(REPO / "accelerate_configs" / "multi_cpu.yaml"),
           "-m", "pipelines", "pretrain", "bert-tiny",
           *overrides(out, tok, *BUDGET, "training.per_device_train_batch_size=8", "training.time_budget=6s")]
    proc = subprocess.run(cmd, cwd=REPO, env={**cli_env(), "ACCELERATE_USE_CPU": "true"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2 and results["ended_by"] == "time_budget"
    assert 6 <= results["elapsed_s"] < 6 + 5
    lrs = [lr for _, lr in _lrs(out)]
    assert lrs[-1] < 0.1 * max(lrs)
