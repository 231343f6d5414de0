"""Experiment tracking through accelerate's trackers, plus a local metrics.jsonl always.

W&B runs offline (WANDB_MODE=offline) unless the user is logged in, so nothing waits on the
network; `wandb sync` uploads the run later.
"""

from __future__ import annotations

import json
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


class JsonlLog:
    """Append-only metrics log next to the checkpoints: the record tests and notebooks read."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = Path(path), enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict):
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
