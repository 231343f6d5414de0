"""Per-task defaults in glue.yaml (`per_task:`): the task's entry applies over the recipe, a recipe
extending it and the command line win over the entry, and a bad mapping is one error at load."""

import os
import subprocess
import sys

import pytest
from conftest import REPO

from pipelines.config import load_recipe
from pipelines.errors import LmforgeError


def _training(task, *overrides, recipe="glue"):
    return load_recipe(recipe, [f"objective.glue_task={task}", *overrides]).training


def test_small_tasks_get_more_epochs_large_ones_the_recipe_defaults():
    rte, sst2, mnli = _training("rte"), _training("sst2"), _training("mnli")
    assert (rte.num_train_epochs, rte.per_device_train_batch_size, rte.warmup_ratio) == (10, 16, 0.06)
    assert (sst2.num_train_epochs, sst2.per_device_train_batch_size, sst2.warmup_ratio) == (3, 32, 0.1)
    assert mnli.num_train_epochs == 3 and rte.learning_rate == sst2.learning_rate


def test_command_line_wins_over_the_task_entry():
    t = _training("rte", "training.num_train_epochs=2", "training.warmup_ratio=0.2")
    assert (t.num_train_epochs, t.warmup_ratio, t.per_device_train_batch_size) == (2, 0.2, 16)
    # the task named last on the command line picks the entry
    assert load_recipe("glue", ["objective.glue_task=sst2", "objective.glue_task=cola"]).training.num_train_epochs == 10


def test_a_recipe_extending_glue_wins_over_its_task_entries(tmp_path):
    mine = tmp_path / "my-glue.yaml"
    mine.write_text("base: glue\ntraining:\n  per_device_train_batch_size: 8\n"
                    "per_task:\n  rte: {training: {learning_rate: 3.0e-5}}\n")
    t = _training("rte", recipe=str(mine))
    assert (t.per_device_train_batch_size, t.num_train_epochs, t.learning_rate) == (8, 10, 3e-5)
    assert _training("sst2", recipe=str(mine)).learning_rate == 1e-4


@pytest.mark.parametrize("per_task, words", [
    ("rtee: {training: {num_train_epochs: 3}}", "per_task: unknown GLUE task 'rtee'"),
    ("rte: {training: {num_train_epoch: 3}}", "per_task.rte: field 'training.num_train_epoch'"),
    ("rte: {training: {num_train_epochs: many}}", "per_task.rte: field 'training.num_train_epochs'"),
    ("rte: {objective: {glue_task: sst2}}", "per_task.rte: objective.glue_task cannot be set per task"),
    ("rte: 10", "per_task.rte: expected a mapping of recipe fields"),
])
def test_bad_per_task_mapping_is_one_error_at_load(tmp_path, per_task, words):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: glue\nper_task:\n  {per_task}\n")
    with pytest.raises(LmforgeError, match=words.replace(".", r"\.")):
        load_recipe(str(bad), ["objective.glue_task=sst2"])  # even when that entry is not the one used


def test_per_task_without_a_glue_task_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: bert-mlm-nsp\nper_task:\n  rte: {training: {num_train_epochs: 3}}\n")
    with pytest.raises(LmforgeError, match="per_task: needs objective.glue_task"):
        load_recipe(str(bad))


def test_cli_prints_one_line_for_an_unknown_task_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: glue\nper_task:\n  sst-2: {training: {num_train_epochs: 3}}\n")
    proc = subprocess.run([sys.executable, "-m", "pipelines", "pretrain", str(bad)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("lmforge: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert "per_task: unknown GLUE task 'sst-2'" in errors[0] and "sst2" in errors[0]
