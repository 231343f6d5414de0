"""Offline metrics through `evaluate`'s interface.

`evaluate.load("glue" | "rouge" | "sacrebleu")` downloads the metric script from the Hub and fails
offline, so the scripts live here as local modules (one folder each, `<folder>/<folder>.py`) and
load by path. `evaluate` itself is imported only when a metric is first needed (~5 s import).

    glue_metric("mrpc", predictions, references)  -> {"f1": ..., "accuracy": ..., "combined_score": ...}
    generation_metrics(predictions, references)   -> {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"}
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
LOCAL_METRICS = ("glue_metric", "rouge_metric", "bleu_metric")


@cache
def load_metric(name: str, config_name: str | None = None):
    """The local evaluate module `name` (one of LOCAL_METRICS), loaded by path and kept in memory
    (no arrow cache files, no lock files: computing runs on the main process after a gather)."""
    from pipelines.errors import LmforgeError

    if name not in LOCAL_METRICS:
        raise LmforgeError(f"unknown local metric '{name}' (known: {', '.join(LOCAL_METRICS)})")
    import evaluate

    return evaluate.load(str(METRICS_DIR / name), config_name, keep_in_memory=True)


def glue_metric(task: str, predictions, references) -> dict[str, float]:
    """The GLUE metrics of `task` (class ids; STS-B: scores). MNLI's matched / mismatched numbers
    come from calling this once per eval split."""
    from pipelines.data.glue import get_glue_task

    spec = get_glue_task(task)  # unknown names raise LmforgeError listing the nine tasks
    _check_lengths(predictions, references, f"GLUE '{task}'")
    return load_metric("glue_metric", spec.name).compute(predictions=list(predictions),
                                                        references=list(references))


def generation_metrics(predictions, references, metrics=("rouge", "bleu"), use_stemmer: bool = False,
                       tokenize: str = "13a") -> dict[str, float]:
    """ROUGE-1/2/L/Lsum mean F-measure (0..1) and/or corpus BLEU (0..100, sacrebleu).

    references: one string per prediction, or (BLEU only) a list of strings per prediction."""
    from pipelines.errors import LmforgeError

    unknown = set(metrics) - {"rouge", "bleu"}
    if unknown:
        raise LmforgeError(f"unknown generation metric(s) {sorted(unknown)} (known: rouge, bleu)")
    _check_lengths(predictions, references, "generation metrics")
    predictions, references = list(predictions), list(references)
    out: dict[str, float] = {}
    if "rouge" in metrics:
        if any(not isinstance(r, str) for r in references):
            raise LmforgeError("ROUGE takes one reference string per prediction")
        out.update(load_metric("rouge_metric").compute(predictions=predictions, references=references,
                                                      use_stemmer=use_stemmer))
    if "bleu" in metrics:
        out["bleu"] = load_metric("bleu_metric").compute(predictions=predictions, references=references,
                                                         tokenize=tokenize)["bleu"]
    return out


def _check_lengths(predictions, references, what: str) -> None:
    from pipelines.errors import LmforgeError

    if len(predictions) != len(references):
        raise LmforgeError(f"{what}: {len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise LmforgeError(f"{what}: no predictions to score")
