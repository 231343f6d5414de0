"""CoNLL-2003 named-entity data: the column files of a folder (train.txt, valid.txt or dev.txt,
test.txt) or a Hub dataset with ClassLabel tags, as sentences {"tokens": [...], "tags": [...]}.

A file holds one token per line, its columns separated by whitespace: the token first, the NER tag
last (CoNLL-2003: token, POS, chunk, NER); blank lines end sentences; `-DOCSTART-` lines mark
documents and are skipped. Two tag schemes are read (Tjong Kim Sang & De Meulder 2003):
  IOB1, CoNLL-2003's own files: I-X is every word of an entity, its first one too; B-X only starts
       an entity that directly follows another entity of type X.
  IOB2, most later copies (the Hub's conll2003): B-X starts every entity.
"auto" takes IOB2 unless some I- tag starts an entity (detect_scheme).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.config import check_choice
from pipelines.data.hub import hub_unreachable
from pipelines.errors import LmforgeError, one_line

SCHEMES = ("auto", "IOB1", "IOB2")
SPLIT_FILES = {"train": ("train.txt",), "dev": ("valid.txt", "dev.txt"), "test": ("test.txt",)}
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
DOCSTART = "-DOCSTART-"


# --- tags ---------------------------------------------------------------------------------------


def check_tag(tag: str, where: str) -> None:
    """O, B-<type> or I-<type>; anything else (IOBES' E-/S-, a bare type, 'B-') is refused."""
    if tag == "O":
        return
    prefix, dash, kind = tag.partition("-")
    if prefix not in ("B", "I") or not dash:
        raise LmforgeError(f"{where}: unknown tag {tag!r} (expected O, B-<type> or I-<type>: IOB1 or IOB2)")
    if not kind or kind != kind.strip():
        raise LmforgeError(f"{where}: malformed tag {tag!r}: no entity type after '{prefix}-'")


def starts_with_inside(previous: str, tag: str) -> bool:
    """An I- tag that starts an entity (after O, at the sentence start, after another type): IOB1 only."""
    return tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:])


def detect_scheme(sentences: list[dict]) -> str:
    """IOB1 when some I- tag starts an entity, else IOB2 (a file without such a tag reads the same
    under both; IOB2's strict evaluation is then the one that applies)."""
    for s in sentences:
        if any(starts_with_inside(p, t) for p, t in zip(["O"] + s["tags"], s["tags"])):
            return "IOB1"
    return "IOB2"


def check_iob2(tags: list[str], where_of) -> None:
    """Refuse an I- tag that starts an entity: strict IOB2 scoring would silently drop that gold entity."""
    for i, (previous, tag) in enumerate(zip(["O"] + tags, tags)):
        if starts_with_inside(previous, tag):
            raise LmforgeError(f"{where_of(i)}: tag {tag} starts an entity, which IOB2 does not allow (B-{tag[2:]} "
                               "starts every IOB2 entity); the data is IOB1: set the scheme to IOB1")


def check_scheme(scheme: str, where: str) -> None:
    check_choice(where, "scheme", scheme, SCHEMES)


# --- local files --------------------------------------------------------------------------------


def conll_file(folder: str | Path, split: str) -> Path:
    """The file of `split` (train | dev | test) in `folder`; dev is valid.txt (CoNLL-2003) or dev.txt."""
    folder = Path(folder)
    names = SPLIT_FILES[split]
    if not folder.is_dir():
        raise LmforgeError(f"conll {folder}: not a folder (expected one holding train.txt, valid.txt or dev.txt)")
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise LmforgeError(f"conll {folder / names[0]}: file not found (the {split} split: "
                       f"{' or '.join(names)} in {folder})")


