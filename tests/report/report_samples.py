"""Sample results for the report, notebook, W&B and Hub-card tests, built once per test session:
a real tiny pretraining run (4 steps, logged to an offline W&B run), a real GLUE fine-tuning with two
seeds, and a nine-task GLUE summary written the way `finetune` writes one (no nine-task fine-tuning
is cheap enough for a test)."""

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

from conftest import TINY_BERT, reset_accelerate, synthetic_glue, tiny_bert_checkpoint

# dev metrics of the nine-task model: (per-task metrics, expected task score)
NINE_TASKS = {
    "cola": ({"matthews_correlation": 0.50}, 50.0),
    "sst2": ({"accuracy": 0.90}, 90.0),
    "mrpc": ({"f1": 0.90, "accuracy": 0.80}, 85.0),
    "stsb": ({"pearson": 0.80, "spearmanr": 0.90}, 85.0),
    "qqp": ({"accuracy": 0.90, "f1": 0.70}, 80.0),
    "mnli": ({"accuracy": 0.80, "mismatched/accuracy": 0.70}, 75.0),
    "qnli": ({"accuracy": 0.90}, 90.0),
    "rte": ({"accuracy": 0.60}, 60.0),
    "wnli": ({"accuracy": 0.50}, 50.0),
}
RTE_SEEDS = {1: {"accuracy": 0.55}, 2: {"accuracy": 0.60}, 3: {"accuracy": 0.70}}  # median 0.60
NINE_TASK_AVERAGE = sum(score for _, score in NINE_TASKS.values()) / 9
# the report's PNGs for the sample runs, in page order: GLUE's, then the curves of each run kind
SAMPLE_PLOTS = ["glue.png", "seeds.png", "pretrain-training.png", "pretrain-eval.png", "pretrain-throughput.png",
                "finetune-training.png", "finetune-eval.png", "finetune-throughput.png"]


@functools.cache
def sample_runs() -> Path:
    """The runs folder (and, beside it, the inputs): runs/bert-tiny, runs/finetune/tiny-sst2,
    runs/finetune/paper-like. Tests read it and never write into it."""
    base = Path(tempfile.mkdtemp(prefix="lmforge-report-samples-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    runs = base / "runs"
    _pretrain(runs / "bert-tiny")
    _finetune(base, runs / "finetune" / "tiny-sst2")
    _nine_tasks(runs / "finetune" / "paper-like")
    return runs


def _pretrain(out: Path) -> None:
    from pipelines.config import load_recipe
    from pipelines.engine.loop import train
    from tasks.base import get_task

    reset_accelerate()
    recipe = load_recipe("bert-tiny", TINY_BERT + [f"training.output_dir={out}", "training.max_steps=4",
                                                   "training.eval_steps=2", "training.report_to=wandb"])
    train(get_task(recipe.task)(recipe), recipe)


def _finetune(base: Path, out: Path) -> None:
    from pipelines.commands.finetune import run_finetune

    reset_accelerate()
    checkpoint = tiny_bert_checkpoint(base / "inputs" / "tiny-bert")
    glue = synthetic_glue(base / "inputs" / "glue")
    run_finetune("glue/sst2", str(checkpoint), glue_dir=str(glue), output_dir=str(out), seeds=2,
                 overrides=["training.max_steps=3", "training.per_device_train_batch_size=16",
                            "objective.max_eval_examples=32", "training.logging_steps=1"])


def _nine_tasks(root: Path) -> None:
    """glue_results.json and <task>/eval_results.json as pipelines/commands/finetune.py writes them."""
    from pipelines.atomic import atomic_write_json
    from tasks.finetuning.seeds import seed_summary

    summary = {task: dict(metrics) for task, (metrics, _) in NINE_TASKS.items()}
    summary["rte"] = json.loads(json.dumps(seed_summary(RTE_SEEDS)))  # seeds as JSON keys, as on disk
    for task, entry in summary.items():
        atomic_write_json(root / task / "eval_results.json", {"task": task, "model": "paper/bert-like", **entry})
    atomic_write_json(root / "glue_results.json", summary)
