"""FLOPs per token and model FLOPs utilisation (MFU).

Training FLOPs per token = 6 x (non-embedding parameters) + 12 x layers x hidden x seq_len
(attention scores and values, forward + backward): Kaplan et al. 2020, PaLM appendix B.
Peak throughput comes from LMFORGE_PEAK_TFLOPS or the GPU's name; on CPU MFU is not reported.
"""

from __future__ import annotations

import os

import torch

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity)
_GPU_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def _config_int(config, *names) -> int:
    for n in names:
        v = getattr(config, n, None)
        if isinstance(v, int):
            return v
    return 0


def transformer_flops_per_token(model, seq_len: int) -> float | None:
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


def peak_flops() -> float | None:
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
