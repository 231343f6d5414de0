"""`tokenizer` and `corpus`: a family's tokenizer trained on a corpus; the embedded default corpus."""

from __future__ import annotations


def tokenizer(args) -> int:
    from pipelines.config import DataSection
    from pipelines.data.sources import sample_texts
    from tokenizer import build_tokenizer
    from tokenizer.publish import check_tokenizer_folder

    check_tokenizer_folder(args.output_dir, args.overwrite)  # before the corpus is read
    texts = sample_texts(DataSection(corpus=args.corpus, text_column=args.text_column), int(args.sample_mb * 1e6))
    tok = build_tokenizer(args.family, texts, args.vocab_size, args.output_dir,
                          model_max_length=args.model_max_length, overwrite=args.overwrite)
    print(f"{args.family} tokenizer, {len(tok)} tokens -> {args.output_dir}")
    return 0


def corpus(args) -> int:
    from pathlib import Path

    from pipelines.data.default_corpus import build_default_corpus, default_corpus_path

    path = build_default_corpus(Path(args.output)) if args.output else default_corpus_path()
    text = path.read_text(encoding="utf-8")
    print(f"{path}: {len(text.encode()) / 1e6:.2f} MB, {text.count(chr(10) * 2)} documents")
    return 0
