"""ROUGE as a LOCAL `evaluate` module (the Hub's "rouge" script is unreachable offline), computed
with Google's rouge_score package.

Returns the MEAN F-measure over examples (0..1) of each rouge type. The Hub module's default
aggregator bootstraps (random resampling) and reports the median; the plain mean is the same
estimate without randomness. rougeLsum treats "\\n" as the sentence boundary (summary-level LCS,
as in the original ROUGE-1.5.5 perl script): put one sentence per line. One import per line:
evaluate's import scanner misreads `import a, b`.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE-1/2/L/Lsum F-measure (mean over examples), offline, via rouge_score."
_CITATION = "Lin, ROUGE: A Package for Automatic Evaluation of Summaries, ACL Workshop 2004."
_INPUTS = """
predictions: list of generated texts; references: list of reference texts (one per prediction).
rouge_types: default ("rouge1", "rouge2", "rougeL", "rougeLsum"); use_stemmer: Porter stemming.
"""
_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class RougeMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, rouge_types=_TYPES, use_stemmer=False):
        scorer = rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer)
        totals = dict.fromkeys(rouge_types, 0.0)
        for prediction, reference in zip(predictions, references):
            scores = scorer.score(reference, prediction)  # rouge_score's order: (target, prediction)
            for rouge_type in rouge_types:
                totals[rouge_type] += scores[rouge_type].fmeasure
        n = max(len(predictions), 1)
        return {rouge_type: total / n for rouge_type, total in totals.items()}
