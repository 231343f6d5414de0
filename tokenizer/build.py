"""build_tokenizer: train the tokenizer a model family needs and save it as a transformers folder.

Steps: check the request (family, vocab size, non-empty corpus) -> train the family's model kind
(wordpiece.py / bpe.py / unigram.py) -> add the family's post-processor (special-token
template) -> wrap in `PreTrainedTokenizerFast` -> save -> reload with AutoTokenizer and compare.

Which class the folder names (tokenizer_config.json "tokenizer_class") matters in transformers 5:
a family class (BertTokenizer, RobertaTokenizer, AlbertTokenizer, T5Tokenizer, GPT2Tokenizer)
throws away the saved normalizer/pre-tokenizer/decoder and rebuilds them from its own recipe,
keeping only the vocab and the post-processor. Our builders use exactly those recipes, so the
family class is tried first; the reload is then compared with the trained tokenizer on a varied
sample (tokenizer/check.py) and, if anything differs, the folder is rewritten under the generic
`PreTrainedTokenizerFast` (TokenizersBackend), which keeps the pipeline as saved. The outcome per
family is in docs/TOKENIZERS.md.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, processors

from pipelines.errors import LmforgeError
from tokenizer.check import encoding_differences
from tokenizer.families import FAMILIES, FAMILY_SPECS, FamilySpec
from tokenizer.publish import check_tokenizer_folder, publish_tokenizer

log = logging.getLogger(__name__)

GENERIC_CLASS = "PreTrainedTokenizerFast"
BYTE_ALPHABET = 256  # byte-level BPE starts from all 256 byte symbols
_MIN_LEARNED = 16  # below this a tokenizer is useless; refuse rather than train a toy by accident


def family_spec(family: str) -> FamilySpec:
    if family not in FAMILY_SPECS:
        raise LmforgeError(f"unknown tokenizer family '{family}'; known families: {', '.join(FAMILIES)}")
    return FAMILY_SPECS[family]


def min_vocab_size(spec: FamilySpec) -> int:
    return spec.n_special + _MIN_LEARNED + (BYTE_ALPHABET if spec.kind == "bpe" else 0)


def tokenizer_kind(tok) -> str:
    """'wordpiece' | 'bpe' | 'unigram' for a transformers fast tokenizer (or a tokenizers.Tokenizer)."""
    backend = getattr(tok, "backend_tokenizer", tok)
    name = type(backend.model).__name__
    kinds = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}
    if name not in kinds:
        raise LmforgeError(f"tokenizer model '{name}' is not one of WordPiece, BPE, Unigram")
    return kinds[name]


def _nonempty(texts: Iterable[str], family: str) -> Iterator[str]:
    """`texts` unchanged, after checking (without reading it twice) that some text is not blank."""
    stream = iter(texts)
    first = next((t for t in stream if t.strip()), None)
    if first is None:  # checked before training: sentencepiece fails on no input with a C++ message
        raise LmforgeError(f"cannot train a '{family}' tokenizer on an empty corpus (no non-blank text)")
    return itertools.chain([first], stream)


def _post_processor(spec: FamilySpec, tok: Tokenizer):
    ids = {t: tok.token_to_id(t) for t in spec.specials}
    if spec.single == "roberta":
        # Positional (sep, cls, trim_offsets, add_prefix_space): tokenizers 0.23 rejects cls= keyword.
        return processors.RobertaProcessing(("</s>", ids["</s>"]), ("<s>", ids["<s>"]), True, False)
    if spec.single is None:  # GPT-2: no specials; B gets type id 1 like transformers' default template
        return processors.TemplateProcessing(single="$A", pair="$A $B:1")
    used = [t for t in spec.specials if t in spec.single or t in spec.pair]
    return processors.TemplateProcessing(single=spec.single, pair=spec.pair,
                                         special_tokens=[(t, ids[t]) for t in used])


def train_backend(spec: FamilySpec, texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """The trained `tokenizers.Tokenizer` (model + pipeline + post-processor) for one family."""
    learned = vocab_size - len(spec.extra_specials)  # T5 sentinels are appended after training
    if spec.kind == "wordpiece":
        from tokenizer.wordpiece import train_wordpiece

        tok = train_wordpiece(texts, learned, list(spec.specials), spec.roles["unk_token"], spec.lowercase)
    elif spec.kind == "bpe":
        from tokenizer.bpe import train_byte_bpe

        tok = train_byte_bpe(texts, learned, list(spec.specials))
    else:
        from tokenizer.unigram import train_unigram

        tok = train_unigram(texts, learned, list(spec.specials), spec.roles["unk_token"], spec.lowercase)
    if spec.extra_specials:
        tok.add_special_tokens(list(spec.extra_specials))
    tok.post_processor = _post_processor(spec, tok)
    return tok


def wrap(spec: FamilySpec, tok: Tokenizer, model_max_length: int):
    """The trained backend as a transformers tokenizer (generic class: keeps the pipeline as is)."""
    from transformers import PreTrainedTokenizerFast

    extra = {"extra_special_tokens": list(spec.extra_specials)} if spec.extra_specials else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length,
                                   model_input_names=list(spec.model_input_names), **spec.roles, **extra)


def _set_class(folder: Path, class_name: str) -> None:
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = class_name
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_checked(trained, spec: FamilySpec, folder: Path):
    """Save `trained` into `folder` under the family class if a reload is identical, else generic.

    Returns the reloaded tokenizer (what every later `AutoTokenizer.from_pretrained` will see).
    """
    from transformers import AutoTokenizer

    trained.save_pretrained(folder)
    for class_name in (spec.tokenizer_class, GENERIC_CLASS):
        _set_class(folder, class_name)
        loaded = AutoTokenizer.from_pretrained(folder)
        diffs = encoding_differences(trained, loaded)
        if not diffs:
            return loaded
        log.info("%s reload differs from the trained tokenizer (%d cases, first: %s)",
                 class_name, len(diffs), diffs[0])
    # Not a user error: the generic class keeps the saved pipeline, so this is a bug in lmforge.
    raise RuntimeError(f"tokenizer reload differs even as {GENERIC_CLASS}: {diffs[:3]}")


def build_tokenizer(family: str, texts: Iterable[str], vocab_size: int, out_dir: Path | None = None,
                    model_max_length: int = 512, overwrite: bool = False):
    """Train the tokenizer for `family` on `texts` (strings, e.g. corpus lines); return it reloaded.

    With `out_dir`, the save_pretrained folder is written there atomically (temp dir + rename); a
    folder holding anything lmforge did not write is refused before training unless `overwrite`,
    and then only its tokenizer files are replaced (tokenizer/publish.py).
    """
    spec = family_spec(family)
    if out_dir is not None:
        check_tokenizer_folder(out_dir, overwrite)
    if not isinstance(vocab_size, int) or vocab_size < min_vocab_size(spec):
        need = f"{spec.n_special} special tokens"
        need += f" + {BYTE_ALPHABET} byte symbols" if spec.kind == "bpe" else ""
        raise LmforgeError(f"tokenizer vocab_size {vocab_size} is too small for family '{family}': "
                           f"it needs at least {min_vocab_size(spec)} ({need} + {_MIN_LEARNED} learned)")
    backend = train_backend(spec, _nonempty(texts, family), vocab_size)
    if backend.get_vocab_size() < vocab_size:  # the trainers stop early when the corpus runs out of pieces
        log.warning("the '%s' tokenizer has %d tokens, fewer than vocab_size %d: the corpus is too small",
                    family, backend.get_vocab_size(), vocab_size)
    trained = wrap(spec, backend, model_max_length)
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="lmforge-tok-") as tmp:
            return save_checked(trained, spec, Path(tmp))
    from pipelines.atomic import temp_sibling

    out_dir = Path(out_dir)
    tmp = temp_sibling(out_dir)  # readers never see a half-written tokenizer
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_checked(trained, spec, tmp)
        publish_tokenizer(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(out_dir)  # name_or_path = the final folder, not the temp one
