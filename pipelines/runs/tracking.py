"""Experiment tracking through accelerate's trackers, plus a local metrics.jsonl always.

W&B runs offline (WANDB_MODE=offline) unless the user is logged in, so nothing waits on the
network; `wandb sync` uploads the run later.
"""

from __future__ import annotations

import json
import netrc
import os
from pathlib import Path

from pipelines.atomic import atomic_write_text, json_safe
from pipelines.config import REPORTERS
from pipelines.errors import LmforgeError


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _installed(*modules: str) -> bool:
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in modules)


def log_with(report_to: str) -> str | None:
    """The accelerate `log_with` value for training.report_to (and W&B's offline default)."""
    if report_to not in REPORTERS:
        raise LmforgeError(f"training.report_to: '{report_to}' is not one of {', '.join(REPORTERS)}")
    if report_to == "tensorboard" and not _installed("tensorboard", "tensorboardX"):
        # accelerate would only warn and train with no tracking at all
        raise LmforgeError("training.report_to=tensorboard: the tensorboard package is not installed; pip install "
                           "'lmforge[tensorboard]' (or report_to=wandb | none)")
    if report_to == "wandb":
        os.environ.setdefault("WANDB_SILENT", "true")  # ~30 lines of its own per run; the run folder says where
        if not wandb_logged_in():
            os.environ.setdefault("WANDB_MODE", "offline")
    return None if report_to == "none" else report_to


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
