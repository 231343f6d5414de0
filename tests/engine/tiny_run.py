"""Tiny BERT runs for the failure tests (NaN, resume, checkpoints, signals), in-process or as a CLI
subprocess, all with one tokenizer trained once per module (the tokenizer trainers are not
reproducible across processes, and exact-resume comparisons need the same vocabulary)."""

import json
import os
import subprocess
import sys

from conftest import REPO, TINY_BERT, reset_accelerate


def build_tiny_tokenizer(path, family: str = "bert"):
    """A 1,000-token tokenizer of `family` (WordPiece for bert; byte-level BPE for roberta, gpt2)
    trained on the embedded corpus."""
    from pipelines.data.default_corpus import default_corpus_path
    from tokenizer import build_tokenizer

    docs = [ln.strip() for ln in open(default_corpus_path()) if ln.strip()]
    build_tokenizer(family, docs[:3000], 1000, path)
    return path


def overrides(out, tok, *extra) -> list[str]:
    return [*TINY_BERT, f"training.output_dir={out}", f"tokenizer.name_or_path={tok}", *extra]


def train_tiny(out, tok, *extra, patch=None):
    """train() in this process; `patch(task)` may wrap the task's own methods first."""
    from pipelines.config import load_recipe
    from pipelines.engine.loop import train
    from tasks.base import get_task

    reset_accelerate()
    recipe = load_recipe("bert-tiny", overrides(out, tok, *extra))
    task = get_task(recipe.task)(recipe)
    if patch:
        patch(task)
    return train(task, recipe)


def nan_loss(when):
    """A patch for train_tiny: the task's loss turns NaN on the training calls `when(n)` (n from 1)."""
    def patch(task):
        real, calls = task.loss, [0]

        def loss(model, batch):
            terms = real(model, batch)
            if model.training:
                calls[0] += 1
                if when(calls[0]):
                    terms = {k: v * float("nan") for k, v in terms.items()}
            return terms
        task.loss = loss
    return patch


def cli_command(*args) -> list[str]:
    return [sys.executable, "-m", "pipelines", *args]


def cli_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=timeout)


def _no_constants(name):
    raise ValueError(f"bare {name} in a JSON file")


def strict_json_lines(path) -> list[dict]:
    """metrics.jsonl records; NaN / Infinity (not JSON) fail."""
    return [json.loads(line, parse_constant=_no_constants) for line in open(path) if line.strip()]


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("lmforge: error:")]
