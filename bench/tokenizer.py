"""Tokenizer training speed: `python -m bench tokenizer` prints the MB/s table of docs/TOKENIZERS.md.

Times `train_backend` (training + post-processor; not the save/reload check) per builder on
two corpora: the default corpus (~1.7 MB) and a ~15 MB one made of distinct text: the default
corpus, ../shared/data (wikitext-2, tinyshakespeare; LMFORGE_SHARED_DATA) when present, then prose docstrings of
the venv's site-packages (cached under LMFORGE_HOME; built once, about a minute).
Threads: tokenizers and sentencepiece use every core they see; the table says how many.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.common import SHARED_DATA
from pipelines.atomic import atomic_write_text
from pipelines.data.default_corpus import default_corpus_path, lmforge_home, module_documents
from tokenizer.build import family_spec, train_backend

EXTRA_FILES = ("wikitext-2/valid.txt", "wikitext-2/test.txt", "tinyshakespeare/input.txt")
# (label, family, unigram trainer)
BUILDERS = (("wordpiece", "bert", None), ("byte-level bpe", "roberta", None),
            ("unigram (sentencepiece)", "t5", "sentencepiece"), ("unigram (tokenizers)", "t5", "tokenizers"))


def large_corpus(target_mb: float) -> Path:
    """A corpus of about `target_mb` MB of distinct (not repeated) text, built once and cached."""
    path = lmforge_home() / "corpus" / f"bench-{target_mb:g}mb.txt"
    if path.exists():
        return path
    import site

    target = int(target_mb * 1e6)
    parts = [default_corpus_path().read_text(encoding="utf-8")]
    parts += [(SHARED_DATA / f).read_text(encoding="utf-8") for f in EXTRA_FILES
              if (SHARED_DATA / f).exists()]
    size = sum(len(p.encode()) for p in parts)
    for root in site.getsitepackages():
        for file in sorted(Path(root).rglob("*.py")):
            if size >= target:
                break
            doc = "\n".join(module_documents(file))
            if doc:
                parts.append(doc + "\n\n")
                size += len(parts[-1].encode())
    atomic_write_text(path, "".join(parts))
    return path


def time_builder(family: str, trainer: str | None, lines: list[str], vocab_size: int) -> tuple[float, int]:
    """(seconds, vocabulary size reached) for one training run."""
    spec = family_spec(family)
    start = time.perf_counter()
    if trainer == "tokenizers":  # bypass build's default (sentencepiece) to time tokenizers' UnigramTrainer
        from tokenizer.unigram import train_unigram

        tok = train_unigram(lines, vocab_size, list(spec.specials), spec.roles["unk_token"], spec.lowercase,
                            trainer="tokenizers")
    else:
        tok = train_backend(spec, lines, vocab_size)
    return time.perf_counter() - start, tok.get_vocab_size()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench tokenizer", description=__doc__.splitlines()[0])
    parser.add_argument("--large-mb", type=float, default=15.0)
    parser.add_argument("--vocab", type=int, nargs="+", default=[8000, 30000])
    args = parser.parse_args(argv)
    corpora = [("default", default_corpus_path()), ("large", large_corpus(args.large_mb))]
    os.environ["RUST_BACKTRACE"] = "0"  # the expected Unigram panic would print pages of Rust frames
    print(f"cores visible: {os.cpu_count()}", flush=True)
    print("| builder | corpus | MB | vocab asked | vocab got | seconds | MB/s |")
    print("|---|---|---|---|---|---|---|")
    for name, path in corpora:
        text = path.read_text(encoding="utf-8")
        mb, lines = len(text.encode()) / 1e6, text.splitlines()
        for label, family, trainer in BUILDERS:
            for vocab in args.vocab:
                try:
                    secs, got = time_builder(family, trainer, lines, vocab)
                    cells = f"{got} | {secs:.1f} | {mb / secs:.2f}"
                except BaseException as exc:  # a Rust panic arrives as pyo3's PanicException (BaseException)
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    cells = f"- | fails: {type(exc).__name__}: {str(exc).splitlines()[0][:60]} | -"
                print(f"| {label} | {name} | {mb:.1f} | {vocab} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
