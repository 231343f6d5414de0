"""pipelines/engine/flops.py: each family's training FLOPs per token (a) against a hand count written out
here, (b) against torch's FlopCounterMode on a real forward + backward through the task's own loss.

FlopCounterMode counts mm / addmm / bmm (and the CUDA sdpa kernels); on CPU it counts NOTHING for
scaled_dot_product_attention (its CPU kernel has no FLOP formula), so the models here run eager
attention, whose Q K^T and weights x V are bmm's. It counts the same matmuls as the formula, so
with the batch's real mask count and lengths the two agree exactly; the tasks' own estimate
(expected mask rate, expected lengths) is compared within a few percent.
"""

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AlbertConfig,
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSeq2SeqLM,
    BartConfig,
    BertConfig,
    ElectraConfig,
    GPT2Config,
    RobertaConfig,
    T5Config,
)

from pipelines.config import load_recipe
from pipelines.engine import flops
from tasks.base import get_task
from tasks.objectives.electra_rtd import ElectraPretrainingModel, generator_config
from tasks.shared.masking import select_tokens

# one small shape for every family: 2 layers, width 64, FFN 256, vocabulary 1,000, 32 tokens
L, H, F, V, T, RATE = 2, 64, 256, 1000, 32, 0.15


def self_attention(n, h, a):
    """Q, K, V projections, scores, weighted values, output projection: written out per test below
    too; this one only for the decoders' extra blocks."""
    return 3 * 2 * n * h * a + 2 * n * n * a + 2 * n * n * a + 2 * n * a * h


# --- (a) hand counts --------------------------------------------------------------------------

def bert_layer(t=T, h=H, f=F):
    qkv = 3 * 2 * t * h * h
    scores = 2 * t * t * h  # Q K^T: t x t per head, head sizes sum to h
    weighted_values = 2 * t * t * h
    out = 2 * t * h * h
    ffn = 2 * t * h * f + 2 * t * f * h
    return qkv + scores + weighted_values + out + ffn


def test_bert_mlm_nsp_hand_count():
    cfg = BertConfig(hidden_size=H, num_hidden_layers=L, num_attention_heads=4, intermediate_size=F, vocab_size=V)
    transform = 2 * T * H * H  # the MLM head's dense H -> H, at every position
    vocab = 2 * (RATE * T) * H * V  # only at the masked rows (sparse prediction)
    pooler_nsp = 2 * H * H + 2 * H * 2  # once per sequence, at [CLS]
    expected = 3 * (L * bert_layer() + transform + vocab + pooler_nsp) / T
    assert flops.mlm_flops_per_token(cfg, T, RATE, pair_head=True) == pytest.approx(expected, rel=1e-12)
    dense = 3 * (L * bert_layer() + transform + 2 * T * H * V + pooler_nsp) / T
    assert flops.mlm_flops_per_token(cfg, T, 1.0, pair_head=True) == pytest.approx(dense, rel=1e-12)
    # the point of sparse prediction at this size: the vocabulary projection is a large share
    assert 2 * T * H * V / (L * bert_layer() + transform + 2 * T * H * V) > 0.2


def test_roberta_hand_count():
    cfg = RobertaConfig(hidden_size=H, num_hidden_layers=L, num_attention_heads=4, intermediate_size=F,
                        vocab_size=V)
    expected = 3 * (L * bert_layer() + 2 * T * H * H + 2 * (RATE * T) * H * V) / T  # no pooler in ForMaskedLM
    assert flops.mlm_flops_per_token(cfg, T, RATE) == pytest.approx(expected, rel=1e-12)


def test_albert_hand_count():
    E = 16
    cfg = AlbertConfig(embedding_size=E, hidden_size=H, num_hidden_layers=L, num_attention_heads=4,
                       intermediate_size=F, vocab_size=V)
    projection = 2 * T * E * H  # embedding_hidden_mapping_in, E -> H
    head = 2 * T * H * E + 2 * (RATE * T) * E * V  # dense H -> E at every position, E -> V at the masked
    sop = 2 * H * H + 2 * H * 2
    expected = 3 * (projection + L * bert_layer() + head + sop) / T  # shared weights: every layer still runs
    assert flops.mlm_flops_per_token(cfg, T, RATE, pair_head=True) == pytest.approx(expected, rel=1e-12)


def test_electra_hand_count():
    E = 32
    disc = ElectraConfig(embedding_size=E, hidden_size=H, num_hidden_layers=L, num_attention_heads=4,
                         intermediate_size=F, vocab_size=V)
    gen = generator_config(disc, 4.0)  # width 16, FFN 64, one head
    h, f = 16, 64
    generator = 2 * T * E * h + L * bert_layer(h=h, f=f) + 2 * T * h * E + 2 * (RATE * T) * E * V
    discriminator = 2 * T * E * H + L * bert_layer() + 2 * T * H * H + 2 * T * H * 1  # 1-wide head
    expected = 3 * (generator + discriminator) / T
    assert flops.electra_flops_per_token(gen, disc, T, RATE) == pytest.approx(expected, rel=1e-12)


