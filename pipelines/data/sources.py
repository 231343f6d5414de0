"""Where pretraining text comes from: the embedded default corpus, local files, or a Hub dataset,
streamed as documents (lists of sentences) so that no source is ever held in memory whole.

One rule for names: `default`, an existing local file or folder, a string that looks like a path
(an error when missing), or else a Hub dataset name (loaded with streaming=True).

Local text files are read line by line in one of three layouts, told apart by their first 64 kB:
- WikiText (` = Title = ` heading lines): a heading starts a document and is not text; every other
  non-empty line is a paragraph, split into sentences; ` = = Section = = ` lines are dropped;
- BERT's pretraining format (blank lines present): one sentence per line, a blank line between
  documents;
- anything else: one document per line, split into sentences.
No text of a user's corpus is dropped: every sentence, however short, is kept.
.json/.jsonl/.csv/.tsv/.parquet files are read with `datasets` (streaming) from data.text_column.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipelines.config import DataSection
from pipelines.data.default_corpus import DEFAULT_CORPUS_NAME, default_corpus_path, split_sentences
from pipelines.errors import LmforgeError, one_line

Document = list[str]
TABULAR = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".tsv": "csv"}
_HEADING = re.compile(r"^ ?= [^=].* = ?$")
_SUBHEADING = re.compile(r"^ ?(= ){2,}.*( =){2,} ?$")
_PEEK = 65536


def is_heading(line: str) -> bool:
    return bool(_HEADING.match(line.rstrip("\n")))


def is_subheading(line: str) -> bool:
    """` = = Section = = `: dropped from the text (the section's paragraphs stay in their document)."""
    return bool(_SUBHEADING.match(line.rstrip("\n")))


def _layout(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.read(_PEEK)
    lines = head.splitlines()
    if any(is_heading(ln) for ln in lines):
        return "wikitext"
    if any(not ln.strip() for ln in lines[1:-1]):
        return "blank-line"
    return "line"


def iter_text_file(path: Path) -> Iterator[Document]:
    """Documents of one local text file, read incrementally (see the module docstring)."""
    layout = _layout(path)
    current: Document = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if layout == "wikitext":
                    if is_heading(line):
                        if current:
                            yield current
                        current = []
                    elif line.strip() and not is_subheading(line):
                        current.extend(split_sentences(line, min_words=1))
                elif layout == "blank-line":
                    if line.strip():
                        current.append(line.strip())
                    elif current:
                        yield current
                        current = []
                else:
                    sentences = split_sentences(line, min_words=1)
                    if sentences:
                        yield sentences
    except UnicodeDecodeError as exc:
        raise LmforgeError(f"corpus file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if current:
        yield current


def read_sentence_file(path: Path) -> list[Document]:
    """All documents of a small local text file (tests, the default corpus)."""
    return list(iter_text_file(Path(path)))


def rows_to_documents(texts, column: str, where: str) -> Iterator[Document]:
    """Rows of a text column -> documents. Datasets like wikitext keep one paragraph per row with
    headings (" = Title = ") between articles: a heading starts a new document."""
    current: Document = []
    for row in texts:
        if column not in row:
            raise LmforgeError(f"{where}: no column '{column}' (columns: {', '.join(row)}); set data.text_column")
        text = (row[column] or "").strip()
        if is_heading(" " + text + " "):
            if current:
                yield current
            current = []
        elif text and not _SUBHEADING.match(" " + text + " "):
            current.extend(split_sentences(text, min_words=1))
    if current:
        yield current


def looks_like_path(source: str) -> bool:
    """A Hub name is `name` or `owner/name`; anything else (absolute, relative, with a suffix) is a path."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or bool(Path(source).suffix)


def local_files(data: DataSection) -> list[Path] | None:
    """The local files of data.corpus in a fixed order; None for a Hub dataset."""
    source = data.corpus
    if source == DEFAULT_CORPUS_NAME:
        return [default_corpus_path()]
    path = Path(source).expanduser()
    if path.exists():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")) \
            if path.is_dir() else [path]
        if not files:
            raise LmforgeError(f"data.corpus: folder {source} has no files")
        return files
    if looks_like_path(source):
        raise LmforgeError(f"data.corpus: file or folder not found: {source}")
    return None


def iter_file_documents(path: Path, text_column: str) -> Iterator[Document]:
    if path.suffix in TABULAR:
        from datasets import load_dataset

        rows = load_dataset(TABULAR[path.suffix], data_files=str(path), split="train", streaming=True,
                            **({"delimiter": "\t"} if path.suffix == ".tsv" else {}))
        yield from rows_to_documents(rows, text_column, str(path))
    else:
        yield from iter_text_file(path)


def _hub_rows(data: DataSection):
    from datasets import load_dataset

    try:
        return load_dataset(data.corpus, data.corpus_config, split=data.split, streaming=True,
                            revision=data.revision)
    except Exception as exc:  # offline, unknown name, bad config: all user-fixable
        first = one_line(exc, 300)
        raise LmforgeError(f"data.corpus: cannot load Hub dataset '{data.corpus}' "
                           f"(config {data.corpus_config}, split {data.split}): {first}. "
                           "Offline? pass a local file or folder instead.") from None


def iter_documents(data: DataSection) -> Iterator[Document]:
    """Every non-empty document of the configured corpus, streamed, capped by data.max_documents."""
    files = local_files(data)
    if files is None:
        stream = rows_to_documents(_hub_rows(data), data.text_column, f"Hub dataset {data.corpus}")
    else:
        stream = (d for f in files for d in iter_file_documents(f, data.text_column))
    n = 0
    for doc in stream:
        if not doc:
            continue
        yield doc
        n += 1
        if data.max_documents and n >= data.max_documents:
            return
    if n == 0:
        raise LmforgeError(f"data.corpus '{data.corpus}': no text found")


def load_documents(data: DataSection) -> list[Document]:
    """All documents in memory: only for small corpora (tests, inspection)."""
    return list(iter_documents(data))


def sample_texts(data: DataSection, max_chars: int, seed: int = 0) -> list[str]:
    """Sentences of a bounded, seeded sample of documents for tokenizer training: every document
    while the total stays under max_chars, then reservoir sampling (Algorithm R) over documents, so
    a 50 GB corpus is streamed once and never held in memory. A corpus under the budget is used whole,
    in order."""
    rng = np.random.default_rng(seed)
    kept: list[Document] = []
    chars, capacity, seen = 0, None, 0
    for doc in iter_documents(data):
        seen += 1
        if capacity is None:
            kept.append(doc)
            chars += sum(len(s) for s in doc)
            if chars >= max_chars:
                capacity = len(kept)
        else:
            j = int(rng.integers(seen))
            if j < capacity:
                kept[j] = doc
    return [s for d in kept for s in d]


def source_fingerprint(data: DataSection) -> dict:
    """What identifies the source's content: paths, sizes and mtimes of local files, or the Hub
    dataset, config, split and revision; plus the settings that change which text is read."""
    files = local_files(data)
    if files is None:
        where = {"hub": data.corpus, "config": data.corpus_config, "split": data.split, "revision": data.revision}
    else:
        where = {"files": [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]}
    return {**where, "text_column": data.text_column, "max_documents": data.max_documents}


def fingerprint(*parts) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_home() -> Path:
    from pipelines.data.default_corpus import lmforge_home

    return Path(os.environ.get("LMFORGE_PREPARED", lmforge_home() / "prepared"))
