"""A short model card (README.md) written into every exported folder; `push` replaces it with the full
card built from the run's results files (pipelines/runs/hub_card.py)."""

from __future__ import annotations


def model_card(model, recipe=None, metrics: dict | None = None) -> str:
    arch = type(model).__name__
    n = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())  # ZeRO-3: p is an empty placeholder
    lines = ["---", "library_name: transformers", "tags: [lmforge]", "---", "",
             f"# {recipe.name if recipe else arch}", "",
             f"`{arch}` with {n / 1e6:.1f}M parameters, trained with lmforge.", ""]
    if recipe is not None:
        t, d = recipe.training, recipe.data
        lines += [f"- task: `{recipe.task}`", f"- corpus: `{d.corpus}`, max length {d.max_seq_length}",
                  f"- steps: {t.max_steps}, global batch {t.per_device_train_batch_size} x "
                  f"{t.gradient_accumulation_steps} x world size, lr {t.learning_rate}, "
                  f"{t.lr_scheduler_type} schedule, precision {t.mixed_precision}", ""]
    if metrics:
        lines += ["## Evaluation", ""] + [f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}"
                                         for k, v in metrics.items()] + [""]
    return "\n".join(lines)
