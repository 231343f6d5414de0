"""Training FLOPs per token by hand, per model family; MFU; the machine's measured matmul peak.

What is counted: the matrix multiplications, 2 FLOPs per multiply-accumulate (forward = 2 x MACs).
Training = 3 x forward: for every product the backward pass computes the gradient with respect to
its input and the one with respect to its weights (or, for the attention products, to both
activations), each as many FLOPs as the forward product (Kaplan et al. 2020 sec. 2.1, PaLM app. B).
Not counted: embedding lookups, norms, softmax, activations, the losses, the optimizer (all O(d)
per token, not O(d^2)).

Each family's count is written out below next to what it describes (nanoGPT's `estimate_flops`
style) from the config: encoder layers (Q, K, V, scores, weighted values, output projection, FFN),
ALBERT's / ELECTRA's embedding projection, the pooler + pair head (NSP, SOP) once per sequence, the
MLM head's transform at every position and its vocabulary projection only at the predicted share
of positions (sparse prediction, tasks/shared/sparse_head.py; 1.0 when dense), GPT-2's full-vocab
head at every position, the encoder-decoders' decoder self- and cross-attention with their own
lengths, ELECTRA's generator + discriminator. Attention is counted over the full length, also for
causal models (as PaLM does, and as FlopCounterMode counts sdpa): a kernel that skips the masked
half does less work, so a causal model's MFU is the conventional, slightly generous figure.

Per token means per token as the engine counts them (Task.tokens_in: non-padding tokens of
`input_ids`, i.e. the ENCODER input of T5 and BART), with every sequence at its full length
(packed blocks); tests/engine/test_flops.py checks each family against a hand count and against
torch's FlopCounterMode on a real forward + backward. Families without a count here fall back to
transformer_flops_per_token (6 x non-embedding parameters + attention; Kaplan).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

TRAIN_PER_FORWARD = 3  # forward + backward (2 x forward)

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity)
_GPU_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


# --- the building blocks (forward FLOPs) -----------------------------------------------------

def linear(tokens: float, d_in: int, d_out: int) -> float:
    """A d_in -> d_out projection applied to `tokens` rows."""
    return 2.0 * tokens * d_in * d_out


def attention(n_q: float, n_kv: float, d_model: int, d_attn: int) -> float:
    """One attention block: Q at the n_q query positions, K and V at the n_kv key positions
    (d_model -> d_attn = heads x head size), scores Q K^T and weighted values (n_q x n_kv x d_attn
    each, summed over heads), output projection d_attn -> d_model. Self-attention: n_q = n_kv."""
    q, kv = linear(n_q, d_model, d_attn), 2 * linear(n_kv, d_model, d_attn)
    scores = values = 2.0 * n_q * n_kv * d_attn
    return q + kv + scores + values + linear(n_q, d_attn, d_model)


def feed_forward(tokens: float, d_model: int, d_ff: int, gated: bool = False) -> float:
    """d_model -> d_ff -> d_model; gated (T5 v1.1's gated-GELU): two input projections."""
    return (3 if gated else 2) * linear(tokens, d_model, d_ff)


# --- the shapes, read from each family's config ------------------------------------------------

@dataclass(frozen=True)
class Dims:
    layers: int
    hidden: int
    attn: int  # heads x head size (T5: num_heads x d_kv, which may differ from d_model)
    ffn: int
    vocab: int
    embedding: int  # width of the token table (ALBERT, ELECTRA: embedding_size; others: hidden)
    embedding_projection: bool = False  # ALBERT always, ELECTRA when embedding_size != hidden_size
    gated: bool = False
    decoder_layers: int = 0
    decoder_ffn: int = 0


def dims(config) -> Dims | None:
    """The family's shapes under its own field names; None for a family without a count here."""
    kind = getattr(config, "model_type", None)
    if kind in ("bert", "roberta", "roberta-prelayernorm", "albert", "electra"):
        h = config.hidden_size
        heads = config.num_attention_heads
        emb = getattr(config, "embedding_size", h)
        return Dims(config.num_hidden_layers, h, heads * (h // heads), config.intermediate_size, config.vocab_size,
                    emb, embedding_projection=kind == "albert" or emb != h)
    if kind == "modernbert":  # GeGLU: Wi projects to 2 x intermediate, Wo back from intermediate
        h = config.hidden_size
        return Dims(config.num_hidden_layers, h, h, config.intermediate_size, config.vocab_size, h, gated=True)
    if kind == "gpt2":
        h = config.n_embd
        return Dims(config.n_layer, h, h, config.n_inner or 4 * h, config.vocab_size, h)
    if kind == "t5":
        h = config.d_model
        return Dims(config.num_layers, h, config.num_heads * config.d_kv, config.d_ff, config.vocab_size, h,
                    gated=config.is_gated_act, decoder_layers=config.num_decoder_layers, decoder_ffn=config.d_ff)
    if kind == "bart":
        h = config.d_model
        return Dims(config.encoder_layers, h, h, config.encoder_ffn_dim, config.vocab_size, h,
                    decoder_layers=config.decoder_layers, decoder_ffn=config.decoder_ffn_dim)
    return None


def _dims_of(model_or_config) -> Dims | None:
    return dims(getattr(model_or_config, "config", model_or_config))


# --- forward FLOPs of ONE sequence, per family ---------------------------------------------------

def encoder_forward(d: Dims, seq: int) -> float:
    """Embedding projection (ALBERT's E -> H, ELECTRA's when E != H) + the encoder layers."""
    proj = linear(seq, d.embedding, d.hidden) if d.embedding_projection else 0.0
    layer = attention(seq, seq, d.hidden, d.attn) + feed_forward(seq, d.hidden, d.ffn, d.gated)
    return proj + d.layers * layer


def mlm_forward(d: Dims, seq: int, predicted: float, pair_head: bool = False) -> float:
    """Encoder + MLM head: its transform at EVERY position (BERT/RoBERTa H -> H, ALBERT/ELECTRA
    H -> E; sparse prediction hooks only the output layer after it), the vocabulary projection at
    the `predicted` share of positions; with `pair_head` (BERT NSP, ALBERT SOP) the pooler H -> H
    and the 2-way classifier at the first token of the sequence."""
    head = linear(seq, d.hidden, d.embedding) + linear(predicted * seq, d.embedding, d.vocab)
    pair = linear(1, d.hidden, d.hidden) + linear(1, d.hidden, 2) if pair_head else 0.0
    return encoder_forward(d, seq) + head + pair


def discriminator_forward(d: Dims, seq: int) -> float:
    """ELECTRA's discriminator: encoder + its head, H -> H then 1 wide, at every position."""
    return encoder_forward(d, seq) + linear(seq, d.hidden, d.hidden) + linear(seq, d.hidden, 1)


def clm_forward(d: Dims, seq: int) -> float:
    """GPT-2: decoder-only layers (full-length attention) + the full-vocabulary head at every position."""
    return encoder_forward(d, seq) + linear(seq, d.hidden, d.vocab)


def seq2seq_forward(d: Dims, enc: float, dec: float) -> float:
    """T5 / BART: encoder over `enc` tokens; each decoder layer: self-attention over `dec`,
    cross-attention (queries at `dec`, keys and values projected from the `enc` encoder outputs),
    FFN; the vocabulary head at the decoder positions."""
    encoder = d.layers * (attention(enc, enc, d.hidden, d.attn) + feed_forward(enc, d.hidden, d.ffn, d.gated))
    layer = (attention(dec, dec, d.hidden, d.attn) + attention(dec, enc, d.hidden, d.attn)
             + feed_forward(dec, d.hidden, d.decoder_ffn, d.gated))
    return encoder + d.decoder_layers * layer + linear(dec, d.hidden, d.vocab)


# --- training FLOPs per token, what the tasks report ------------------------------------------

def mlm_flops_per_token(model, seq_len: int, predicted: float = 1.0, pair_head: bool = False) -> float | None:
    """An MLM encoder (BERT, RoBERTa, ALBERT, ELECTRA's generator) on blocks of seq_len tokens;
    `predicted`: share of positions that reach the vocabulary projection (the mask rate with sparse
    prediction, 1.0 without)."""
    d = _dims_of(model)
    if d is None:
        return transformer_flops_per_token(model, seq_len)
    return TRAIN_PER_FORWARD * mlm_forward(d, seq_len, predicted, pair_head) / seq_len


def electra_flops_per_token(generator, discriminator, seq_len: int, predicted: float) -> float | None:
    """ELECTRA: the generator's MLM (vocabulary projection at the masked share) + the discriminator
    on the sampled sequence; both are trained (sampling itself has no matmul)."""
    g, d = _dims_of(generator), _dims_of(discriminator)
    if g is None or d is None:
        return None
    return TRAIN_PER_FORWARD * (mlm_forward(g, seq_len, predicted) + discriminator_forward(d, seq_len)) / seq_len


def clm_flops_per_token(model, seq_len: int) -> float | None:
    d = _dims_of(model)
    if d is None:
        return transformer_flops_per_token(model, seq_len)
    return TRAIN_PER_FORWARD * clm_forward(d, seq_len) / seq_len


def seq2seq_flops_per_token(model, input_len: float, target_len: float) -> float | None:
    """Per ENCODER input token (what tokens_in counts): encoder inputs of input_len, decoder
    targets of target_len (T5: 114 targets for 512 inputs; BART: the input is the shorter one)."""
    d = _dims_of(model)
    if d is None:
        return transformer_flops_per_token(model, int(input_len))
    return TRAIN_PER_FORWARD * seq2seq_forward(d, input_len, target_len) / input_len


def _config_int(config, *names) -> int:
    for n in names:
        v = getattr(config, n, None)
        if isinstance(v, int):
            return v
    return 0


def transformer_flops_per_token(model, seq_len: int) -> float | None:
    """The generic approximation where no hand count applies (fine-tuning heads, distillation,
    other families): 6 x (parameters - input embedding) + 12 x layers x hidden x seq_len (Kaplan
    et al. 2020). It misses a tied output layer and ignores sparse prediction."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    layers = _config_int(config, "num_hidden_layers", "n_layer", "num_layers")
    layers += _config_int(config, "num_decoder_layers", "decoder_layers") if config.is_encoder_decoder else 0
    hidden = _config_int(config, "hidden_size", "n_embd", "d_model")
    numel = lambda p: getattr(p, "ds_numel", p.numel())  # noqa: E731  (ZeRO-3: p is an empty placeholder)
    n_params = sum(numel(p) for p in model.parameters())
    emb = model.get_input_embeddings()
    n_params -= numel(emb.weight) if emb is not None else 0
    return 6.0 * n_params + 12.0 * layers * hidden * seq_len


# --- peak and utilisation ----------------------------------------------------------------------

def peak_flops() -> float | None:
    """Peak FLOP/s of one device: LMFORGE_PEAK_TFLOPS, else the GPU's dense bf16 peak by name;
    None on CPU (measure_matmul_peak gives a measured one)."""
    if os.environ.get("LMFORGE_PEAK_TFLOPS"):
        return float(os.environ["LMFORGE_PEAK_TFLOPS"]) * 1e12
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, tflops in _GPU_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12
    return None


def mfu(flops_per_token: float | None, tokens_per_second: float, n_devices: int) -> float | None:
    peak = peak_flops()
    if not flops_per_token or not peak:
        return None
    return flops_per_token * tokens_per_second / (peak * n_devices)


def measure_matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 1.0,
                        device: str | torch.device | None = None, min_repeats: int = 3) -> float:
    """Best achieved FLOP/s of an n x n @ n x n torch.mm (2 n^3 FLOPs) on this machine (CUDA when
    present, else CPU), over repetitions for about `seconds` after one warm-up product (kernel
    choice, page faults, thread start-up): a measured peak for benchmarks where no vendor figure
    applies (CPU, bf16 on CPUs without bf16 units)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(a, b, out=out)
    sync()
    best, repeats, start = 0.0, 0, time.perf_counter()
    while repeats < min_repeats or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        best = max(best, 2.0 * n**3 / (time.perf_counter() - t0))
        repeats += 1
    return best
