"""GLUE data: the nine-task table and loaders that return `datasets.Dataset`s in one column layout.

Every loader returns the columns `sentence1`, [`sentence2`], `label`, `idx`, whatever the source
(a local copy of the GLUE TSVs, or `nyu-mll/glue` on the Hub). Label ids follow the Hub's
ClassLabel order, so a model fine-tuned on one source scores the same on the other. The table
also carries what text-to-text models need (T5's input prefixes and label words).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.data.hub import hub_unreachable
from pipelines.errors import LmforgeError

HUB_DATASET = "nyu-mll/glue"
# MultiNLI marks pairs without annotator consensus with "-"; its README says to drop them.
NO_GOLD_LABEL = "-"


@dataclass(frozen=True)
class GlueTask:
    name: str
    dir_name: str  # folder in the GLUE TSV layout
    hub_columns: tuple[str, ...]  # text columns in nyu-mll/glue, renamed to sentence1 / sentence2
    labels: tuple[str, ...] | None  # class names by id (Hub order); None: regression (stsb, 0..5)
    metrics: tuple[str, ...]
    eval_files: tuple[tuple[str, str], ...]  # (split name, TSV file name)
    # TSV layout, read by POSITION: header names differ between GLUE copies (SST-2 'text' vs
    # 'sentence'). n_cols None: the header decides (MNLI: 12 columns in train, 16 in dev).
    has_header: bool
    n_cols: int | None
    text_cols: tuple[int, ...]
    label_col: int  # -1: last column
    # T5 (Raffel et al. 2020, appendix D): "<prefix> <key1>: <text> <key2>: <text>", keys sorted
    # alphabetically, hence MNLI's hypothesis before premise. (key, our column) in input order.
    t5_fields: tuple[tuple[str, str], ...]

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def text_columns(self) -> tuple[str, ...]:
        return ("sentence1", "sentence2")[: len(self.hub_columns)]

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(split for split, _ in self.eval_files)

    @property
    def t5_prefix(self) -> str:
        return self.name


_DEV = (("validation", "dev.tsv"),)
_ONE = (("sentence", "sentence1"),)
_PAIR = (("sentence1", "sentence1"), ("sentence2", "sentence2"))
_NLI = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        # CoLA train/dev have no header: source, label, original label, sentence
        GlueTask("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"),
                 ("matthews_correlation",), _DEV, False, 4, (3,), 1, _ONE),
        GlueTask("sst2", "SST-2", ("sentence",), ("negative", "positive"),
                 ("accuracy",), _DEV, True, 2, (0,), 1, _ONE),
        # MRPC: Quality, #1 ID, #2 ID, #1 String, #2 String (file starts with a UTF-8 BOM)
        GlueTask("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
                 ("f1", "accuracy"), _DEV, True, 5, (3, 4), 0, _PAIR),
        # STS-B: index genre filename year old_index source1 source2 sentence1 sentence2 score
        GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), None,
                 ("pearson", "spearmanr"), _DEV, True, 10, (7, 8), 9, _PAIR),
        # QQP: id qid1 qid2 question1 question2 is_duplicate
        GlueTask("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"),
                 ("accuracy", "f1"), _DEV, True, 6, (3, 4), 5,
                 (("question1", "sentence1"), ("question2", "sentence2"))),
        # MNLI (official layout): ... sentence1 (col 8) sentence2 (col 9) label1 [.. label5] gold_label
        GlueTask("mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
                 ("accuracy",),
                 (("validation_matched", "dev_matched.tsv"), ("validation_mismatched", "dev_mismatched.tsv")),
                 True, None, (8, 9), -1, (("hypothesis", "sentence2"), ("premise", "sentence1"))),
        # QNLI / RTE / WNLI: index, sentence1 (QNLI: question), sentence2, label
        GlueTask("qnli", "QNLI", ("question", "sentence"), _NLI, ("accuracy",), _DEV, True, 4, (1, 2), 3,
                 (("question", "sentence1"), ("sentence", "sentence2"))),
        GlueTask("rte", "RTE", ("sentence1", "sentence2"), _NLI, ("accuracy",), _DEV, True, 4, (1, 2), 3,
                 _PAIR),
        # WNLI's TSV labels are 0/1 with 1 = entailment, the Hub's order
        GlueTask("wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"),
                 ("accuracy",), _DEV, True, 4, (1, 2), 3, _PAIR),
    )
}


def get_glue_task(task: str) -> GlueTask:
    if task not in GLUE_TASKS:
        raise LmforgeError(f"unknown GLUE task '{task}' (known: {', '.join(GLUE_TASKS)})")
    return GLUE_TASKS[task]


def split_file(task: str, split: str) -> str:
    """The TSV file name of `split` ('train' or one of the task's eval splits)."""
    spec = get_glue_task(task)
    files = dict((("train", "train.tsv"),) + spec.eval_files)
    if split not in files:
        raise LmforgeError(f"GLUE task '{task}' has no split '{split}' (splits: {', '.join(files)})")
    return files[split]


def glue_tasks_present(glue_dir: str | Path) -> list[str]:
    """Tasks (in table order) whose train.tsv and every dev file exist under `glue_dir`."""
    root = Path(glue_dir)
    return [
        name for name, spec in GLUE_TASKS.items()
        if all((root / spec.dir_name / split_file(name, s)).is_file() for s in ("train",) + spec.eval_splits)
    ]


# --- local TSVs ---------------------------------------------------------------------------------


def load_glue_local(glue_dir: str | Path, task: str, split: str = "train"):
    """`<glue_dir>/<TaskDir>/<split file>` as a Dataset (sentence1, [sentence2], label, idx)."""
    spec = get_glue_task(task)
    path = Path(glue_dir) / spec.dir_name / split_file(task, split)
    if not path.is_file():
        raise LmforgeError(f"{path}: GLUE file not found (task '{task}', split '{split}'; "
                           f"expected layout <GLUE_DIR>/{spec.dir_name}/{path.name})")
    return _dataset(spec, _read_tsv(path, spec))


def _read_tsv(path: Path, spec: GlueTask) -> dict[str, list]:
    """Columns of one GLUE TSV, validated row by row.

    Hand-written on the csv module because neither `datasets`' csv builder nor pandas report the
    line of a bad row. Quoting is OFF: GLUE fields are raw text, and RTE/MRPC sentences start with
    or contain unbalanced '"' that a quoting reader would swallow across lines. utf-8-sig drops
    MRPC's BOM; newline="" lets csv take both \\n and \\r\\n as the row end.
    """
    cols: dict[str, list] = {c: [] for c in spec.text_columns + ("label", "idx")}
    n_cols, data_row = spec.n_cols, 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header_pending = spec.has_header
            for fields in reader:
                line = reader.line_num  # one physical line per row: quoting is off
                if not fields:
                    continue  # blank line (e.g. a trailing one)
                if header_pending:
                    header_pending = False
                    n_cols = _check_header(path, line, fields, spec)
                    continue
                if len(fields) != n_cols:
                    raise LmforgeError(f"{path}:{line}: expected {n_cols} tab-separated fields, "
                                       f"found {len(fields)} (row starts {fields[0][:40]!r})")
                raw_label = fields[spec.label_col].strip()
                if raw_label != NO_GOLD_LABEL or spec.is_regression:
                    for name, col in zip(spec.text_columns, spec.text_cols):
                        cols[name].append(fields[col])
                    where = f"{path}:{line}: field {spec.label_col}"
                    cols["label"].append(_parse_label(spec, raw_label, where))
                    cols["idx"].append(data_row)
                data_row += 1
    except UnicodeDecodeError as e:
        raise LmforgeError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except csv.Error as e:
        raise LmforgeError(f"{path}:{reader.line_num}: unreadable TSV row ({e})") from e
    if not cols["label"]:
        raise LmforgeError(f"{path}: no labelled rows ({data_row} data rows read, "
                           f"{'header expected' if spec.has_header else 'no header expected'})")
    return cols


def _check_header(path: Path, line: int, header: list[str], spec: GlueTask) -> int:
    if spec.n_cols is not None and len(header) != spec.n_cols:
        raise LmforgeError(f"{path}:{line}: header has {len(header)} fields, GLUE '{spec.name}' has "
                           f"{spec.n_cols} ({'|'.join(header)[:80]!r})")
    if len(header) <= max(spec.text_cols + (spec.label_col,)):
        raise LmforgeError(f"{path}:{line}: header has only {len(header)} fields; GLUE '{spec.name}' "
                           f"reads columns {spec.text_cols} and label column {spec.label_col}")
    return len(header)


def _parse_label(spec: GlueTask, value: str, where: str) -> int | float:
    """Label id from a class name or its id; STS-B: a float score in [0, 5]."""
    if spec.labels is None:
        try:
            score = float(value)
        except ValueError:
            raise LmforgeError(f"{where}: score {value!r} is not a number") from None
        if not (math.isfinite(score) and 0.0 <= score <= 5.0):
            raise LmforgeError(f"{where}: score {value!r} is outside STS-B's 0..5 range")
        return score
    if value in spec.labels:
        return spec.labels.index(value)
    if value.isdigit() and int(value) < len(spec.labels):
        return int(value)
    raise LmforgeError(f"{where}: label {value!r} is not one of {', '.join(spec.labels)} "
                       f"(or ids 0..{len(spec.labels) - 1}) for GLUE '{spec.name}'")


def _features(spec: GlueTask):
    from datasets import ClassLabel, Features, Value

    label = Value("float32") if spec.labels is None else ClassLabel(names=list(spec.labels))
    texts = {c: Value("string") for c in spec.text_columns}
    return Features({**texts, "label": label, "idx": Value("int32")})


def _dataset(spec: GlueTask, cols: dict[str, list]):
    from datasets import Dataset

    return Dataset.from_dict(cols, features=_features(spec))


# --- the Hub ------------------------------------------------------------------------------------


def load_glue_hub(task: str, split: str = "train", cache_dir: str | None = None):
    """nyu-mll/glue (parquet) mapped to (sentence1, [sentence2], label, idx); fails fast offline."""
    split_file(task, split)  # validates the task and split names before any network access
    hint = "pass GLUE_DIR=<folder with the GLUE TSVs (CoLA/, SST-2/, ...)> to read local files"
    unreachable = hub_unreachable()
    if unreachable:
        raise LmforgeError(f"cannot load {HUB_DATASET} '{task}': {unreachable}; {hint} "
                           "(or set HF_HUB_OFFLINE=1 to use a cached copy)")
    import datasets

    try:
        ds = datasets.load_dataset(HUB_DATASET, task, split=split, cache_dir=cache_dir)
    # any failure here means "no data from the Hub" (offline cache miss, HTTP error, bad cache);
    # the cause is chained for whoever needs the traceback
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else ""
        raise LmforgeError(f"cannot load {HUB_DATASET} '{task}' split '{split}' "
                           f"({type(e).__name__}: {reason[:160]}); {hint}") from e
    return from_hub_columns(task, ds)


def from_hub_columns(task: str, ds):
    """A Dataset in nyu-mll/glue's columns (premise/hypothesis, question1/question2, ...) in ours."""
    spec = get_glue_task(task)
    ds = ds.rename_columns(dict(zip(spec.hub_columns, spec.text_columns)))
    ds = ds.select_columns(list(spec.text_columns) + ["label", "idx"])
    return ds.cast(_features(spec))


def load_glue(task: str, split: str = "train", glue_dir: str | Path | None = None):
    """Local TSVs when `glue_dir` (or $GLUE_DIR) is set, else the Hub."""
    glue_dir = glue_dir or os.environ.get("GLUE_DIR")
    return load_glue_local(glue_dir, task, split) if glue_dir else load_glue_hub(task, split)


# --- text-to-text (T5) --------------------------------------------------------------------------


def t5_input(task: str, example: dict) -> str:
    """T5's input text, e.g. 'mnli hypothesis: ... premise: ...', 'sst2 sentence: ...'."""
    spec = get_glue_task(task)
    return " ".join([spec.t5_prefix] + [f"{key}: {example[col]}" for key, col in spec.t5_fields])


def t5_target(task: str, label: int | float) -> str:
    """T5's target text: the label word; STS-B: the score rounded to 0.2, e.g. '3.8'."""
    spec = get_glue_task(task)
    if spec.labels is None:
        return f"{round(float(label) * 5) / 5:.1f}"
    return spec.labels[int(label)]


def t5_parse_target(task: str, text: str) -> int | float | None:
    """Inverse of t5_target for generated text; None when the text is no valid label."""
    spec = get_glue_task(task)
    text = text.strip()
    if spec.labels is None:
        try:
            return float(text)
        except ValueError:
            return None
    return spec.labels.index(text) if text in spec.labels else None
