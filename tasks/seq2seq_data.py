"""(source, target) text pairs for summarization / translation from a local file or a Hub dataset.

Local files load through `datasets` (json lines, json, csv, tsv, parquet). Columns: named in the
recipe, or the first present of the usual names (XSum: document/summary, CNN/DailyMail:
article/highlights, generic: text|source|input / target|output). Translation datasets in the
WMT / OPUS layout keep both sides in one `translation` column of {language: text}; naming
source_lang and target_lang picks them from there. Every problem a user can cause (missing file,
unknown format, missing column, no usable rows) is an LmforgeError naming file and column.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import LmforgeError

SOURCE_COLUMNS = ("document", "article", "text", "source", "input")
TARGET_COLUMNS = ("summary", "highlights", "target", "output")
TRANSLATION_COLUMN = "translation"
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


def is_local(source: str) -> bool:
    """A path (existing, or spelled like a file) rather than a Hub dataset name like 'EdinburghNLP/xsum'."""
    return Path(source).exists() or Path(source).suffix in LOCAL_FORMATS or source.startswith((".", "/", "~"))


def _first_line(exc: BaseException) -> str:
    """The most telling line of a datasets error: its cause's (the parser's), else its own."""
    for e in (exc.__cause__, exc):
        text = " ".join(str(e or "").split())
        if text:
            return f"{type(e).__name__}: {text[:200]}"
    return type(exc).__name__


def load_local(path: str):
    """A local file as a datasets.Dataset (all rows)."""
    from datasets import load_dataset

    file = Path(path).expanduser()
    if not file.is_file():
        raise LmforgeError(f"data file {path}: not found")
    if file.suffix not in LOCAL_FORMATS:
        raise LmforgeError(f"data file {path}: unknown format '{file.suffix}' (use {', '.join(LOCAL_FORMATS)})")
    if not file.read_bytes().strip():  # datasets' json builder raises a bare StopIteration on an empty file
        raise LmforgeError(f"data file {path}: empty")
    kwargs = {"delimiter": "\t"} if file.suffix == ".tsv" else {}
    try:
        return load_dataset(LOCAL_FORMATS[file.suffix], data_files=str(file), split="train", **kwargs)
    except Exception as exc:  # parse errors of any builder: the user's file, not our bug
        raise LmforgeError(f"data file {path}: cannot read it as {LOCAL_FORMATS[file.suffix]} "
                           f"({_first_line(exc)})") from exc


def load_hub(name: str, config: str | None, split: str):
    """One split of a Hub dataset; fails within seconds when the Hub is unreachable."""
    from tasks.glue_data import _hub_unreachable  # the same fast probe GLUE uses (no 25 s of retries)

    unreachable = _hub_unreachable()
    if unreachable:
        raise LmforgeError(f"dataset '{name}': cannot reach the Hub ({unreachable}); pass a local "
                           ".jsonl/.csv file as --data (DATA=...)")
    import datasets

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # offline cache miss, unknown name or split, HTTP error: no data either way
        raise LmforgeError(f"dataset '{name}' split '{split}': cannot load it ({_first_line(exc)}); pass a local "
                           ".jsonl/.csv file as --data (DATA=...)") from exc


def pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], field: str, where: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise LmforgeError(f"{where}: no column '{wanted}' (columns: {', '.join(columns)}); "
                               f"set objective.{field}")
        return wanted
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        raise LmforgeError(f"{where}: none of the columns {', '.join(candidates)} (columns: {', '.join(columns)}); "
                           f"set objective.{field}")
    return found


def text_pairs(ds, where: str, source_column=None, target_column=None, source_lang=None, target_lang=None):
    """(sources, targets) of every row where both are non-blank text."""
    if source_lang or target_lang:
        if not (source_lang and target_lang):
            raise LmforgeError(f"{where}: translation needs both objective.source_lang and objective.target_lang")
        column = pick_column(ds.column_names, TRANSLATION_COLUMN, (), "source_lang", where)
        pairs = [((t or {}).get(source_lang), (t or {}).get(target_lang)) for t in ds[column]]
    else:
        src = pick_column(ds.column_names, source_column, SOURCE_COLUMNS, "source_column", where)
        tgt = pick_column(ds.column_names, target_column, TARGET_COLUMNS, "target_column", where)
        pairs = list(zip(ds[src], ds[tgt]))
    kept = [(s, t) for s, t in pairs if isinstance(s, str) and isinstance(t, str) and s.strip() and t.strip()]
    if not kept:
        raise LmforgeError(f"{where}: no row with both a source and a target text ({len(pairs)} rows read)")
    return [s for s, _ in kept], [t for _, t in kept]
