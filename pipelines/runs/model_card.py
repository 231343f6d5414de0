"""The model card (README.md) of every exported folder, built with huggingface_hub's ModelCardData:
what the model is (architecture, parameters, the pipeline it serves, the checkpoint it started from),
how it was trained (task, data, steps, global batch, precision) and, once the run has evaluated it,
its own dev results, as a model-index where the task is a known benchmark, so a fine-tuned `final/`
carries its scores before any push. No local path is written: a folder is named by its last part.
`push` publishes the fuller card of hub_card.py.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.runs.card_parts import OBJECTIVE_TAGS, benchmark_results, is_local, pipeline_tag, public_name


def card_metadata(architecture: str, recipe=None, metrics: dict | None = None):
    """ModelCardData: library, tags, pipeline, base model (a Hub checkpoint it was fine-tuned from) and
    the model-index of `metrics` for GLUE and the papers' other benchmarks."""
    from huggingface_hub import ModelCardData


    task = recipe.task if recipe else None
    tags = list(dict.fromkeys(["lmforge", *([task] if task else []), *OBJECTIVE_TAGS.get(task, [])]))
    base = recipe.model.name_or_path if recipe else None
    results = benchmark_results(recipe, metrics) if recipe and metrics else None
    return ModelCardData(library_name="transformers", tags=tags, pipeline_tag=pipeline_tag(architecture),
                         base_model=None if is_local(base) else base, eval_results=results or None,
                         model_name=recipe.name if results else None)


def model_card(model, recipe=None, metrics: dict | None = None, world_size: int | None = None) -> str:
    """The card of an export of `model` (ZeRO-3 placeholders counted by their full size)."""
    n = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    return card_text(type(model).__name__, n, recipe, metrics, world_size)


def card_text(architecture: str, n_params: int, recipe=None, metrics: dict | None = None,
              world_size: int | None = None) -> str:
    data = card_metadata(architecture, recipe, metrics)
    lines = [f"# {recipe.name if recipe else architecture}", "",
             f"`{architecture}` with {n_params / 1e6:.1f}M parameters, trained with lmforge.", ""]
    if recipe is not None:
        lines += _training_lines(recipe, world_size) + [""]
    if metrics:
        lines += ["## Evaluation (dev)", "", "| metric | value |", "|---|---|",
                  *[f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()],
                  ""]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)


def _training_lines(recipe, world_size: int | None) -> list[str]:
    t, d, o = recipe.training, recipe.data, recipe.objective
    data = o.get("glue_task") or public_name(o.get("data")) or public_name(o.get("dataset"))
    lines = [f"- task: `{recipe.task}`" + (f" on `{data}`" if data else "")]
    if recipe.model.name_or_path:
        lines.append(f"- started from: `{public_name(recipe.model.name_or_path)}`")
    if not data:  # pretraining: the corpus is the data
        lines.append(f"- corpus: `{public_name(d.corpus)}`")
    batch = t.per_device_train_batch_size * t.gradient_accumulation_steps
    lines += [f"- max length {d.max_seq_length}, global batch {batch * (world_size or 1)}"
              + (f" ({t.per_device_train_batch_size} x {t.gradient_accumulation_steps} accumulation x "
                 f"{world_size} processes)" if world_size and world_size > 1 else ""),
              f"- steps: {t.max_steps if t.max_steps > 0 else f'{t.num_train_epochs:g} epochs'}, lr {t.learning_rate}, "
              f"{t.lr_scheduler_type} schedule, precision {t.mixed_precision}"]
    return lines


def export_size(folder: Path) -> tuple[str, int]:
    """(architecture, parameter count) of an exported folder, from config.json and the safetensors headers."""
    import json

    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    arch = (config.get("architectures") or [config.get("model_type", "model")])[0]
    n = 0
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(f, "pt") as st:
            for key in st.keys():
                shape = st.get_slice(key).get_shape()
                count = 1
                for s in shape:
                    count *= s
                n += count
    return arch, n


def refresh_cards(folders: list[Path], recipe, metrics: dict | None, world_size: int) -> None:
    """Rewrite the cards of a finished run's exports with the evaluation they hold (the engine's
    finish(), once the metrics are known); a folder without config.json (a LoRA adapter) is left."""
    from pipelines.atomic import atomic_write_text

    for folder in folders:
        folder = Path(folder)
        if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
            arch, n = export_size(folder)
            atomic_write_text(folder / "README.md", card_text(arch, n, recipe, metrics, world_size))
