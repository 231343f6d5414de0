"""The downstream tasks' tables in the trackers (pipelines/runs/results.py log_results): each benchmark's dev
scores under its own name and, for SQuAD, a sample of predictions vs gold; a real W&B offline run."""

import json

import pytest
from conftest import tiny_bert_checkpoint
from test_squad import SETTINGS, synthetic_squad

from pipelines.config import load_recipe
from tasks.base import get_task


@pytest.mark.parametrize("task,recipe,extra,benchmark", [
    ("squad", "squad", [], "squad"),
    ("squad_v2", "squad", ["objective.version_2_with_negative=true"], "squad_v2"),
    ("swag", "swag", [], "swag"),
    ("race", "race", [], "race"),
    ("ner", "ner", [], "ner"),
])
def test_every_downstream_benchmark_names_its_dev_table(task, recipe, extra, benchmark, tmp_path):
    r = load_recipe(recipe, ["model.name_or_path=some/checkpoint", f"objective.data={tmp_path}", *extra])
    tables = get_task(r.task)(r).tracker_tables({"f1": 0.5, "accuracy": 0.25, "loss": 1.5, "note": "text"})
    columns, rows = tables[f"{benchmark}/dev"]
    assert columns == ["metric", "value"] and rows == [["f1", 0.5], ["accuracy", 0.25]]  # no loss, numbers only
    assert set(tables) == {f"{benchmark}/dev"}  # no predictions before an evaluation


def test_extractive_squad_logs_scores_and_predictions_to_wandb_offline(tmp_path):
    from pipelines.commands.finetune import run_finetune

    ckpt = tiny_bert_checkpoint(tmp_path / "ckpt")
    data = synthetic_squad(tmp_path / "data", n_train=96, n_dev=24)
    m = run_finetune("squad", str(ckpt), data=str(data), output_dir=str(tmp_path / "run"),
                     overrides=[*SETTINGS, "training.num_train_epochs=1", "training.report_to=wandb"])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["kind"] == "finetune" and results["wandb"]["offline"] is True
    run_dir = next((tmp_path / "run" / "wandb").glob("offline-run-*"))

    def table(name):
        found = list(run_dir.glob(f"files/media/table/{name}_*.table.json"))
        assert len(found) == 1, name
        return json.loads(found[0].read_text())

    dev = table("squad/dev")
    assert dict(dev["data"]) == pytest.approx({k: m[k] for k in ("exact_match", "f1")})  # the exported evaluation
    sample = table("squad/predictions")
    assert sample["columns"] == ["id", "question", "prediction", "gold", "exact_match", "f1"]
    assert [row[0] for row in sample["data"]] == [f"d{i}" for i in range(20)]  # the first 20 dev questions
    for _, _, prediction, gold, em, f1 in sample["data"]:
        assert em in (0.0, 1.0) and em <= f1 <= 1.0 and (prediction != gold or em == 1.0)
    assert table("results")["columns"] == ["field", "value"]  # the run's own table is still there
