"""LoRA fine-tuning (objective.peft=lora): per-family targets and heads, the trainable count, the
adapter folder, and a merged export that is a plain transformers folder giving the adapter's outputs.

Tiny random checkpoints (hidden 32, 2 layers, vocab ~1000) trained for a few steps on the synthetic
SST-2 folder: what is tested is the plumbing, not accuracy.
"""

import pytest
from conftest import synthetic_glue

from pipelines.commands.finetune import run_finetune
from pipelines.errors import LmforgeError

_RUN = ["objective.peft=lora", "objective.lora.r=4", "objective.lora.dropout=0.0", "training.max_steps=6",
        "training.per_device_train_batch_size=16", "training.logging_steps=3", "training.learning_rate=1e-2",
        "objective.max_eval_examples=32"]


def _tiny_checkpoint(family, out):
    import torch
    import transformers

    from pipelines.data.default_corpus import default_corpus_path
    from tokenizer import build_tokenizer

    lines = [ln for ln in default_corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()][:2000]
    tok = build_tokenizer(family, lines, 1000, out, model_max_length=64)
    torch.manual_seed(0)
    ids = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    enc = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=80, **ids)
    if family == "bert":
        model = transformers.BertForMaskedLM(transformers.BertConfig(**enc))
    elif family == "roberta":
        model = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**enc))
    elif family == "modernbert":  # every layer global: packing needs that (padding_free.unsupported_reason)
        model = transformers.ModernBertForMaskedLM(transformers.ModernBertConfig(
            layer_types=["full_attention"] * 2, cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id,
            bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, **enc))
    elif family == "roberta-prelayernorm":
        model = transformers.RobertaPreLayerNormForMaskedLM(transformers.RobertaPreLayerNormConfig(**enc))
    elif family == "electra":
        model = transformers.ElectraForPreTraining(transformers.ElectraConfig(embedding_size=32, **enc))
    elif family == "albert":  # one shared layer group, factorised embeddings
        model = transformers.AlbertForMaskedLM(transformers.AlbertConfig(embedding_size=16, **enc))
    elif family == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=2, n_embd=32, n_head=2, n_positions=64, eos_token_id=tok.eos_token_id, **ids))
    elif family == "t5":
        model = transformers.T5ForConditionalGeneration(transformers.T5Config(
            d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id, **ids))
    else:  # bart
        model = transformers.BartForConditionalGeneration(transformers.BartConfig(
            d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id, **ids))
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    return str(synthetic_glue(tmp_path_factory.mktemp("glue") / "glue"))


@pytest.mark.parametrize("family,target", [("bert", "query"), ("roberta", "value"), ("electra", "query"),
                                           ("albert", "value"), ("gpt2", "c_attn"), ("bart", "q_proj"),
                                           ("t5", "SelfAttention.q")])
def test_lora_exports_adapter_and_equivalent_merged_model(family, target, sst2, tmp_path, capsys):
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    base = _tiny_checkpoint(family, tmp_path / "base")
    # T5 through recipe glue (T5ForSequenceClassification), not the text-to-text default
    run_finetune("glue/sst2", base, glue_dir=sst2, output_dir=str(tmp_path / "ft"), overrides=_RUN,
                 recipe_name="glue")
    assert "trainable parameters of" in capsys.readouterr().out
    final, adapter = tmp_path / "ft" / "sst2" / "final", tmp_path / "ft" / "sst2" / "final-adapter"
    assert (adapter / "adapter_config.json").exists() and not (final / "adapter_config.json").exists()

    merged = AutoModelForSequenceClassification.from_pretrained(final).eval()  # a plain transformers folder
    assert not any("lora" in n for n, _ in merged.named_parameters())
    base_model = AutoModelForSequenceClassification.from_pretrained(base, config=AutoConfig.from_pretrained(final))
    peft_model = PeftModel.from_pretrained(base_model, adapter).eval()
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n and target in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # trained: the merge is not a no-op

    tok = AutoTokenizer.from_pretrained(final)
    batch = tok(["the value is good", "awful object is the value"], padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None) if family not in ("bert", "electra", "albert") else None
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, peft_model(**batch).logits, atol=1e-5, rtol=0)


def test_lora_trains_only_adapters_and_head():
    """The family's head is trained in full (modules_to_save); every other base weight is frozen."""
    import transformers

    from tasks.finetuning.lora import LoraParams, wrap_lora

    config = transformers.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64)
    model = wrap_lora(transformers.AlbertForSequenceClassification(config), LoraParams(r=2), "test")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert any("attention.query.lora_A" in n for n in trainable) and any("classifier" in n for n in trainable)


def test_lora_user_mistakes(tmp_path):
    import transformers

    from pipelines.config import load_recipe
    from tasks.base import get_task
    from tasks.finetuning.lora import LoraParams, wrap_lora

    def make(*overrides):
        recipe = load_recipe("glue", ["model.name_or_path=x", *overrides])
        return get_task(recipe.task)(recipe)

    with pytest.raises(LmforgeError, match="peft: 'qlora' is not one of"):
        make("objective.peft=qlora")
    with pytest.raises(LmforgeError, match=r"lora.r: 0 is out of range"):
        make("objective.peft=lora", "objective.lora.r=0")
    with pytest.raises(LmforgeError, match="lora.dropout"):
        make("objective.lora.dropout=1.5")
    with pytest.raises(LmforgeError, match="rank"):
        make("objective.lora.rank=4")  # unknown key
    with pytest.raises(LmforgeError, match="not supported by text-to-text"):
        recipe = load_recipe("glue-t5", ["model.name_or_path=x", "objective.peft=lora"])
        get_task(recipe.task)(recipe)
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    with pytest.raises(LmforgeError, match="c_attn not found"):
        wrap_lora(bert, LoraParams(target_modules=["c_attn"]), "test")
