"""Generative pretraining tasks (GPT-2 CLM, T5 span corruption, BART denoising): tiny end-to-end
runs whose loss falls and whose exports load with the Auto classes and generate, plus the
batch shapes each objective promises."""

import logging
import warnings

import pytest
import torch

from pipelines.config import load_recipe
from pipelines.engine.loop import train
from pipelines.errors import LmforgeError
from tasks.base import get_task

_COMMON = [
    "tokenizer.vocab_size=1000", "tokenizer.model_max_length=64", "data.max_seq_length=64",
    "data.max_documents=60", "data.validation_fraction=0.05", "training.mixed_precision=no",
    "training.max_steps=40", "training.per_device_train_batch_size=16", "training.per_device_eval_batch_size=16",
    "training.logging_steps=1", "training.eval_steps=0", "training.save_steps=0", "training.max_eval_batches=2",
    "training.warmup_steps=2", "training.learning_rate=3e-3", "training.lr_scheduler_type=linear",
]
TINY = {
    "gpt2-tiny": ["model.config.n_layer=2", "model.config.n_embd=64", "model.config.n_head=2",
                  "model.config.n_positions=64"],
    "t5-tiny": ["model.config.d_model=64", "model.config.d_ff=128", "model.config.num_layers=2",
                "model.config.num_decoder_layers=2", "model.config.num_heads=2", "model.config.d_kv=32"],
    "bart-tiny": ["model.config.d_model=64", "model.config.encoder_layers=2", "model.config.decoder_layers=2",
                  "model.config.encoder_attention_heads=2", "model.config.decoder_attention_heads=2",
                  "model.config.encoder_ffn_dim=128", "model.config.decoder_ffn_dim=128",
                  "model.config.max_position_embeddings=64"],
}


def _tiny(name, tmp_path, extra=()):
    recipe = load_recipe(name, _COMMON + TINY[name] + [f"training.output_dir={tmp_path}", *extra])
    return recipe, get_task(recipe.task)(recipe)


