"""Summarization and translation fine-tuning of an encoder-decoder checkpoint (T5, BART).

Data: objective.dataset is a local .jsonl/.json/.csv/.tsv/.parquet file or a Hub dataset name
(the data side below picks the columns). Evaluation uses objective.eval_dataset (a local file),
else the Hub dataset's eval_split, else a seeded held-out share (data.validation_fraction) of a
local file. The source is cut to data.max_seq_length tokens (run_summarization.py's
max_source_length; lowered to the checkpoint's position table), the target to
objective.max_target_length.

T5 checkpoints get the source prefix "summarize: " unless objective.source_prefix says otherwise
(the released T5 models learned their tasks by prefix; translation needs e.g.
"translate English to German: "). Evaluation generates with beam search and reports ROUGE-1/2/L/Lsum
(mean F-measure, 0..1) and sacreBLEU (0..100) against the untruncated references.

## The data side

(source, target) text pairs for summarization / translation from a local file or a Hub dataset.

Local files load through `datasets` (json lines, json, csv, tsv, parquet). Columns: named in the
recipe, or the first present of the usual names (XSum: document/summary, CNN/DailyMail:
article/highlights, generic: text|source|input / target|output). Translation datasets in the
WMT / OPUS layout keep both sides in one `translation` column of {language: text}; naming
source_lang and target_lang picks them from there. Every problem a user can cause (missing file,
unknown format, missing column, no usable rows) is an LmforgeError naming file and column.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.config import check_range
from pipelines.data.hub import hub_unreachable
from pipelines.errors import LmforgeError
from tasks.base import register
from tasks.finetuning.common import gather
from tasks.finetuning.text_to_text import TextToTextFinetune

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
    unreachable = hub_unreachable()  # the same fast probe GLUE uses (no 25 s of retries)
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


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Seq2SeqParams:
    dataset: str | None = None  # local file or Hub dataset name (--data)
    dataset_config: str | None = None  # Hub config, e.g. "3.0.0" for cnn_dailymail
    eval_dataset: str | None = None  # local file for evaluation
    train_split: str = "train"
    eval_split: str = "validation"  # Hub datasets only
    source_column: str | None = None  # None: first of document, article, text, source, input
    target_column: str | None = None  # None: first of summary, highlights, target, output
    source_lang: str | None = None  # translation: keys of the 'translation' column
    target_lang: str | None = None
    source_prefix: str | None = None  # None: "summarize: " for T5 checkpoints, "" for others
    max_target_length: int = 128
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    num_beams: int = 4
    length_penalty: float = 1.0  # > 1 favours longer outputs (BART on CNN/DM: 2.0; T5 paper: 0.6)
    max_new_tokens: int | None = None  # None: max_target_length
    no_repeat_ngram_size: int = 0  # BART on CNN/DM: 3

    def check(self, where: str) -> None:
        for name in ("max_target_length", "max_train_examples", "max_eval_examples", "num_beams", "max_new_tokens"):
            check_range(where, name, getattr(self, name), lo=1)
        check_range(where, "no_repeat_ngram_size", self.no_repeat_ngram_size, lo=0)


def sentence_lines(text: str) -> str:
    return "\n".join(_SENTENCE_END.split(text.strip()))


@register("seq2seq")
class Seq2SeqFinetune(TextToTextFinetune):
    Params = Seq2SeqParams

    def __init__(self, recipe):
        super().__init__(recipe)
        p = self.params
        if not p.dataset:
            raise LmforgeError(f"recipe '{recipe.name}': objective.dataset is not set (--data <file.jsonl|.csv or "
                               "Hub dataset name>)")
        for field in ("dataset", "eval_dataset"):  # fail before any model or tokenizer is loaded
            path = getattr(p, field)
            if path and is_local(path) and not Path(path).expanduser().is_file():
                raise LmforgeError(f"objective.{field}: data file {path} not found")
        self.max_target_length = p.max_target_length
        if p.source_prefix is None:
            summarizing = not (p.source_lang or p.target_lang)
            self.prefix = "summarize: " if summarizing and self.config.model_type in ("t5", "mt5") else ""
        else:
            self.prefix = p.source_prefix

    def load_pairs(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(train pairs, eval pairs) of (source, target) texts."""
        p, seed = self.params, self.recipe.training.seed
        columns = dict(source_column=p.source_column, target_column=p.target_column, source_lang=p.source_lang,
                       target_lang=p.target_lang)

        def pairs(name, split):
            rows = load_local(name) if is_local(name) else load_hub(name, p.dataset_config, split)
            return list(zip(*text_pairs(rows, name, **columns)))

        train = pairs(p.dataset, p.train_split)
        if p.eval_dataset or not is_local(p.dataset):
            held = pairs(p.eval_dataset or p.dataset, p.eval_split)
        else:  # one local file: a seeded held-out share
            if len(train) < 2:
                raise LmforgeError(f"{p.dataset}: {len(train)} usable row(s); need 2 or more to hold some out for "
                                   "evaluation (or set objective.eval_dataset)")
            n_eval = min(len(train) - 1, max(1, round(self.recipe.data.validation_fraction * len(train))))
            random.Random(seed).shuffle(train)
            held, train = train[:n_eval], train[n_eval:]
        if p.max_train_examples:
            train = random.Random(seed).sample(train, min(p.max_train_examples, len(train)))
        return train, held[: p.max_eval_examples or None]

    def prepare(self, tokenizer):
        self.setup_once(tokenizer)
        train, held = self.load_pairs()
        self.references = [t for _, t in held]
        train_data = self.encode([self.prefix + s for s, _ in train], [t for _, t in train])
        eval_data = self.encode([self.prefix + s for s, _ in held], self.references,
                                ref=list(range(len(self.references))))
        return train_data, eval_data

    @property
    def generation(self) -> dict:
        p = self.params
        return dict(num_beams=p.num_beams, length_penalty=p.length_penalty, early_stopping=True,
                    max_new_tokens=p.max_new_tokens or p.max_target_length,
                    no_repeat_ngram_size=p.no_repeat_ngram_size)

    @torch.no_grad()
    def eval_metrics(self, model, batches):
        from tasks.metrics import generation_metrics

        rows = []
        for b in batches:
            texts, lengths = self.generate(model, b, **self.generation)
            rows += list(zip(b["ref"].tolist(), texts, lengths))
        rows = gather(rows)
        preds = [text for _, text, _ in rows]
        refs = [self.references[i] for i, _, _ in rows]
        out = generation_metrics([sentence_lines(t) for t in preds], [sentence_lines(t) for t in refs],
                                 metrics=("rouge",))
        out.update(generation_metrics(preds, refs, metrics=("bleu",)))
        out["gen_len"] = sum(n for *_, n in rows) / len(rows)  # mean generated tokens, as run_summarization.py
        return out
