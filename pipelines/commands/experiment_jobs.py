"""`experiment --jobs N`: the arms of one GLUE task fine-tuned side by side, each in its own process.

These models are small enough that one thread runs a fine-tuning about as fast as two (the matrices
are too small to split well), so on 2 cores two 1-thread runs finish a task's arms in about half
the time of one 2-thread run after the other. Each job is the stage's own recorded command line
(`python -m pipelines finetune ...`) with OMP_NUM_THREADS = cores // jobs, its output in
<arm>/<task>/finetune.log; a job that fails leaves its stage running (the next run redoes it) and
the others still finish. The children die with this process (PR_SET_PDEATHSIG), so a killed
experiment leaves no fine-tuning writing into a folder the next run starts over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import LmforgeError


@dataclass
class Job:
    stage: str  # e.g. glue/random_init/rte
    command: str  # as recorded in experiment.json
    argv: list[str]  # the command's words after `python -m pipelines`, restart flags included
    recipe: str | None
    log: Path  # the child's stdout and stderr
    result: Path  # the child's summary (eval_results.json), read once it exits 0


def auto_jobs(arms: int) -> int:
    return max(1, min(arms, os.cpu_count() or 1))


def run_jobs(log, jobs: list[Job], workers: int, read_result) -> None:
    """Run `jobs` `workers` at a time; each stage is marked running when its job starts and done when
    it finishes. One error line after every job ended, naming the failed stages and each one's last
    log line."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    lock = threading.Lock()  # experiment.json is written by one thread at a time

    def one(job: Job) -> str | None:
        with lock:
            began = log.begin(job.stage, job.command, job.recipe)
            print(f"experiment: {job.stage} started ({threads} thread(s); log: {job.log})", flush=True)
        code = _run(job, env)
        with lock:
            log.end(job.stage, began, read_result(job.result) if code == 0 else None)
            print(f"experiment: {job.stage} {'done' if code == 0 else f'failed (exit {code})'}", flush=True)
        return None if code == 0 else f"{job.stage} (exit {code}: {_last_line(job.log)})"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        failed = [f for f in pool.map(one, jobs) if f]
    if failed:
        raise LmforgeError(f"experiment: {'; '.join(failed)}; rerun the same command to redo them")


def _run(job: Job, env: dict) -> int:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "w") as out:
        return subprocess.run([sys.executable, "-m", "pipelines", *job.argv], stdout=out, stderr=subprocess.STDOUT,
                              env=env, preexec_fn=_die_with_parent).returncode


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass  # elsewhere a killed experiment's children finish on their own


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"
