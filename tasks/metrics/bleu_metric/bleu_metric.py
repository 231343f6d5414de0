"""Corpus BLEU as a LOCAL `evaluate` module (the Hub's "sacrebleu" script is unreachable offline),
computed with the sacrebleu package so scores are comparable with published ones (its default
13a tokenization and exponential smoothing, Post 2018). Score on a 0..100 scale.
One import per line: evaluate's import scanner misreads `import a, b`.
"""

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = "Corpus BLEU (sacrebleu), offline; one or several references per prediction."
_CITATION = "Post, A Call for Clarity in Reporting BLEU Scores, WMT 2018."
_INPUTS = """
predictions: list of generated texts; references: list of lists of reference texts (the same
number for every prediction) or a list of single reference strings.
tokenize: sacrebleu tokenizer ("13a", "intl", "zh", "char", "none"); lowercase: bool.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class BleuMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, tokenize="13a", lowercase=False):
        references = [[r] if isinstance(r, str) else list(r) for r in references]
        n_refs = {len(r) for r in references}
        if len(n_refs) > 1:
            raise ValueError(f"every prediction needs the same number of references (got {sorted(n_refs)})")
        # sacrebleu wants one stream per reference slot: transpose [example][ref] -> [ref][example]
        streams = [list(slot) for slot in zip(*references)]
        bleu = sacrebleu.corpus_bleu(predictions, streams, tokenize=tokenize, lowercase=lowercase)
        return {
            "bleu": bleu.score,
            "precisions": list(bleu.precisions),
            "brevity_penalty": bleu.bp,
            "sys_len": bleu.sys_len,
            "ref_len": bleu.ref_len,
        }