def test_gpt2_hand_count():
    cfg = GPT2Config(n_layer=L, n_embd=H, n_head=4, vocab_size=V)  # n_inner None: 4 x 64 = 256 = F
    head = 2 * T * H * V  # tied to the input embedding, still a full product at every position
    expected = 3 * (L * bert_layer() + head) / T  # causal attention counted over the full T x T
    assert flops.clm_flops_per_token(cfg, T) == pytest.approx(expected, rel=1e-12)


def test_t5_hand_count():
    # T5 v1.1 shapes: d_kv x heads (32) != d_model (64), gated-GELU FFN, decoder targets shorter
    d, a, f, te, td = 64, 2 * 16, 128, T, 8
    cfg = T5Config(d_model=d, num_heads=2, d_kv=16, d_ff=f, num_layers=2, num_decoder_layers=3, vocab_size=V,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    enc_layer = (3 * 2 * te * d * a + 2 * te * te * a + 2 * te * te * a + 2 * te * a * d
                 + 3 * 2 * te * d * f)  # wi_0, wi_1 and wo
    cross = 2 * td * d * a + 2 * 2 * te * d * a + 2 * td * te * a + 2 * td * te * a + 2 * td * a * d
    dec_layer = self_attention(td, d, a) + cross + 3 * 2 * td * d * f
    head = 2 * td * d * V
    expected = 3 * (2 * enc_layer + 3 * dec_layer + head) / te  # per ENCODER input token
    assert flops.seq2seq_flops_per_token(cfg, te, td) == pytest.approx(expected, rel=1e-12)


def test_bart_hand_count():
    d, te, td = 64, 24, 30  # the noised input is shorter than the target
    cfg = BartConfig(d_model=d, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=128, vocab_size=V)
    enc_layer = self_attention(te, d, d) + 2 * 2 * te * d * 256
    cross = 2 * td * d * d + 2 * 2 * te * d * d + 2 * 2 * td * te * d + 2 * td * d * d
    dec_layer = self_attention(td, d, d) + cross + 2 * 2 * td * d * 128
    expected = 3 * (2 * enc_layer + dec_layer + 2 * td * d * V) / te
    assert flops.seq2seq_flops_per_token(cfg, te, td) == pytest.approx(expected, rel=1e-12)


def test_unknown_family_falls_back_to_the_parameter_count():
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    model = DistilBertForMaskedLM(DistilBertConfig(dim=32, hidden_dim=64, n_layers=1, n_heads=2, vocab_size=100))
    assert flops.dims(model.config) is None
    assert flops.mlm_flops_per_token(model, T, RATE) == flops.transformer_flops_per_token(model, T)


# --- (b) FlopCounterMode on a real forward + backward ----------------------------------------------

def task_and_config(recipe_name, overrides):
    recipe = load_recipe(recipe_name, [f"data.max_seq_length={T}", *overrides])
    task = get_task(recipe.task)(recipe)
    return task, AutoConfig.for_model(recipe.model.family, vocab_size=V, **recipe.model.config)


def counted_training_flops(task, model, batch) -> int:
    """Matmul FLOPs of one training forward + backward through the task's loss."""
    with FlopCounterMode(display=False) as counter:
        sum(task.loss(model, batch).values()).backward()
    return counter.get_total_flops()


def mlm_batch(b=6, seed=0, pair=False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (b, T), generator=g)
    selected = select_tokens(ids, torch.zeros_like(ids, dtype=torch.bool), g, RATE)  # round(0.15 x 32) per row
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
             "labels": ids.masked_fill(~selected, -100)}
    if pair:
        batch["pair_label"] = torch.randint(2, (b,), generator=g)
    return batch


ENCODER = [f"model.config.hidden_size={H}", f"model.config.num_hidden_layers={L}",
           "model.config.num_attention_heads=4", f"model.config.intermediate_size={F}",
           "model.config.max_position_embeddings=64"]


@pytest.mark.parametrize("recipe,extra,auto,pair", [
    ("bert-tiny", [], AutoModelForPreTraining, True),
    ("roberta-tiny", ["model.config.max_position_embeddings=66"], AutoModelForMaskedLM, False),
    ("albert-tiny", ["model.config.embedding_size=16"], AutoModelForPreTraining, True),
])
@pytest.mark.parametrize("sparse", [True, False])
def test_mlm_families_match_flop_counter(recipe, extra, auto, pair, sparse):
    task, cfg = task_and_config(recipe, ENCODER + extra + [f"objective.sparse_prediction={sparse}"])
    torch.manual_seed(0)
    model = auto.from_config(cfg, attn_implementation="eager")
    batch = mlm_batch(pair=pair)
    tokens = task.tokens_in(batch)
    measured = counted_training_flops(task, model, batch)
    predicted = float((batch["labels"] != -100).sum()) / tokens if sparse else 1.0
    assert measured == pytest.approx(flops.mlm_flops_per_token(model, T, predicted, pair) * tokens, rel=1e-9)
    # the task's own figure assumes exactly mlm_probability of the positions; the batch has 5/32
    assert task.flops_per_token(model) == pytest.approx(measured / tokens, rel=0.02)


