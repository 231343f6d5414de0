"""GLUE test-set predictions in the GLUE server's submission format (gluebenchmark.com).

Test files have no labels and their own columns (SST-2 `index, sentence`; MRPC `index, #1 ID, #2 ID,
#1 String, #2 String`; ...), read here by position like the train/dev files in glue_data.py. Each
becomes `<submission dir>/<Name>.tsv` with the header `index\tprediction` and one row per test row:
label names where the server expects names (MNLI, AX, QNLI, RTE), 0/1 otherwise, STS-B scores
clipped to [0, 5] with 3 decimals. MNLI's model also predicts AX (diagnostic/diagnostic.tsv).
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipelines.errors import LmforgeError, one_line

# task -> [(test file under GLUE_DIR, submission name, number of columns, text columns)]
TEST_FILES: dict[str, list[tuple[str, str, int, tuple[int, ...]]]] = {
    "cola": [("CoLA/test.tsv", "CoLA", 2, (1,))],
    "sst2": [("SST-2/test.tsv", "SST-2", 2, (1,))],
    "mrpc": [("MRPC/test.tsv", "MRPC", 5, (3, 4))],
    "stsb": [("STS-B/test.tsv", "STS-B", 9, (7, 8))],
    "qqp": [("QQP/test.tsv", "QQP", 3, (1, 2))],
    "mnli": [("MNLI/test_matched.tsv", "MNLI-m", 10, (8, 9)), ("MNLI/test_mismatched.tsv", "MNLI-mm", 10, (8, 9)),
             ("diagnostic/diagnostic.tsv", "AX", 3, (1, 2))],
    "qnli": [("QNLI/test.tsv", "QNLI", 3, (1, 2))],
    "rte": [("RTE/test.tsv", "RTE", 3, (1, 2))],
    "wnli": [("WNLI/test.tsv", "WNLI", 3, (1, 2))],
}
NAMED_LABELS = ("mnli", "qnli", "rte")  # the server reads label names for these (AX comes from mnli)


def test_files_present(glue_dir, task: str) -> list[tuple[Path, str, int, tuple[int, ...]]]:
    return [(Path(glue_dir) / rel, name, n, cols) for rel, name, n, cols in TEST_FILES.get(task, [])
            if (Path(glue_dir) / rel).is_file()]


def read_test_tsv(path: Path, n_cols: int, text_cols: tuple[int, ...]) -> tuple[list[str], list[list[str]]]:
    """(index column, [text column, ...]) of a GLUE test file; a header line is expected."""
    index, texts = [], [[] for _ in text_cols]
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)  # raw text, as in glue_data.py
        for i, fields in enumerate(reader):
            if not fields or i == 0:
                continue  # blank lines, the header
            if len(fields) != n_cols:
                raise LmforgeError(f"{path}:{reader.line_num}: expected {n_cols} tab-separated fields (GLUE test "
                                   f"layout), found {len(fields)}")
            index.append(fields[0])
            for col, out in zip(text_cols, texts):
                out.append(fields[col])
    if not index:
        raise LmforgeError(f"{path}: no test rows")
    return index, texts


def format_prediction(task: str, value) -> str:
    from pipelines.data.glue import get_glue_task

    spec = get_glue_task(task)
    if spec.is_regression:
        return f"{min(max(float(value), 0.0), 5.0):.3f}"
    return spec.labels[int(value)] if task in NAMED_LABELS else str(int(value))


def predict(model, tokenizer, texts: list[list[str]], max_length: int, batch_size: int = 64) -> list:
    """Class ids (argmax) or regression scores of a sequence-classification model."""
    import torch

    if tokenizer.pad_token is None:  # GPT-2: as in training
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    out = []
    for start in range(0, len(texts[0]), batch_size):
        cols = [t[start:start + batch_size] for t in texts]
        batch = tokenizer(*cols, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        batch = {k: v.to(model.device) for k, v in batch.items()
                 if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            logits = model(**batch).logits.float()
        out += (logits.squeeze(-1) if model.config.num_labels == 1 else logits.argmax(-1)).tolist()
    return out


def write_submission(export: str | Path, task: str, glue_dir, out_dir: str | Path, max_length: int = 128) -> list[Path]:
    """Predict every test file of `task` found under `glue_dir` with the export; write the submission files."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipelines.atomic import atomic_write_text
    from pipelines.data.glue import get_glue_task

    found = test_files_present(glue_dir, task)
    if not found:
        return []
    try:
        model = AutoModelForSequenceClassification.from_pretrained(export)
        tokenizer = AutoTokenizer.from_pretrained(export)
    except (OSError, ValueError) as exc:
        raise LmforgeError(f"{export}: cannot load for sequence classification: "
                           f"{one_line(exc)}") from None
    if model.config.num_labels != get_glue_task(task).num_labels:
        raise LmforgeError(f"{export}: {model.config.num_labels} labels, GLUE '{task}' has "
                           f"{get_glue_task(task).num_labels}: not a model fine-tuned on {task}")
    limits = [getattr(model.config, k, None) for k in ("max_position_embeddings", "n_positions")]
    limits = [x for x in limits + [tokenizer.model_max_length, max_length] if x]
    written = []
    for path, name, n_cols, cols in found:
        index, texts = read_test_tsv(path, n_cols, cols)
        preds = predict(model, tokenizer, texts, min(limits))
        rows = ["index\tprediction"] + [f"{i}\t{format_prediction(task, p)}" for i, p in zip(index, preds)]
        target = Path(out_dir) / f"{name}.tsv"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, "\n".join(rows) + "\n")
        written.append(target)
    return written
