"""RoBERTa, ALBERT and ELECTRA end to end: a tiny pretraining run per family whose loss falls, an
export that loads with the family's Auto classes, and GLUE fine-tuning from it; plus the user
errors a family recipe can hit (unknown family, wrong tokenizer kind)."""

import pytest
import torch
from conftest import reset_accelerate, synthetic_glue

from pipelines.config import load_recipe
from pipelines.engine.loop import train
from pipelines.errors import LmforgeError
from tasks.base import get_task

TINY = ["model.config.hidden_size=64", "model.config.num_hidden_layers=2", "model.config.num_attention_heads=2",
        "model.config.intermediate_size=128", "tokenizer.vocab_size=1500", "data.max_seq_length=64",
        "data.max_documents=60", "data.validation_fraction=0.1", "data.dupe_factor=1",
        "training.mixed_precision=no", "training.per_device_train_batch_size=16", "training.logging_steps=1",
        "training.eval_steps=0", "training.save_steps=0", "training.max_eval_batches=2", "training.max_steps=25",
        "training.warmup_steps=2", "training.learning_rate=2e-3"]
FAMILY = {
    "roberta": ("roberta-tiny", ["model.config.max_position_embeddings=66"]),
    "albert": ("albert-tiny", ["model.config.embedding_size=32", "model.config.max_position_embeddings=64"]),
    "electra": ("electra-tiny", ["model.config.embedding_size=32", "model.config.max_position_embeddings=64"]),
}


@pytest.fixture(scope="module", params=list(FAMILY))
def pretrained(request, tmp_path_factory):
    family = request.param
    name, extra = FAMILY[family]
    reset_accelerate()
    out = tmp_path_factory.mktemp(family) / "run"
    recipe = load_recipe(name, TINY + extra + [f"training.output_dir={out}"])
    result = train(get_task(recipe.task)(recipe), recipe)
    reset_accelerate()
    return family, result


def test_tiny_pretraining_loss_falls(pretrained):
    family, result = pretrained
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 25
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, (family, losses)
    if family == "electra":  # both terms learn, not only the lambda-weighted discriminator
        mlm = [h["loss/mlm"] for h in result.history]
        assert sum(mlm[-5:]) < sum(mlm[:5]) - 0.5, mlm
        assert result.eval_metrics["eval/disc_accuracy"] > 0.8  # at least the share of originals


def test_export_loads_with_the_family_auto_classes(pretrained):
    from transformers import (
        AlbertForPreTraining,
        AutoModelForMaskedLM,
        AutoModelForPreTraining,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        ElectraForMaskedLM,
        ElectraForPreTraining,
        RobertaForMaskedLM,
    )

    family, result = pretrained
    final = result.output_dir / "final"
    tok = AutoTokenizer.from_pretrained(final)
    enc = tok("the value of the object", "is returned", return_tensors="pt")
    if family == "roberta":
        assert result.export_dirs == [final]
        mlm = AutoModelForMaskedLM.from_pretrained(final)
        assert isinstance(mlm, RobertaForMaskedLM) and mlm.config.max_position_embeddings == 66
        assert "token_type_ids" not in enc and mlm(**enc).logits.shape[-1] == len(tok)
    elif family == "albert":
        pre = AutoModelForPreTraining.from_pretrained(final)
        assert isinstance(pre, AlbertForPreTraining) and pre.config.embedding_size == 32
        with torch.no_grad():
            out = pre(**enc)
            torch.testing.assert_close(AutoModelForMaskedLM.from_pretrained(final)(**enc).logits, out.prediction_logits)
        assert out.sop_logits.shape == (1, 2)
    else:
        gen_dir = final.with_name("final-generator")
        assert result.export_dirs == [final, gen_dir]
        disc = AutoModelForPreTraining.from_pretrained(final)
        gen = AutoModelForMaskedLM.from_pretrained(gen_dir)
        assert isinstance(disc, ElectraForPreTraining) and isinstance(gen, ElectraForMaskedLM)
        assert gen.config.hidden_size == 16 and disc.config.hidden_size == 64
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
            torch.testing.assert_close(getattr(gen.electra.embeddings, name).weight,
                                       getattr(disc.electra.embeddings, name).weight, rtol=0, atol=0)
        torch.testing.assert_close(gen.generator_lm_head.weight, disc.electra.embeddings.word_embeddings.weight)
        assert AutoTokenizer.from_pretrained(gen_dir).vocab == tok.vocab
        assert disc(**enc).logits.shape == enc["input_ids"].shape
    clf = AutoModelForSequenceClassification.from_pretrained(final, num_labels=2)
    assert clf(**enc).logits.shape == (1, 2)


def test_glue_finetune_from_the_export(pretrained, tmp_path):
    from pipelines.commands.finetune import run_finetune

    family, result = pretrained
    reset_accelerate()
    glue = synthetic_glue(tmp_path / "glue")
    summary = run_finetune("glue", str(result.output_dir / "final"), glue_dir=str(glue),
                           output_dir=str(tmp_path / "ft"),
                           overrides=["training.num_train_epochs=10", "training.learning_rate=2e-3",
                                      "training.per_device_train_batch_size=16", "training.logging_steps=10",
                                      "data.max_seq_length=32"])
    assert summary["sst2"]["accuracy"] > 0.9, (family, summary)  # the label words are in the sentence


# --- user errors ---------------------------------------------------------------------------

def test_unknown_family_is_a_user_error_when_the_recipe_loads(tmp_path):
    with pytest.raises(LmforgeError, match="robertta"):
        load_recipe("roberta-tiny", TINY + ["model.family=robertta", f"training.output_dir={tmp_path}"])


def test_wordpiece_tokenizer_for_roberta_is_refused(tmp_path):
    from tokenizer import build_tokenizer

    folder = tmp_path / "bert-tok"
    build_tokenizer("bert", [f"sentence number {i} of a tiny corpus" for i in range(200)], 200, folder)
    recipe = load_recipe("roberta-tiny", TINY + [f"tokenizer.name_or_path={folder}", f"training.output_dir={tmp_path}"])
    with pytest.raises(LmforgeError, match=rf"tokenizer '{folder}' is wordpiece, but model.family 'roberta'.* bpe"):
        get_task(recipe.task)(recipe).load_tokenizer()


def test_albert_refuses_a_non_unigram_tokenizer(tmp_path):
    from tokenizer import build_tokenizer

    folder = tmp_path / "bpe-tok"
    build_tokenizer("roberta", [f"sentence number {i} of a tiny corpus" for i in range(200)], 300, folder)
    recipe = load_recipe("albert-tiny", TINY + [f"tokenizer.name_or_path={folder}", f"training.output_dir={tmp_path}"])
    with pytest.raises(LmforgeError, match="is bpe, but task 'albert-mlm-sop' needs unigram"):
        get_task(recipe.task)(recipe).load_tokenizer()


def test_unigram_training_is_deterministic(tmp_path):
    """sentencepiece's vocabulary depends on its thread count; a fixed count makes builds identical."""
    from pipelines.data.default_corpus import default_corpus_path
    from tokenizer import build_tokenizer

    with open(default_corpus_path(), encoding="utf-8") as f:
        lines = f.read(400_000).splitlines()
    for run in ("a", "b"):
        build_tokenizer("albert", lines, 3000, tmp_path / run)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
