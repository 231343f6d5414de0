"""Task-adaptive pretraining text (Gururangan et al. 2020, "Don't Stop Pretraining"): the unlabeled
text of the GLUE tasks' TRAINING sets as a pretraining corpus. Dev and test text are never read (a
model pretrained on the dev sentences would be evaluated on text it has seen).

Written in BERT's pretraining layout (pipelines/data/sources.py): one sentence per line, a blank line
between documents; an example is a document (a pair's two sentences stay together, in order).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.atomic import atomic_file
from pipelines.data.glue import get_glue_task, load_glue_local


def write_glue_train_text(glue_dir: str | Path, tasks: list[str], path: Path) -> dict:
    """Write the tasks' training text to `path` (atomically); {task: examples} and the size in bytes."""
    counts = {}
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for task in tasks:
            spec = get_glue_task(task)
            rows = load_glue_local(glue_dir, task, "train")
            columns = [rows[c] for c in spec.text_columns]
            for texts in zip(*columns):
                lines = [" ".join(t.split()) for t in texts if t and t.strip()]
                if lines:
                    out.write("\n".join(lines) + "\n\n")
            counts[task] = len(rows)
    return {"examples": counts, "bytes": path.stat().st_size}
