"""What every gpu_check section is handed: the plan, the folders, the worker, the results so far and
the section's time box."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.gpu_check.plan import Plan
from bench.gpu_check.runner import Worker

# a reloaded export against the trained model's outputs, relative to the largest output: fp32 on a CPU
# is the same arithmetic (equal to rounding); bf16 on a GPU allows a few bf16 steps (2^-8 each)
RELOAD_TOLERANCE = {"no": 1e-5, "bf16": 3e-2}
# a resumed run's losses against the uninterrupted run's, relative: fp32 on a CPU is bit-exact
# (tests/engine/test_preemption.py); a GPU adds atomics in some backward kernels
RESUME_TOLERANCE = {"no": 1e-6, "bf16": 5e-3}


@dataclass
class Context:
    plan: Plan
    out: Path  # --out: gpu_check.json, gpu_check.md, logs/
    env: dict
    worker: Worker
    results: dict = field(default_factory=dict)  # section -> its result, as far as the run got
    deadline: float = math.inf  # time.monotonic() at which the running section's box closes
    _device: dict | None = None

    @property
    def work(self) -> Path:
        """Run folders, probes, generated data: kept for a look after the run."""
        return self.out / "work"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def device(self) -> dict:
        """{'cuda': bool, 'name': ...} from the worker (the parent never touches the GPU)."""
        if self._device is None:
            out = self.worker.run("device", {}, timeout=max(self.left(), 120.0))
            if "error" in out:
                raise RuntimeError(f"cannot ask the worker which device this is: {out['error']}")
            self._device = out
        return self._device

    def peak_flops(self) -> float | None:
        peak = self.results.get("peak", {})
        return peak.get("flops") if peak.get("status") == "ok" else None


def read_records(path: Path) -> list[dict]:
    """metrics.jsonl's training records (the ones with a loss and tokens/s), torn lines skipped."""
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict) and "tokens_per_sec" in r:
                records.append(r)
    return records


def failed(error: str, **extra) -> dict:
    return {"status": "failed", "error": error, **extra}


def skipped(reason: str, **extra) -> dict:
    return {"status": "skipped", "reason": reason, **extra}


def of_parts(parts: list[dict], key: str) -> dict:
    """A section made of rows or runs: ok when none failed (skipped ones say why), failed naming the
    failures, skipped when all were skipped."""
    bad = [p for p in parts if p["status"] == "failed"]
    if bad:
        return failed(f"{len(bad)} of {len(parts)} failed: " + "; ".join(f"{p[key]}: {p['error']}" for p in bad)[:600])
    if parts and all(p["status"] == "skipped" for p in parts):
        return skipped("; ".join(sorted({p["reason"] for p in parts})))
    return {"status": "ok"}
