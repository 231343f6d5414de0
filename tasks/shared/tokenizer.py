"""The tokenizer of a recipe: a named one (checked to be of a usable kind) or one trained for the
model family on the recipe's corpus."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import Recipe
from pipelines.errors import LmforgeError, one_line


def tokenizer_cache(recipe: Recipe) -> Path:
    """Where a tokenizer trained for this corpus and these settings is kept: the trainers break ties by
    hash-map order, so training again can change the vocabulary (docs/DESIGN.md, Determinism). Keyed by
    the corpus's identity (files, sizes, mtimes or the Hub dataset), the family, the tokenizer section,
    the seed of the sample and the builder's own source; beside the prepared shards (shared storage
    on a cluster)."""
    import hashlib

    import tokenizer as builders
    from pipelines.data.sources import cache_home, fingerprint, source_fingerprint

    code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(builders.__file__).parent.glob("*.py"))))
    t = recipe.tokenizer
    key = fingerprint(source_fingerprint(recipe.data), recipe.model.family, t.vocab_size, t.model_max_length,
                      t.train_sample_mb, recipe.training.seed, code.hexdigest())
    root = Path(recipe.data.prepared_dir) if recipe.data.prepared_dir else cache_home()
    return root / "tokenizers" / f"{recipe.model.family}-{t.vocab_size}-{key}"


def _trained_tokenizer(recipe: Recipe, out_dir: Path):
    """The run's tokenizer in output_dir/tokenizer: the one it trained before (a resume), else the cached
    one of an earlier run with the same corpus and settings (tokenizer.reuse), else a new one, which is
    then cached."""
    import shutil

    from transformers import AutoTokenizer

    from pipelines.atomic import atomic_folder
    from pipelines.data.sources import sample_texts
    from tokenizer import build_tokenizer

    if (out_dir / "tokenizer.json").exists():  # resumed runs reuse the tokenizer they trained
        return AutoTokenizer.from_pretrained(out_dir)
    cache = tokenizer_cache(recipe) if recipe.tokenizer.reuse else None
    if cache is not None and (cache / "tokenizer.json").exists():
        with atomic_folder(out_dir) as tmp:
            shutil.copytree(cache, tmp, dirs_exist_ok=True)
        return AutoTokenizer.from_pretrained(out_dir)
    texts = sample_texts(recipe.data, int(recipe.tokenizer.train_sample_mb * 1e6), recipe.training.seed)
    tok = build_tokenizer(recipe.model.family, texts, recipe.tokenizer.vocab_size, out_dir,
                          model_max_length=recipe.tokenizer.model_max_length)
    if cache is not None:
        with atomic_folder(cache) as tmp:
            shutil.copytree(out_dir, tmp, dirs_exist_ok=True)
    return tok


def load_or_build_tokenizer(recipe: Recipe, kinds: tuple[str, ...], match_family: bool = False):
    """recipe.tokenizer.name_or_path if given (checked to be of a kind the task can use, and with
    `match_family` of the kind model.family is built with: a byte-level BPE for RoBERTa, Unigram for
    ALBERT), else a tokenizer for the family trained on the recipe's corpus and saved in output_dir."""
    from tokenizer import FAMILY_SPECS, tokenizer_kind

    source = recipe.tokenizer.name_or_path or recipe.model.name_or_path
    if source:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(source)
        except Exception as exc:
            raise LmforgeError(f"tokenizer.name_or_path: cannot load '{source}': "
                               f"{one_line(exc)}") from None
    else:
        tok = _trained_tokenizer(recipe, Path(recipe.training.output_dir) / "tokenizer")
    kind = tokenizer_kind(tok)
    if kind not in kinds:
        raise LmforgeError(f"tokenizer '{source}' is {kind}, but task '{recipe.task}' needs "
                           f"{' or '.join(kinds)}")
    spec = FAMILY_SPECS.get(recipe.model.family)  # families without a builder: any kind the task takes
    if match_family and spec is not None and kind != spec.kind:
        raise LmforgeError(f"tokenizer '{source}' is {kind}, but model.family '{recipe.model.family}' "
                           f"(recipe '{recipe.name}') is pretrained with a {spec.kind} tokenizer")
    return tok
