"""model.config in fine-tuning changes the checkpoint's config (as run_glue's --config_overrides does),
checked against the checkpoint's own Config class: ModernBERT's classifier_pooling is accepted (the
recipes' default family is bert), the export carries the change, run.json names the checkpoint's
family, a typo is refused in one line naming that class, and a BERT dropout change is applied rather
than ignored."""

import json

import pytest
from conftest import synthetic_glue
from test_lora import _tiny_checkpoint
from transformers import AutoConfig

from pipelines.commands.finetune import run_finetune
from pipelines.errors import LmforgeError

SHORT = ["training.max_steps=2", "training.mixed_precision=no", "training.per_device_train_batch_size=8"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {f: _tiny_checkpoint(f, root / f) for f in ("modernbert", "bert")}


@pytest.fixture(scope="module")
def glue(tmp_path_factory):
    return synthetic_glue(tmp_path_factory.mktemp("glue"))


def test_modernbert_pooling_change_reaches_the_trained_model(checkpoints, glue, tmp_path):
    out = tmp_path / "run"
    scores = run_finetune("glue/sst2", str(checkpoints["modernbert"]), glue_dir=str(glue), output_dir=str(out),
                          overrides=[*SHORT, "model.config.classifier_pooling=mean"])["sst2"]
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert AutoConfig.from_pretrained(out / "sst2" / "final").classifier_pooling == "mean"
    identity = json.loads((out / "sst2" / "run.json").read_text())["identity"]
    assert identity["model.family"] == "modernbert"
    assert AutoConfig.from_pretrained(checkpoints["modernbert"]).classifier_pooling == "cls"  # the input is untouched


def test_a_field_the_checkpoint_config_lacks_is_refused_in_one_line(checkpoints, glue, tmp_path):
    with pytest.raises(LmforgeError, match=r"model.config.classifier_poling: not a field of ModernBertConfig") as e:
        run_finetune("glue/sst2", str(checkpoints["modernbert"]), glue_dir=str(glue), output_dir=str(tmp_path),
                     overrides=[*SHORT, "model.config.classifier_poling=mean"])
    assert "\n" not in str(e.value)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_bert_dropout_change_is_applied(checkpoints, glue, tmp_path):
    out = tmp_path / "run"
    run_finetune("glue/sst2", str(checkpoints["bert"]), glue_dir=str(glue), output_dir=str(out),
                 overrides=[*SHORT, "model.config.hidden_dropout_prob=0.0"])
    assert AutoConfig.from_pretrained(checkpoints["bert"]).hidden_dropout_prob == 0.1
    assert AutoConfig.from_pretrained(out / "sst2" / "final").hidden_dropout_prob == 0.0
