"""The optimizer a recipe names (`training.optimizer`): AdamW (torch) or LAMB (pytorch_optimizer).

Both get the same two parameter groups: group 0 (matrices) decays, group 1 (biases and norms) never
does — BERT's choice, and pipelines/engine/resume.py relies on that order.
"""

from __future__ import annotations

import math

import torch

from pipelines.config import OPTIMIZERS, TrainingSection, check_choice
from pipelines.errors import LmforgeError


def param_groups(model, weight_decay: float) -> list[dict]:
    """[decaying matrices, never-decaying biases and norms], trainable parameters only."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            ndim = len(getattr(p, "ds_shape", p.shape))  # ZeRO-3 (zero.Init) leaves a 1-d placeholder in p
            (no_decay if ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model, t: TrainingSection, distributed_type: str | None = None) -> torch.optim.Optimizer:
    """training.optimizer over param_groups(); `distributed_type` (accelerate's, e.g. "DEEPSPEED")
    defaults to the running Accelerator's."""
    check_choice("recipe", "training.optimizer", t.optimizer, OPTIMIZERS)
    groups = param_groups(model, t.weight_decay)
    if t.optimizer == "lamb":
        check_lamb_launch(distributed_type or _distributed_type())
        return build_lamb(groups, t)
    device = next(model.parameters()).device
    # fused: one kernel per step on CUDA and CPU (torch >= 2.4), and it can skip a non-finite step on
    # the device (`found_inf`, pipelines/engine/step_stats.py)
    fused = device.type in ("cuda", "cpu")
    kwargs = dict(lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon)
    try:
        return torch.optim.AdamW(groups, fused=fused, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, **kwargs)


def build_lamb(groups: list[dict], t: TrainingSection) -> torch.optim.Optimizer:
    """LAMB (You et al. 2019) from pytorch_optimizer, set up as ALBERT's own LAMB (google-research/albert
    lamb_optimizer.py), the optimizer behind the paper's lr 0.00176:
      r = m / (sqrt(v) + eps) + weight_decay * w     (weight_decouple=False: decay inside the trust ratio)
      w -= lr * ||w|| / ||r|| * r                    (adam_debias=True: the step is lr, not lr / (1 - beta1^t))
    - the trust ratio is 1 when ||w|| or ||r|| is 0 (a zero-initialised tensor moves at the Adam step);
      the library adds eps to ||r|| in the ratio (relative change eps / ||r||, below float noise);
    - no cap on ||w||: the library's default caps it at 10 (`clamp`), which ALBERT and NVIDIA do not,
      and ALBERT-base's matrices have norms above 10;
    - biases and norms (group 1) take plain Adam steps, no trust ratio (`adam=True`): ALBERT excludes
      them from layer adaptation, as NVIDIA's FusedLAMB does for parameters without weight decay;
    - no gradient pre-normalisation in the optimizer: the engine clips the global gradient norm at
      training.max_grad_norm first, which is NVIDIA's pre-normalisation (max_grad_norm 1.0) and ALBERT's clip;
    - no bias correction of m and v, like ALBERT's code (and the paper's v3); NVIDIA's FusedLAMB corrects
      both, which the library cannot. The trust ratio removes the update's scale, so the correction only
      changes the weight of the decay term and of eps against m / sqrt(v), during the first ~1/(1-beta2) steps.
    """
    from pytorch_optimizer import Lamb

    groups[1]["adam"] = True
    optimizer = Lamb(groups, lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon,
                     weight_decouple=False, adam_debias=True, pre_norm=False, rectify=False)
    optimizer.clamp = math.inf  # the ||w|| cap (a class attribute of Lamb): none
    return optimizer


def check_lamb_launch(distributed_type: str) -> None:
    """LAMB's trust ratio needs each tensor whole; refuse the launches that hand the optimizer shards."""
    if distributed_type == "DEEPSPEED":
        raise LmforgeError("training.optimizer=lamb is not available under DeepSpeed: ZeRO hands the optimizer flat "
                           "shards that mix tensors, so LAMB's per-tensor trust ratio would be taken per shard "
                           "(DeepSpeed's FusedLamb too, which is CUDA-only); train LAMB with DDP "
                           "(accelerate_configs/multi_gpu.yaml) or use training.optimizer=adamw")
    if distributed_type == "FSDP":
        raise LmforgeError("training.optimizer=lamb is not available under FSDP: each rank holds shards of the "
                           "tensors, and LAMB's per-tensor trust ratio is not verified on them; train LAMB with DDP "
                           "(accelerate_configs/multi_gpu.yaml) or use training.optimizer=adamw")


def _distributed_type() -> str:
    from accelerate.state import AcceleratorState, is_initialized

    return AcceleratorState().distributed_type.value if is_initialized() else "NO"
