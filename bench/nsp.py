"""2. BERT MLM + NSP at the same size: lmforge `pretrain bert-tiny` (hidden 256, 4 layers, 4 heads,
FFN 1024, a WordPiece tokenizer of 8,192 trained once in this invocation) on the same corpus.
Tokens/s only: no HF example trains NSP (run_mlm is MLM only), so there is no baseline; the row
sits next to comparison 1 for scale."""

from __future__ import annotations

from bench.sides import Comparison, Context, pretrain_side

RECIPE, FAMILY = "bert-tiny", "bert"


def comparison(ctx: Context) -> Comparison:
    return Comparison("nsp", "BERT MLM+NSP (bert-tiny sizes), lmforge only", [pretrain_side(ctx, RECIPE, FAMILY)])
