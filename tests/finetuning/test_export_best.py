"""objective.export_best: the export holds the weights of the best dev evaluation (periodic ones via
training.eval_steps, and the final one), and the reported scores are that evaluation's."""

import json

import pytest
from conftest import synthetic_glue, tiny_bert_checkpoint

from pipelines.errors import LmforgeError


def test_best_keeper_restores_the_best_weights():
    import torch

    from pipelines.engine.best import BestKeeper

    model = torch.nn.Linear(2, 2)
    keeper = BestKeeper("accuracy")
    keeper.update(model, {"accuracy": 0.5})
    best = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    keeper.update(model, {"accuracy": 0.5})  # a tie keeps the earlier evaluation
    keeper.update(model, {"accuracy": 0.4})
    keeper.restore(model)
    assert torch.equal(model.weight, best) and keeper.best_at == 1 and keeper.evaluations == 3


def test_export_best_exports_the_best_evaluation(tmp_path):
    import transformers

    from pipelines.commands.finetune import run_finetune
    from pipelines.data.glue import load_glue_local
    from tasks.finetuning.submission import predict

    tiny_bert_checkpoint(tmp_path / "base")
    glue = synthetic_glue(tmp_path / "glue")
    # a rate high enough that the dev accuracy moves between evaluations
    summary = run_finetune("glue/sst2", str(tmp_path / "base"), glue_dir=str(glue), output_dir=str(tmp_path / "ft"),
                           overrides=["objective.export_best=true", "training.eval_steps=2", "training.max_steps=8",
                                      "training.per_device_train_batch_size=16", "training.learning_rate=5e-3",
                                      "training.logging_steps=2"])
    logged = [json.loads(ln) for ln in (tmp_path / "ft" / "sst2" / "metrics.jsonl").read_text().splitlines()]
    accs = [r["eval/accuracy"] for r in logged if "eval/accuracy" in r]
    assert len(accs) >= 3 and summary["sst2"]["accuracy"] == max(accs)

    export = tmp_path / "ft" / "sst2" / "final"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(export)
    dev = load_glue_local(glue, "sst2", "validation")
    preds = predict(model, transformers.AutoTokenizer.from_pretrained(export), [dev["sentence1"]], 64)
    assert sum(p == y for p, y in zip(preds, dev["label"])) / len(preds) == pytest.approx(max(accs))


def test_export_best_refused_by_text_to_text():
    from pipelines.config import load_recipe
    from tasks.base import get_task

    recipe = load_recipe("glue-t5", ["model.name_or_path=x", "objective.export_best=true"])
    with pytest.raises(LmforgeError, match="export_best: not supported"):
        get_task(recipe.task)(recipe)
