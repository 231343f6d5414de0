"""The accelerate Accelerator of a run: precision, accumulation, trackers, and the recipe's settings
carried into a DeepSpeed config; how many DataLoader workers collate ahead on this device."""

from __future__ import annotations

from pipelines.config import TrainingSection
from pipelines.errors import LmforgeError
from pipelines.runs.tracking import log_with


def make_accelerator(t: TrainingSection):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    from pipelines.runs.library_logs import quiet_accelerator_probe

    quiet_accelerator_probe()
    if t.mixed_precision not in ("no", "bf16", "fp16"):
        raise LmforgeError(f"training.mixed_precision: '{t.mixed_precision}' is not one of no, bf16, fp16")
    accelerator = Accelerator(mixed_precision=t.mixed_precision,
                              gradient_accumulation_steps=t.gradient_accumulation_steps, log_with=log_with(t.report_to),
                              project_config=ProjectConfiguration(project_dir=t.output_dir, logging_dir=t.output_dir))
    if t.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        # accelerate runs fp16 on a CPU as plain fp32 without a word, and the model card would say fp16
        raise LmforgeError("training.mixed_precision=fp16 needs a GPU; this machine trains on the CPU, where it "
                           "would silently be fp32. Use bf16 (CPU autocast) or no")
    _recipe_into_deepspeed(accelerator, t)
    return accelerator


def _recipe_into_deepspeed(accelerator, t: TrainingSection) -> None:
    """The recipe's per-device batch and gradient clipping into DeepSpeed's config ("auto" or absent).
    accelerate reads the batch off a DataLoader passed to prepare() and fails without one (the engine
    passes none: it feeds the loop itself); DeepSpeed clips inside its own step with `gradient_clipping`
    (accelerator.clip_grad_norm_ only reads the norm there), so max_grad_norm must reach it."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    cfg = plugin.deepspeed_config
    for key, field_name, value in (("train_micro_batch_size_per_gpu", "per_device_train_batch_size",
                                    t.per_device_train_batch_size),
                                   ("gradient_clipping", "max_grad_norm", float(t.max_grad_norm))):
        if cfg.get(key, "auto") not in ("auto", value):
            raise LmforgeError(f"the DeepSpeed config sets {key}={cfg[key]} but the recipe has "
                               f"training.{field_name}={value}: remove it from the DeepSpeed config (the recipe "
                               "sets it) or make them equal")
        cfg[key] = value


def loader_workers(t: TrainingSection, device) -> int:
    """training.dataloader_num_workers, or with -1 (auto): 2 on a GPU, where collation would stall the
    device, and 0 on a CPU, where a worker only takes a core from the step and a second process's memory."""
    if t.dataloader_num_workers >= 0:
        return t.dataloader_num_workers
    return 2 if device.type == "cuda" else 0
