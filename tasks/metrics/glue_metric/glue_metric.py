# ruff: noqa: I001  (one import per line for evaluate's scanner; no comment on an import line
# either: the scanner reads any trailing comment as a URL to download)
"""GLUE metrics as a LOCAL `evaluate` module: `evaluate.load("glue")` fetches its script from the
Hub and fails offline; this one is loaded by path (tasks.metrics.load_metric).

One config per GLUE task, the metrics of the GLUE paper (Wang et al. 2018, table 1), computed
with scikit-learn and scipy. Tasks with two metrics also report `combined_score`, their mean,
as transformers' run_glue.py does. Keep one import per line: evaluate's import scanner misreads
`import a, b`.
"""

import datasets
import evaluate
from scipy.stats import pearsonr
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score
from sklearn.metrics import f1_score
from sklearn.metrics import matthews_corrcoef

_METRICS = {
    "cola": ("matthews_correlation",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy"),
    "stsb": ("pearson", "spearmanr"),
    "qqp": ("accuracy", "f1"),
    "mnli": ("accuracy",),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
}

_DESCRIPTION = "GLUE task metrics (Matthews correlation, accuracy, F1, Pearson/Spearman), offline."
_CITATION = "Wang et al., GLUE: A Multi-Task Benchmark and Analysis Platform for NLU, ICLR 2019."
_INPUTS = """
predictions: class ids (STS-B: float scores); references: gold class ids (STS-B: gold scores).
Returns a dict with the task's metrics (floats) and, for two-metric tasks, combined_score.
"""


def _score(name, predictions, references):
    if name == "accuracy":
        return accuracy_score(references, predictions)
    if name == "f1":
        # positive class = 1 (MRPC 'equivalent', QQP 'duplicate'), as in the GLUE leaderboard
        return f1_score(references, predictions, zero_division=0.0)
    if name == "matthews_correlation":
        return matthews_corrcoef(references, predictions)
    if name == "pearson":
        return pearsonr(predictions, references)[0]
    return spearmanr(predictions, references)[0]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class GlueMetric(evaluate.Metric):
    def _info(self):
        if self.config_name not in _METRICS:
            raise KeyError(f"unknown GLUE metric config '{self.config_name}' (known: {', '.join(_METRICS)})")
        dtype = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value(dtype),
                                        "references": datasets.Value(dtype)}),
        )

    def _compute(self, predictions, references):
        names = _METRICS[self.config_name]
        result = {name: float(_score(name, predictions, references)) for name in names}
        if len(names) > 1:
            result["combined_score"] = sum(result.values()) / len(names)
        return result
