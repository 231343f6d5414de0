"""What every comparison of the suite shares: the measured subprocess, its environment, and the one
definition of steady-state throughput.

Steady state, the same for every side: the tokens (samples) of optimizer steps W+1..E divided by the
wall time from the end of step W to the end of step E, with W = --warmup (default 10: allocator,
autocast caches, torch.compile and the first batches are behind) and E = the run's last step.
- the baselines (Trainer, the nanoGPT loop) record time.perf_counter() at the end of every step
  (Trainer: TrainerCallback.on_step_end, after the optimizer step) and count their tokens exactly;
- lmforge is read from its own output_dir/metrics.jsonl: each record (every --log-every steps) holds
  the tokens so far and the tokens/s of the window since the previous record, timed by the engine
  from right after one record to right after the next step's train_step; window time = Δtokens /
  tokens_per_sec, summed over the windows after step W. (The engine restarts its clock after writing
  a record, so lmforge's window leaves out its own log write, a few ms per 10 steps; the Trainer's
  on_step_end comes before its logging, so the Trainer's includes its own. Both are < 0.1 % here.)
Whole-process wall time is measured here around the subprocess: interpreter start, imports, data
preparation, model build, compilation, training, the final evaluation and the export or save.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (GLUE TSVs, WikiText-2, tiny Shakespeare); LMFORGE_SHARED_DATA elsewhere
SHARED_DATA = Path(os.environ.get("LMFORGE_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_DATA = REPO.parent / "shared" / "data"
RESULT = "BENCH_RESULT "


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def child_env(threads: int, scratch: Path) -> dict:
    """The one environment of every measured process. Caches that would carry work from one run to
    the next (lmforge's prepared shards, datasets' map cache, inductor's compiled kernels) point into
    the run's own fresh scratch folder: every run, lmforge or baseline, starts cold."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", PYTHONUNBUFFERED="1",
               LMFORGE_PREPARED=str(scratch / "prepared"), HF_DATASETS_CACHE=str(scratch / "hf-datasets"),
               TORCHINDUCTOR_CACHE_DIR=str(scratch / "inductor"))
    return env


def child_command(kind: str, spec: dict) -> list[str]:
    """A baseline run: `python -m bench --child KIND SPEC` (bench/__main__.py)."""
    return [sys.executable, "-m", "bench", "--child", kind, json.dumps(spec)]


def lmforge_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines", *args]


def run_child(cmd: list[str], env: dict, log_path: Path, timeout: float) -> dict:
    """Run `cmd` in a fresh process (output to log_path): exit code, wall seconds, its peak RSS
    (os.wait4: this child alone) and the child's BENCH_RESULT line when it printed one."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        killer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C reaches only this process: the child has its own session
            _kill_group(proc.pid)
            raise
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
    rc = proc.returncode = os.waitstatus_to_exitcode(status)
    text = log_path.read_text(errors="replace")
    result = next((json.loads(ln[len(RESULT):]) for ln in reversed(text.splitlines()) if ln.startswith(RESULT)), {})
    out = {"rc": rc, "wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024), "log": str(log_path),
           **result}
    if rc != 0:
        tail = " | ".join(text.strip().splitlines()[-3:])[-500:]
        out["error"] = f"exit {rc}" + (f" (timeout {timeout:.0f} s)" if wall >= timeout else "") + f": {tail}"
    return out


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def child_result(result: dict) -> None:
    """What a baseline child prints last: one line the parent parses (run_child), with the intra-op
    thread count it actually ran with (the parent checks it against --threads)."""
    import torch

    print(RESULT + json.dumps({**result, "threads": torch.get_num_threads()}), flush=True)


# --- steady-state throughput -------------------------------------------------------------------


def steady_from_step_ends(step_ends: list[float], warmup: int, tokens: list[int] | None = None,
                          samples: list[int] | None = None) -> dict | None:
    """Baselines: step_ends[i] is the end time of step i + 1; tokens[i] / samples[i] what it trained on."""
    if not 1 <= warmup < len(step_ends):
        return None
    window = {"from_step": warmup + 1, "to_step": len(step_ends), "seconds": step_ends[-1] - step_ends[warmup - 1]}
    if tokens is not None:
        window["tokens"] = int(sum(tokens[warmup:]))
    if samples is not None:
        window["samples"] = int(sum(samples[warmup:]))
    return _rates(window)


def trainer_batch_sizes(n_examples: int, batch: int, steps: int) -> list[int]:
    """Examples in each of the Trainer's first `steps` batches: epochs of ceil(n / batch) batches,
    the last one short (dataloader_drop_last=False, its default)."""
    per_epoch = -(-n_examples // batch)
    return [n_examples - (per_epoch - 1) * batch if i % per_epoch == per_epoch - 1 else batch for i in range(steps)]


def steady_from_metrics(records: list[dict], warmup: int, batch: int | None = None) -> dict | None:
    """lmforge's metrics.jsonl training records (step, tokens, tokens_per_sec); windows after step
    `warmup` (which must be a logged step). `batch`: samples per step (always full batches)."""
    train = [r for r in records if "tokens_per_sec" in r and "tokens" in r]
    steps = [r["step"] for r in train]
    if warmup not in steps or steps[-1] <= warmup:
        return None
    tokens = seconds = 0.0
    previous = train[steps.index(warmup)]
    for r in train[steps.index(warmup) + 1:]:
        delta = r["tokens"] - previous["tokens"]
        tokens, seconds = tokens + delta, seconds + delta / r["tokens_per_sec"]
        previous = r
    window = {"from_step": warmup + 1, "to_step": steps[-1], "tokens": int(tokens), "seconds": seconds}
    if batch:
        window["samples"] = (steps[-1] - warmup) * batch
    return _rates(window)


def _rates(window: dict) -> dict:
    s = window["seconds"]
    for unit in ("tokens", "samples"):
        if unit in window:
            window[f"{unit}_per_s"] = window[unit] / s if s > 0 else None
    window["seconds"] = round(s, 3)
    return window


def read_metrics(path: Path) -> list[dict]:
    from pipelines.runs.results import read_records

    return read_records(path)


def losses_at(records: list[dict], key: str = "loss") -> dict[int, float]:
    """Training loss at each logged step (training records only, not the evaluations)."""
    return {r["step"]: r[key] for r in records if "tokens_per_sec" in r and key in r}
