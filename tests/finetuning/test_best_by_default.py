"""GLUE fine-tuning evaluates every epoch and exports the best evaluation by default; early stopping
(objective.early_stopping_patience) ends training through the engine's best keeper (pipelines/engine/best.py); the
kept copy of a LoRA model holds the trained weights only."""

import json

import pytest
from conftest import synthetic_glue, tiny_bert_checkpoint

from pipelines.errors import LmforgeError

# 128 training examples at batch 16: 8 steps per epoch
QUICK = ["objective.max_train_examples=128", "training.per_device_train_batch_size=16", "training.logging_steps=1"]


def _evals(run_dir):
    """[(step, accuracy, loss) of each evaluation], the last training step."""
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return ([(r["step"], r["eval/accuracy"], r["eval/loss"]) for r in rows if "eval/accuracy" in r],
            max(r["step"] for r in rows if "loss" in r))


def test_every_epoch_evaluated_and_the_best_exported_by_default(tmp_path):
    import torch
    import transformers

    from pipelines.commands.finetune import run_finetune
    from pipelines.data.glue import load_glue_local

    tiny_bert_checkpoint(tmp_path / "base")
    glue = synthetic_glue(tmp_path / "glue")
    summary = run_finetune("glue/sst2", str(tmp_path / "base"), glue_dir=str(glue), output_dir=str(tmp_path / "ft"),
                           overrides=QUICK + ["training.num_train_epochs=3", "training.learning_rate=1e-2"])
    evals, last = _evals(tmp_path / "ft" / "sst2")
    assert [s for s, *_ in evals] == [8, 16, 24] and last == 24  # one evaluation per epoch, no override needed
    assert len({a for _, a, _ in evals}) > 1, "the accuracy must move for this test to mean anything"
    best = max(range(3), key=lambda i: (evals[i][1], -i))  # ties keep the earlier evaluation
    assert best < 2, "the best evaluation must not be the last one for this test to mean anything"
    report = json.loads((tmp_path / "ft" / "sst2" / "eval_results.json").read_text())
    assert report["exported"] == {"metric": "accuracy", "score": evals[best][1], "evaluation": best + 1,
                                  "evaluations": 3, "step": evals[best][0], "stopped_early_at": None, "patience": 0}
    assert summary["sst2"]["accuracy"] == report["accuracy"] == evals[best][1]

    # the export holds that evaluation's weights: its dev loss is the one logged then, not the last one
    export = tmp_path / "ft" / "sst2" / "final"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(export).eval()
    dev = load_glue_local(glue, "sst2", "validation")
    enc = transformers.AutoTokenizer.from_pretrained(export)(list(dev["sentence1"]), padding=True, return_tensors="pt")
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(**enc).logits, torch.tensor(list(dev["label"]))).item()
    assert loss == pytest.approx(evals[best][2], rel=1e-4) and loss != pytest.approx(evals[-1][2], rel=1e-4)


def test_early_stopping_ends_training_after_patience_evaluations(tmp_path, capsys):
    from pipelines.commands.finetune import run_finetune

    tiny_bert_checkpoint(tmp_path / "base")
    glue = synthetic_glue(tmp_path / "glue")
    # a rate too small to change a prediction: evaluation 1 stays the best, evaluation 2 is no gain
    run_finetune("glue/sst2", str(tmp_path / "base"), glue_dir=str(glue), output_dir=str(tmp_path / "ft"),
                 overrides=QUICK + ["training.num_train_epochs=10", "training.learning_rate=1e-12",
                                    "objective.early_stopping_patience=1"])
    evals, last = _evals(tmp_path / "ft" / "sst2")
    assert last == 16, "trained past the early stop (10 epochs would be 80 steps)"
    assert [s for s, *_ in evals] == [8, 16, 16]  # the final evaluation (finish) is logged at the stopping step
    exported = json.loads((tmp_path / "ft" / "sst2" / "eval_results.json").read_text())["exported"]
    assert (exported["evaluation"], exported["evaluations"], exported["step"]) == (1, 2, 8)
    assert exported["stopped_early_at"] == 16
    assert "stopped early at step 16" in capsys.readouterr().out


@pytest.mark.parametrize("overrides, words", [
    (["objective.early_stopping_patience=2", "objective.export_best=false"], "early_stopping_patience: 2 needs"),
    (["objective.early_stopping_patience=-1"], "early_stopping_patience: -1 is out of range"),
])
def test_bad_early_stopping_settings(overrides, words):
    from pipelines.config import load_recipe
    from tasks.base import get_task

    recipe = load_recipe("glue", ["model.name_or_path=x"] + overrides)
    with pytest.raises(LmforgeError, match=words):
        get_task(recipe.task)(recipe)


def test_lora_best_copy_holds_only_trained_weights(tmp_path):
    import torch
    import transformers

    from pipelines.engine.best import BestKeeper
    from tasks.finetuning.lora import LoraParams, wrap_lora

    tiny_bert_checkpoint(tmp_path / "base")
    model = wrap_lora(transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base",
                                                                                      num_labels=2), LoraParams(), "t")
    keeper = BestKeeper("accuracy")
    keeper.update(model, {"accuracy": 0.7})
    params = dict(model.named_parameters())
    kept = [n for n in keeper.state if n in params]
    assert kept and all(params[n].requires_grad for n in kept)  # no frozen base weight is copied
    assert {n for n, p in params.items() if p.requires_grad} == set(kept)
    assert all(t.device.type == "cpu" for t in keeper.state.values())
    lora_a = next(n for n in kept if "lora_A" in n)
    best = params[lora_a].detach().clone()
    with torch.no_grad():
        params[lora_a].add_(1.0)
    keeper.update(model, {"accuracy": 0.6})
    keeper.restore(model)
    assert torch.equal(params[lora_a], best)
