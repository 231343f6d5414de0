"""Corpora for pretraining: the embedded default, local files, or a Hub dataset -> documents.

A document is a list of sentences (strings). Sentence and document boundaries matter: NSP
and SOP pair sentences inside documents, packing objectives put separators between them.
"""

from __future__ import annotations

import random
from pathlib import Path

from pipelines.config import DataSection
from pipelines.data.default_corpus import DEFAULT_CORPUS_NAME, default_corpus_path, split_sentences
from pipelines.errors import LmforgeError

Document = list[str]
_TABULAR = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".tsv": "csv"}


def read_sentence_file(path: Path) -> list[Document]:
    """One sentence per line, blank line between documents (BERT's pretraining text format).
    A file without blank lines is read as one paragraph per line, split into sentences."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LmforgeError(f"corpus file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    blocks = [b for b in text.split("\n\n") if b.strip()]
    if len(blocks) == 1:  # no document boundaries: each line is a document of sentences
        return [s for s in (split_sentences(line) for line in text.splitlines()) if s]
    return [[ln.strip() for ln in b.splitlines() if ln.strip()] for b in blocks]


def _rows_to_documents(rows, column: str, where: str) -> list[Document]:
    if column not in rows.column_names:
        raise LmforgeError(f"{where}: no column '{column}' (columns: {', '.join(rows.column_names)}); "
                           "set data.text_column")
    docs, current = [], []
    for text in rows[column]:
        text = (text or "").strip()
        # Datasets like wikitext keep one paragraph per row with headings (" = Title = ") between
        # articles: a heading starts a new document, a paragraph adds sentences.
        if text.startswith("= ") and text.endswith(" =") and not text.startswith("= = "):
            if current:
                docs.append(current)
            current = []
        elif text:
            current.extend(split_sentences(text) or [text])
    if current:
        docs.append(current)
    return docs


def load_documents(data: DataSection) -> list[Document]:
    """All documents of the configured corpus (capped by data.max_documents)."""
    source = data.corpus
    if source == DEFAULT_CORPUS_NAME:
        docs = read_sentence_file(default_corpus_path())
    elif Path(source).exists():
        path = Path(source)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        docs = []
        for f in files:
            if f.suffix in _TABULAR:
                from datasets import load_dataset

                rows = load_dataset(_TABULAR[f.suffix], data_files=str(f), split="train",
                                    **({"delimiter": "\t"} if f.suffix == ".tsv" else {}))
                docs.extend(_rows_to_documents(rows, data.text_column, str(f)))
            else:
                docs.extend(read_sentence_file(f))
    elif _looks_like_path(source):
        raise LmforgeError(f"data.corpus: file or folder not found: {source}")
    else:
        docs = _load_hub_documents(data)
    docs = [d for d in docs if d]
    if data.max_documents:
        docs = docs[: data.max_documents]
    if not docs:
        raise LmforgeError(f"data.corpus '{source}': no text found")
    return docs


def _looks_like_path(source: str) -> bool:
    """A Hub name is `name` or `owner/name`; anything else (absolute, relative, with a suffix) is a path."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or bool(Path(source).suffix)


def _load_hub_documents(data: DataSection) -> list[Document]:
    from datasets import load_dataset

    try:
        rows = load_dataset(data.corpus, data.corpus_config, split=data.split)
    except Exception as exc:  # offline, unknown name, bad config: all user-fixable
        first = " ".join(str(exc).split())[:300]
        raise LmforgeError(f"data.corpus: cannot load Hub dataset '{data.corpus}' "
                           f"(config {data.corpus_config}, split {data.split}): {first}. "
                           "Offline? pass a local file or folder instead.") from None
    return _rows_to_documents(rows, data.text_column, f"Hub dataset {data.corpus}")


def split_documents(docs: list[Document], fraction: float, seed: int) -> tuple[list[Document], list[Document]]:
    """Hold out whole documents for evaluation (no sentence of an eval document is trained on)."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(docs) * fraction)) if fraction > 0 and len(docs) > 1 else 0
    held = set(order[:n_eval])
    train = [d for i, d in enumerate(docs) if i not in held]
    return train, [docs[i] for i in sorted(held)]