def read_conll(path: str | Path, scheme: str = "auto") -> list[dict]:
    """The sentences of one CoNLL column file, every line checked; scheme IOB2 also refuses an I- tag
    that starts an entity. Errors name the file and the line."""
    path = Path(path)
    check_scheme(scheme, f"conll {path}")
    if not path.is_file():
        raise LmforgeError(f"conll {path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            sentences = _sentences(path, f, scheme)
    except UnicodeDecodeError as e:
        raise LmforgeError(f"conll {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not sentences:
        raise LmforgeError(f"conll {path}: no sentences (expected one 'token ... tag' line per token, "
                           "blank lines between sentences)")
    return sentences


def _sentences(path: Path, lines, scheme: str) -> list[dict]:
    sentences: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    n_cols = first_line = start = 0

    def close() -> None:
        if scheme == "IOB2":
            check_iob2(tags, lambda i: f"conll {path}, line {start + i}")
        sentences.append({"tokens": list(tokens), "tags": list(tags)})
        tokens.clear()
        tags.clear()

    for line_no, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0] == DOCSTART:
            if tokens:
                close()
            continue
        where = f"conll {path}, line {line_no}"
        if not n_cols:
            if len(fields) < 2:
                raise LmforgeError(f"{where}: 1 column ({fields[0]!r}); expected the token first and the NER tag "
                                   "last, separated by whitespace")
            n_cols, first_line = len(fields), line_no
        elif len(fields) != n_cols:
            raise LmforgeError(f"{where}: {len(fields)} column{'s' * (len(fields) != 1)}, expected {n_cols} "
                               f"as on line {first_line}")
        check_tag(fields[-1], where)
        if not tokens:
            start = line_no
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        close()
    return sentences


# --- the Hub ------------------------------------------------------------------------------------


def load_conll_hub(name: str, split: str, scheme: str = "auto", cache_dir: str | None = None) -> list[dict]:
    """A Hub dataset with `tokens` and `ner_tags` (a sequence of ClassLabel), e.g. eriktks/conll2003."""
    hint = "pass a local folder with train.txt, valid.txt (or dev.txt) and test.txt"
    unreachable = hub_unreachable()
    if unreachable:
        raise LmforgeError(f"cannot load {name}: {unreachable}; {hint} (or set HF_HUB_OFFLINE=1 to use a cached copy)")
    import datasets

    try:
        ds = datasets.load_dataset(name, split=HUB_SPLITS[split], cache_dir=cache_dir)
    # any failure means "no data from the Hub" (not found, offline cache miss, HTTP error)
    except Exception as e:
        raise LmforgeError(f"cannot load {name} split '{HUB_SPLITS[split]}' (not a local folder either; "
                           f"{type(e).__name__}: {one_line(e, 160)}); {hint}") from e
    return hub_sentences(name, ds, scheme)


def hub_sentences(name: str, ds, scheme: str = "auto") -> list[dict]:
    """A Dataset with `tokens` and `ner_tags` (ClassLabel ids) as sentences of tag names."""
    missing = [c for c in ("tokens", "ner_tags") if c not in ds.column_names]
    if missing:
        raise LmforgeError(f"conll {name}: no column {', '.join(missing)} (columns: {', '.join(ds.column_names)})")
    names = getattr(ds.features["ner_tags"], "feature", None)
    names = getattr(names, "names", None)
    if not names:
        raise LmforgeError(f"conll {name}: ner_tags is not a sequence of ClassLabel (no tag names to read)")
    for tag in names:
        check_tag(tag, f"conll {name}, ner_tags class names")
    sentences = []
    for i, (tokens, ids) in enumerate(zip(ds["tokens"], ds["ner_tags"])):
        if len(tokens) != len(ids):
            raise LmforgeError(f"conll {name}, example {i}: {len(tokens)} tokens but {len(ids)} ner_tags")
        tags = [names[t] for t in ids]
        if scheme == "IOB2":
            check_iob2(tags, lambda j, i=i: f"conll {name}, example {i}, token {j}")
        if tokens:
            sentences.append({"tokens": list(tokens), "tags": tags})
    return sentences


# --- either -------------------------------------------------------------------------------------


def is_local(data: str) -> bool:
    """A path that exists, or one written as a path (a Hub name is 'name' or 'owner/name')."""
    return Path(data).expanduser().exists() or data.startswith(("/", ".", "~")) or data.count("/") > 1


def load_conll(data: str, split: str, scheme: str = "auto") -> list[dict]:
    """The sentences of `split` (train | dev | test) from a local folder or a Hub dataset name."""
    check_scheme(scheme, f"conll {data}")
    if is_local(data):
        return read_conll(conll_file(Path(data).expanduser(), split), scheme)
    return load_conll_hub(data, split, scheme)
