"""The embedded default corpus: English prose from the Python standard library's docstrings.

Every machine with Python has this text, so `make pretrain` needs no network and no files from
outside the project. Built deterministically (sorted files, fixed filters) and cached as
one sentence per line with a blank line between documents: the format of BERT's
create_pretraining_data.py, which NSP/SOP need (sentences and document boundaries).
"""

from __future__ import annotations

import ast
import os
import re
import sys
import sysconfig
from pathlib import Path

DEFAULT_CORPUS_NAME = "default"
# Skipped: tests and vendored/generated code carry little prose and lots of noise.
_SKIP_PARTS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "__pycache__", "encodings",
               "turtledemo", "pydoc_data", "ensurepip", "venv"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|\$ |[-=~*]{3,}|:\w+:|\w+\s*=\s*\S|def |class |import )")
_MIN_WORDS = 4


def lmforge_home() -> Path:
    """Where lmforge caches derived files (corpus, datasets); override with LMFORGE_HOME."""
    return Path(os.environ.get("LMFORGE_HOME", Path.home() / ".cache" / "lmforge"))


def split_sentences(paragraph: str, min_words: int = _MIN_WORDS) -> list[str]:
    """Regex sentence splitter: offline (nltk's punkt needs a download) and good enough for prose.
    Sentences under min_words words are dropped (the default corpus's noise filter; user text: 1)."""
    text = " ".join(paragraph.split())
    return [s for s in _SENTENCE_END.split(text) if len(s.split()) >= min_words]


def _prose_paragraphs(docstring: str) -> list[str]:
    paragraphs = []
    for block in re.split(r"\n\s*\n", docstring):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        # A paragraph with any code-looking or deeply indented line is an example, not prose.
        if not lines or any(_CODE_LINE.match(ln) or ln.startswith("        ") for ln in lines):
            continue
        paragraphs.append(" ".join(ln.strip() for ln in lines))
    return paragraphs


def module_documents(path: Path) -> list[str]:
    """All prose sentences of one module's docstrings, in source order: one document."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    sentences: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                for paragraph in _prose_paragraphs(doc):
                    sentences.extend(split_sentences(paragraph))
    return sentences


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if not _SKIP_PARTS & set(p.relative_to(root).parts)]
    return sorted(files, key=lambda p: str(p.relative_to(root)))


def reference_documents() -> list[list[str]]:
    """The language reference shipped for `help()` (pydoc_data.topics): one document per topic."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        return []
    docs = []
    for name in sorted(topics):
        sentences = []
        for paragraph in _prose_paragraphs(topics[name]):
            sentences.extend(split_sentences(paragraph))
        docs.append(sentences)
    return docs


def iter_default_documents():
    """Documents (lists of sentences) of the default corpus, in a fixed order."""
    for path in stdlib_files():
        yield module_documents(path)
    yield from reference_documents()


def build_default_corpus(out_path: Path, min_sentences: int = 2) -> Path:
    """Write the default corpus (documents of >= min_sentences) atomically."""
    from pipelines.atomic import atomic_file

    with atomic_file(out_path) as tmp, open(tmp, "w", encoding="utf-8") as f:  # readers never see half a corpus
        for sentences in iter_default_documents():
            if len(sentences) >= min_sentences:
                f.write("\n".join(sentences) + "\n\n")
    return out_path


def default_corpus_path() -> Path:
    """Path of the default corpus, building it on first use (about 3 s)."""
    version = f"py{sys.version_info.major}.{sys.version_info.minor}"
    path = lmforge_home() / "corpus" / f"stdlib-docs-{version}.txt"
    if not path.exists():
        build_default_corpus(path)
    return path