def test_electra_matches_flop_counter():
    task, cfg = task_and_config("electra-tiny", ENCODER + ["model.config.embedding_size=32"])
    torch.manual_seed(0)
    disc = AutoModelForPreTraining.from_config(cfg, attn_implementation="eager")
    gen = AutoModelForMaskedLM.from_config(generator_config(disc.config, task.params.generator_size_divisor),
                                           attn_implementation="eager")
    model = ElectraPretrainingModel(gen, disc, sparse_prediction=True)
    batch = mlm_batch()
    batch["sample_u"] = torch.rand(batch["input_ids"].shape, generator=torch.Generator().manual_seed(1))
    tokens = task.tokens_in(batch)
    measured = counted_training_flops(task, model, batch)
    predicted = float((batch["labels"] != -100).sum()) / tokens
    assert measured == pytest.approx(flops.electra_flops_per_token(gen, disc, T, predicted) * tokens, rel=1e-9)
    assert task.flops_per_token(model) == pytest.approx(measured / tokens, rel=0.02)


def test_gpt2_matches_flop_counter():
    task, cfg = task_and_config("gpt2-tiny", [f"model.config.n_embd={H}", f"model.config.n_layer={L}",
                                              "model.config.n_head=4", "model.config.n_positions=64"])
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    ids = torch.randint(V, (4, T), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    measured = counted_training_flops(task, model, batch)
    assert task.flops_per_token(model) * task.tokens_in(batch) == pytest.approx(measured, rel=1e-9)


def decoder_inputs(batch, pad_id, start_id):
    """What Seq2SeqPretraining.with_decoder_inputs adds (transformers' shift_tokens_right)."""
    from transformers.models.bart.modeling_bart import shift_tokens_right

    batch["decoder_input_ids"] = shift_tokens_right(batch["labels"], pad_id, start_id)
    return batch


def test_t5_matches_flop_counter():
    from tasks.objectives.t5_span_corruption import t5_span_corruption_batch

    task, cfg = task_and_config("t5-tiny", ["model.config.d_model=64", "model.config.d_ff=128",
                                            "model.config.num_layers=2", "model.config.num_decoder_layers=2",
                                            "model.config.num_heads=2", "model.config.d_kv=16"])
    assert cfg.is_gated_act and cfg.num_heads * cfg.d_kv != cfg.d_model  # the recipe's v1.1 shapes
    model = AutoModelForSeq2SeqLM.from_config(cfg, attn_implementation="eager")
    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(5, V - 100, (4, task.tokens_length), generator=g).tolist()
    batch = t5_span_corruption_batch(blocks, list(range(V - 100, V)), 1, 0, g)
    batch = decoder_inputs(batch, 0, 0)
    assert batch["input_ids"].shape[1] == T and batch["labels"].shape[1] == task.targets_length
    measured = counted_training_flops(task, model, batch)
    # tokens_in counts the ENCODER inputs, and the task's figure is per encoder input token
    assert task.flops_per_token(model) * task.tokens_in(batch) == pytest.approx(measured, rel=1e-9)


def test_bart_matches_flop_counter():
    from tasks.objectives.bart_denoising import bart_denoising_batch

    task, cfg = task_and_config("bart-tiny", ["model.config.d_model=64", "model.config.encoder_ffn_dim=256",
                                              "model.config.decoder_ffn_dim=128"])
    model = AutoModelForSeq2SeqLM.from_config(cfg, attn_implementation="eager")
    g = torch.Generator().manual_seed(0)
    n = (T - 2) // 3  # three sentences filling the target <s> text </s> exactly
    examples = [[torch.randint(5, V, (n,), generator=g).tolist() for _ in range(3)] for _ in range(8)]
    batch = bart_denoising_batch(examples, 0, 2, 3, 1, T, g, task.params)
    batch = decoder_inputs(batch, 1, 2)
    measured = counted_training_flops(task, model, batch)
    (b, te), td = batch["input_ids"].shape, batch["labels"].shape[1]
    assert td == T and te < T  # 30 % infilled, one <mask> per span
    assert measured == pytest.approx(flops.seq2seq_flops_per_token(model, te, td) * te * b, rel=1e-9)
    # expected lengths vs this batch's (padded to its longest input): a few percent
    assert task.flops_per_token(model) == pytest.approx(measured / task.tokens_in(batch), rel=0.05)


# --- peak and MFU ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_measured_matmul_peak(dtype):
    import time

    n = 128
    start = time.perf_counter()
    peak = flops.measure_matmul_peak(dtype, n=n, seconds=0.05)
    elapsed = time.perf_counter() - start
    # the best of >= 3 timed products is at least the rate of the whole call (warm-up included)
    assert math.isfinite(peak) and peak >= 2 * n**3 / elapsed


def test_peak_override_and_mfu(monkeypatch):
    monkeypatch.setenv("LMFORGE_PEAK_TFLOPS", "2")
    assert flops.peak_flops() == 2e12
    assert flops.mfu(1e6, 1e6, 2) == pytest.approx(0.25)  # 1e12 FLOP/s over 2 devices of 2e12
    assert flops.mfu(None, 1e6, 1) is None