@pytest.fixture
def transformers_records(caplog):
    """Everything transformers logs or warns, collected (its logger does not propagate by default)."""
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield lambda: [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
    hf_logging.disable_propagation()


@pytest.mark.parametrize("name,auto", [("gpt2-tiny", "AutoModelForCausalLM"), ("t5-tiny", "AutoModelForSeq2SeqLM"),
                                       ("bart-tiny", "AutoModelForSeq2SeqLM")])
def test_tiny_pretraining_learns_and_exports_a_generating_model(name, auto, tmp_path, transformers_records):
    import transformers
    from transformers import AutoTokenizer

    recipe, task = _tiny(name, tmp_path)
    result = train(task, recipe)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 40
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.5, f"{name}: loss {first:.3f} -> {last:.3f}"
    assert "eval/loss" in result.eval_metrics

    export = result.export_dirs[0]
    model = getattr(transformers, auto).from_pretrained(export)
    tok = AutoTokenizer.from_pretrained(export)
    gen = model.generation_config
    assert gen.eos_token_id == tok.eos_token_id and gen.pad_token_id == tok.pad_token_id
    if name == "t5-tiny":  # T5 v1.1: the LM head has its own weights, also after reloading
        assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
        assert not model.config.scale_decoder_outputs
    if model.config.is_encoder_decoder:
        start = tok.pad_token_id if name == "t5-tiny" else tok.eos_token_id
        assert gen.decoder_start_token_id == model.config.decoder_start_token_id == start
    tok.padding_side = "left"  # decoder-only generation continues the prompt; harmless for encoders
    enc = tok(["The value of the", "Return a list"], return_tensors="pt", padding=True)
    before = len(transformers_records())
    out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    complaints = transformers_records()[before:]
    assert not complaints, complaints
    assert out.shape[0] == 2 and out.shape[1] > (0 if model.config.is_encoder_decoder else enc["input_ids"].shape[1])
    if name == "bart-tiny":
        assert (out[:, 0] == tok.eos_token_id).all() and (out[:, 1] == tok.bos_token_id).all()  # </s> <s> ...
    if name == "gpt2-tiny":
        assert "perplexity" in "".join(result.eval_metrics) and result.eval_metrics["eval/perplexity"] > 1


def test_clm_packing_wastes_no_positions(tmp_path):
    recipe, task = _tiny("gpt2-tiny", tmp_path)
    tok = task.load_tokenizer()
    train_data, eval_data = task.prepare(tok)
    rows = [e["input_ids"] for e in train_data]
    assert all(len(r) == 64 for r in rows[:-1]) and 0 < len(rows[-1]) <= 64
    # the blocks are the documents joined by <|endoftext|>, nothing added or lost
    from pipelines.data.prepare import documents_for

    docs, _ = documents_for(recipe, tok)
    stream = []
    for k, d in enumerate(docs):
        stream += ([tok.eos_token_id] if k else []) + [t for s in d for t in s]
    assert [t for r in rows for t in r] == stream
    batch = task.collate(train_data[:8], torch.Generator().manual_seed(0))
    assert batch["attention_mask"].all() and torch.equal(batch["labels"], batch["input_ids"])
    assert int(task.loss_counts(batch)["clm"]) == 8 * 63
    tail = task.collate([train_data[0], train_data[-1]], torch.Generator().manual_seed(0))
    assert int(task.loss_counts(tail)["clm"]) == 63 + len(rows[-1]) - 1
    # the summed loss over the counted positions is the model's own mean loss times the count
    model = task.build_model(tok)
    model.eval()
    with torch.no_grad():
        summed = task.loss(model, batch)["clm"]
        mean = model(**batch).loss
    assert float(summed) / (8 * 63) == pytest.approx(float(mean), rel=1e-5)


def test_t5_inputs_fill_the_encoder_exactly(tmp_path):
    recipe, task = _tiny("t5-tiny", tmp_path)
    tok = task.load_tokenizer()
    train_data, _ = task.prepare(tok)
    assert {len(e["tokens"]) for e in train_data} == {task.tokens_length}
    batch = task.collate(train_data[:16], torch.Generator().manual_seed(0))
    ids, labels = batch["input_ids"], batch["labels"]
    assert ids.shape == (16, 64) and batch["attention_mask"].all()
    assert (ids[:, -1] == tok.eos_token_id).all() and (ids[:, :-1] != tok.eos_token_id).all()
    assert labels.shape == (16, task.targets_length) and (labels[:, -1] == tok.eos_token_id).all()
    sentinel0 = tok.convert_tokens_to_ids("<extra_id_0>")
    assert (labels[:, 0] == sentinel0).all()
    # the decoder reads the labels shifted right behind <pad>
    assert (batch["decoder_input_ids"][:, 0] == tok.pad_token_id).all()
    assert torch.equal(batch["decoder_input_ids"][:, 1:], labels[:, :-1])


def test_bart_labels_are_the_original_text(tmp_path):
    recipe, task = _tiny("bart-tiny", tmp_path)
    tok = task.load_tokenizer()
    train_data, _ = task.prepare(tok)
    examples = train_data[:16]
    batch = task.collate(examples, torch.Generator().manual_seed(0))
    for i, sentences in enumerate(examples):
        original = [tok.bos_token_id] + [t for s in sentences for t in s] + [tok.eos_token_id]
        row = batch["labels"][i]
        assert row[row != -100].tolist() == original
        assert int(batch["attention_mask"][i].sum()) <= len(original)
    assert (batch["input_ids"] == tok.mask_token_id).any()  # infilling happened
    assert (batch["decoder_input_ids"][:, 0] == tok.eos_token_id).all()
    assert torch.equal(batch["decoder_input_ids"][:, 1:].masked_fill(batch["labels"][:, :-1] == -100, -100),
                       batch["labels"][:, :-1])


def test_fp16_is_refused_for_t5_unless_allowed(tmp_path):
    with pytest.raises(LmforgeError, match="fp16.*allow_fp16"):
        _tiny("t5-tiny", tmp_path, ["training.mixed_precision=fp16"])
    _tiny("t5-tiny", tmp_path, ["training.mixed_precision=fp16", "training.allow_fp16=true"])
    _tiny("bart-tiny", tmp_path, ["training.mixed_precision=fp16"])  # BART trained in fp16 (fairseq)


def test_recipes_default_to_bf16_and_paper_sizes():
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    for name in ("t5-small", "t5-tiny", "bart-base", "bart-tiny"):
        assert load_recipe(name).training.mixed_precision == "bf16"
    sizes = (("gpt2-small", AutoModelForCausalLM, 124.4), ("bart-base", AutoModelForSeq2SeqLM, 139.4))
    for name, auto, millions in sizes:
        r = load_recipe(name)
        config = AutoConfig.for_model(r.model.family, vocab_size=r.tokenizer.vocab_size, **r.model.config)
        with torch.device("meta"):
            model = auto.from_config(config)
        assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.1)


def test_bad_noise_parameters_are_user_errors():
    with pytest.raises(LmforgeError, match="mask_ratio"):
        get_task("bart-denoising")(load_recipe("bart-tiny", ["objective.mask_ratio=1.5"]))
    with pytest.raises(LmforgeError, match="noise_density"):
        get_task("t5-span-corruption")(load_recipe("t5-tiny", ["objective.noise_density=0"]))


def test_shifted_loss_equals_the_sliced_logits_loss():
    """The CLM loss shifts the labels instead of slicing the logits (no [B, T, V] copy): same sum."""
    import torch

    from tasks.objectives.gpt_clm import shifted_ce_sum

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g, requires_grad=True)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[1, 4:] = -100  # a padded row
    sliced = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1),
                                               ignore_index=-100, reduction="sum")
    ours = shifted_ce_sum(logits, labels)
    torch.testing.assert_close(ours, sliced)
    (g1,) = torch.autograd.grad(ours, logits)
    (g2,) = torch.autograd.grad(sliced, logits)
    torch.testing.assert_close(g1, g2)
    assert g1[:, -1].abs().sum() == 0  # the last position predicts nothing
