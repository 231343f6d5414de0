"""The spine end to end: tiny BERT pretraining -> export -> plain transformers -> GLUE fine-tuning."""

import json

import pytest
import torch
from conftest import TINY_BERT, synthetic_glue

from pipelines.config import load_recipe
from pipelines.engine.loop import train
from tasks.base import get_task


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("bert") / "run"
    recipe = load_recipe("bert-tiny", TINY_BERT + [f"training.output_dir={out}", "training.max_steps=40",
                                                   "training.save_steps=20", "training.save_total_limit=1"])
    result = train(get_task(recipe.task)(recipe), recipe)
    return result


def test_pretraining_loss_falls(pretrained):
    losses = [h["loss"] for h in pretrained.history]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses  # step-to-step noise is ~0.05
    assert all(h["tokens_per_sec"] > 0 for h in pretrained.history)


def test_checkpoints_rotate_and_are_complete(pretrained):
    ckpts = sorted((pretrained.output_dir / "checkpoints").iterdir())
    assert [c.name for c in ckpts] == ["step-000020"]  # save_total_limit=1, none half-written
    assert (ckpts[0] / "trainer_state.json").exists()


def test_export_loads_in_plain_transformers(pretrained):
    from transformers import (
        AutoModelForMaskedLM,
        AutoModelForPreTraining,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertForPreTraining,
        pipeline,
    )

    final = pretrained.output_dir / "final"
    assert (final / "model.safetensors").exists() and (final / "tokenizer.json").exists()
    tok = AutoTokenizer.from_pretrained(final)
    assert isinstance(AutoModelForPreTraining.from_pretrained(final), BertForPreTraining)
    mlm = AutoModelForMaskedLM.from_pretrained(final)
    pre = AutoModelForPreTraining.from_pretrained(final)
    enc = tok("the value of the object", return_tensors="pt")
    with torch.no_grad():  # the MLM head of both classes is the trained one
        torch.testing.assert_close(mlm(**enc).logits, pre(**enc).prediction_logits)
    clf = AutoModelForSequenceClassification.from_pretrained(final, num_labels=2)
    assert clf(**enc).logits.shape == (1, 2)
    fill = pipeline("fill-mask", model=str(final), tokenizer=str(final))
    preds = fill(f"return the {tok.mask_token} of the object.")
    assert len(preds) == 5 and all(p["token_str"] for p in preds)


def test_held_out_mlm_loss_beats_uniform_guessing(pretrained):
    """On held-out documents the MLM loss is well below ln(vocab) (uniform guessing)."""
    import math

    metrics = json.loads((pretrained.output_dir / "results.json").read_text())
    assert metrics["eval/loss/mlm"] < math.log(1000) - 0.3
    assert 0.0 <= metrics["eval/nsp_accuracy"] <= 1.0


def test_finetune_glue_from_the_export(pretrained, tmp_path, capsys):
    from pipelines.commands.finetune import run_finetune

    glue = synthetic_glue(tmp_path / "glue")
    summary = run_finetune("glue", str(pretrained.output_dir / "final"), glue_dir=str(glue),
                           output_dir=str(tmp_path / "ft"),
                           overrides=["training.num_train_epochs=4", "training.learning_rate=1e-3",
                                      "training.per_device_train_batch_size=16", "training.logging_steps=5"])
    assert list(summary) == ["sst2"]
    assert summary["sst2"]["accuracy"] > 0.9  # the label words are in the sentence
    saved = json.loads((tmp_path / "ft" / "sst2" / "eval_results.json").read_text())
    assert saved["accuracy"] == summary["sst2"]["accuracy"]
    assert "sst2" in capsys.readouterr().out
