"""Experiment tracking through accelerate's trackers, plus a local metrics.jsonl always.

W&B runs offline (WANDB_MODE=offline) unless the user is logged in, so nothing waits on the
network; `wandb sync` uploads the run later.
"""

from __future__ import annotations

import json
import math
import netrc
import os
from pathlib import Path

from pipelines.errors import LmforgeError

REPORTERS = ("none", "wandb", "tensorboard")


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def log_with(report_to: str) -> str | None:
    """The accelerate `log_with` value for training.report_to (and W&B's offline default)."""
    if report_to not in REPORTERS:
        raise LmforgeError(f"training.report_to: '{report_to}' is not one of {', '.join(REPORTERS)}")
    if report_to == "wandb" and not wandb_logged_in():
        os.environ.setdefault("WANDB_MODE", "offline")
    return None if report_to == "none" else report_to


def json_safe(value):
    """`value` with NaN and infinities as None: json.dumps would write bare NaN / Infinity, which
    is not JSON (strict parsers, jq and JavaScript reject the file)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class JsonlLog:
    """Append-only metrics log next to the checkpoints: the record tests and notebooks read."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = Path(path), enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict):
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(json_safe(record)) + "\n")

    def truncate_after(self, step: int):
        """Drop the records of steps after `step` (a resume redoes them; without this they would be
        logged twice) and a torn last line of a killed run; atomically, so a crash keeps the old log."""
        from pipelines.atomic import atomic_write_text

        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or (record.get("step") or 0) <= step:
                kept.append(line)
        atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))
