"""Start a GLUE fine-tune from another fine-tuned checkpoint (objective.init_from, `--init_from`).

RoBERTa (Liu et al. 2019, section 5.1) starts RTE, STS-B and MRPC from the MNLI model rather than
from the pretrained one. The encoder comes from `init_from`; where the classification head's shape
differs (MNLI's 3 labels against RTE's and MRPC's 2, STS-B's 1) transformers' own
`ignore_mismatched_sizes` makes it anew (glue.py's build_model). The tokenizer stays the one of
model.name_or_path, so the two checkpoints must tokenize alike.
"""

from __future__ import annotations

from pipelines.errors import LmforgeError, one_line

# the tasks `finetune --task glue --init_from DIR` starts from DIR (RoBERTa's practice)
INIT_FROM_TASKS = ("rte", "mrpc", "stsb")
# casing, digits, punctuation, accents and a pair: differences in normalisation or template show here
_PROBE = ("The Quick brown fox, 3.14 naïve CAFÉ-owners!", "A second sentence; with (brackets).")


def init_config(path: str):
    """The transformers config of `path`; one error line naming objective.init_from when unreadable."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise LmforgeError(f"objective.init_from={path}: cannot read its config: "
                           f"{one_line(exc)}") from None


def check_same_tokenizer(tokenizer, path: str, base: str) -> None:
    """Refuse an init_from checkpoint whose tokenizer (vocabulary, or ids of a probe pair) differs from
    the run's (model.name_or_path's): its embeddings would be read with the wrong ids."""
    from transformers import AutoTokenizer

    where = f"objective.init_from={path}"
    try:
        theirs = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise LmforgeError(f"{where}: cannot load its tokenizer (a fine-tuned export has one): "
                           f"{one_line(exc)}") from None
    ours_vocab, their_vocab = tokenizer.get_vocab(), theirs.get_vocab()
    if ours_vocab != their_vocab:
        why = f"{len(their_vocab)} tokens vs {len(ours_vocab)}" if len(ours_vocab) != len(their_vocab) else \
            "same size, other tokens or ids"
        raise LmforgeError(f"{where}: its tokenizer differs from model.name_or_path={base}'s ({why}); start from "
                           "a checkpoint fine-tuned from the same model")
    if theirs(*_PROBE)["input_ids"] != tokenizer(*_PROBE)["input_ids"]:
        raise LmforgeError(f"{where}: its tokenizer splits text differently from model.name_or_path={base}'s "
                           "(same vocabulary, other normalisation or template); start from a checkpoint "
                           "fine-tuned from the same model")
