"""Fine-tuning beyond encoders: T5 GLUE as text-to-text, GPT-2 / BART classification heads through
task "glue", summarization with beam search + ROUGE / BLEU, and the user mistakes around them.

The checkpoints are built here (tiny T5 / BART / GPT-2 with tokenizers trained on the embedded
corpus), saved with save_pretrained: exactly what the pretraining recipes export.
"""

import json
import random

import pytest
from test_bert_e2e import _synthetic_glue

from pipelines.errors import LmforgeError
from pipelines.finetune import run_finetune

_RUN = ["training.logging_steps=5", "training.per_device_train_batch_size=16", "training.warmup_ratio=0.05"]


@pytest.fixture(scope="module")
def corpus_lines():
    from pipelines.corpus import default_corpus_path

    lines = [ln for ln in default_corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()]
    return lines[:2000]


def _tiny_checkpoint(family, lines, out):
    """A save_pretrained folder (model + tokenizer) of a freshly initialised tiny model."""
    import transformers

    from tokenizer import build_tokenizer

    tok = build_tokenizer(family, lines, 1000, out, model_max_length=64)
    ids = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    if family == "t5":
        config = transformers.T5Config(d_model=64, d_ff=128, num_layers=2, num_heads=2, d_kv=32, dropout_rate=0.0,
                                       decoder_start_token_id=tok.pad_token_id, **ids)
        model = transformers.T5ForConditionalGeneration(config)
    elif family == "bart":
        config = transformers.BartConfig(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                                         decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                                         max_position_embeddings=64, dropout=0.0, bos_token_id=tok.bos_token_id,
                                         decoder_start_token_id=tok.eos_token_id, **ids)
        model = transformers.BartForConditionalGeneration(config)
    else:
        config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=64, resid_pdrop=0.0,
                                         embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.bos_token_id, **ids)
        model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, corpus_lines):
    root = tmp_path_factory.mktemp("ckpt")
    return {f: _tiny_checkpoint(f, corpus_lines, root / f) for f in ("t5", "bart", "gpt2")}


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    return str(_synthetic_glue(tmp_path_factory.mktemp("glue") / "glue"))


# --- GLUE ---------------------------------------------------------------------------------------


def test_t5_learns_glue_label_words(checkpoints, sst2, tmp_path):
    summary = run_finetune("glue/sst2", checkpoints["t5"], glue_dir=sst2, output_dir=str(tmp_path),
                           overrides=_RUN + ["training.num_train_epochs=8", "training.learning_rate=3e-3"])
    metrics = summary["sst2"]
    assert metrics["accuracy"] > 0.9, metrics  # the label word is readable from the sentence
    assert 0.0 <= metrics["unparsable"] < 0.1, metrics
    recipe = json.loads((tmp_path / "sst2" / "recipe.json").read_text())
    assert recipe["task"] == "glue-t5"  # chosen from the checkpoint's model_type


def test_t5_glue_counts_unparsable_output_as_wrong(checkpoints, sst2, tmp_path):
    """Untrained, the model emits no label word: all of it is unparsable and scored as wrong."""
    summary = run_finetune("glue/sst2", checkpoints["t5"], glue_dir=sst2, output_dir=str(tmp_path),
                           overrides=_RUN + ["training.max_steps=1", "training.learning_rate=1e-9"])
    assert summary["sst2"]["unparsable"] == 1.0
    assert summary["sst2"]["accuracy"] == 0.0


def test_t5_glue_parses_and_scores_regression_and_pairs(checkpoints):
    """STS-B: numbers parse, non-numbers and NaN fall back to the training mean; MRPC: an unparsable
    output becomes the other class, which binary F1 accepts (an id of -1 would not)."""
    from pipelines.config import load_recipe
    from tasks.base import get_task
    from tasks.metrics import glue_metric

    def task(name):
        recipe = load_recipe("glue-t5", [f"model.name_or_path={checkpoints['t5']}", f"objective.glue_task={name}"])
        return get_task(recipe.task)(recipe)

    stsb = task("stsb")
    stsb.mean_label = 2.5
    assert stsb.parse("3.8", 1.0) == (3.8, True)
    assert stsb.parse("nan", 1.0) == (2.5, False) and stsb.parse("similar", 1.0) == (2.5, False)
    assert len(stsb.label_words()) == 26 and stsb.label_words()[-1] == "5.0"
    mrpc = task("mrpc")
    assert mrpc.parse("equivalent", 0) == (1, True)
    assert mrpc.parse("maybe", 1) == (0, False) and mrpc.parse("maybe", 0) == (1, False)
    scores = glue_metric("mrpc", [mrpc.parse(t, r)[0] for t, r in (("maybe", 1), ("equivalent", 1))], [1, 1])
    assert scores["accuracy"] == 0.5 and 0 < scores["f1"] < 1


@pytest.mark.parametrize("family", ["gpt2", "bart"])
def test_decoder_and_encoder_decoder_classify_through_glue(family, checkpoints, sst2, tmp_path):
    from transformers import AutoConfig

    summary = run_finetune("glue/sst2", checkpoints[family], glue_dir=sst2, output_dir=str(tmp_path),
                           overrides=_RUN + ["training.num_train_epochs=6", "training.learning_rate=3e-3"])
    assert summary["sst2"]["accuracy"] > 0.85, summary
    export = tmp_path / "sst2" / "final"
    config = AutoConfig.from_pretrained(export)
    assert config.architectures[0].endswith("ForSequenceClassification")
    assert config.pad_token_id == 1  # the tokenizer's <pad>, not <|endoftext|> / </s>
