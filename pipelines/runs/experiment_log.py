"""experiment.json: what `experiment` did, stage by stage, and what lets the same command continue.

One file in the experiment's folder, rewritten atomically at every stage boundary: the settings the
experiment was started with (a rerun with other settings is refused: it would mix two experiments in
one table), per stage its command line, recipe, status (running | done), attempts, wall time and
result, and the experiment's own wall time (wall_time_s; stages run side by side count once). A stage
marked done is never run again; one left running (an interruption, SIGKILL included) is continued by
the next run of the same command (the stage decides how: a checkpoint, or anew).
A SIGKILLed attempt's wall time is lost up to its last stage boundary: nothing runs to record it.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from pipelines.atomic import atomic_write_json
from pipelines.errors import LmforgeError

EXPERIMENT_FILE = "experiment.json"
FORMAT = 1


class ExperimentLog:
    def __init__(self, root: Path, settings: dict):
        self.root, self.path = root, root / EXPERIMENT_FILE
        self._clock = time.monotonic()  # this command's share of the experiment's wall time
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise LmforgeError(f"{self.path}: not readable as JSON ({exc}); move it away to start anew") from None
            self._check_settings(settings)
        else:
            self.data = {"format": FORMAT, "settings": settings, "started_at": _now(), "stages": {}}

    def _check_settings(self, settings: dict) -> None:
        stored = self.data.get("settings", {})
        for key in sorted(set(stored) | set(settings)):
            if stored.get(key) != settings.get(key):
                raise LmforgeError(f"{self.path}: this experiment was started with {key}={stored.get(key)!r}, this "
                                   f"command says {settings.get(key)!r}; run it with the same settings to "
                                   "continue, or pass another --output_dir for a new experiment")

    @property
    def stages(self) -> dict:
        return self.data["stages"]

    def done(self, name: str) -> bool:
        return self.stages.get(name, {}).get("status") == "done"

    def interrupted(self, name: str) -> bool:
        return self.stages.get(name, {}).get("status") == "running"

    def result(self, name: str) -> dict:
        return self.stages[name]["result"]

    @contextmanager
    def stage(self, name: str, command: str, recipe: str | None):
        """Mark `name` running (saved), time it, and mark it done with the result the body puts in the
        yielded dict. An exception leaves it running (the next run continues it) with its time counted."""
        began = self.begin(name, command, recipe)
        result: dict = {}
        try:
            yield result
        except BaseException:
            self.end(name, began, None)
            raise
        self.end(name, began, result)

    def begin(self, name: str, command: str, recipe: str | None) -> float:
        """Mark `name` running (saved); returns its start time for end(). Stages may overlap
        (experiment --jobs): each keeps its own wall time, the experiment's is its own clock."""
        entry = self.stages.setdefault(name, {"status": "running", "attempts": 0, "wall_time_s": 0.0})
        entry.update(status="running", command=command, recipe=recipe, attempts=entry["attempts"] + 1,
                     started_at=_now())
        self.save()
        return time.monotonic()

    def end(self, name: str, began: float, result: dict | None) -> None:
        """Count the stage's time; with a result it is done, without one (a failure) it stays running."""
        entry = self.stages[name]
        entry["wall_time_s"] += time.monotonic() - began
        if result is not None:
            entry.update(status="done", result=result, finished_at=_now())
        self.save()

    def save(self) -> None:
        self.data["updated_at"] = _now()
        # wall time of the commands that ran it (overlapping stages counted once); earlier runs' share
        # was saved at their last save (a SIGKILL loses what followed it)
        now = time.monotonic()
        self.data["wall_time_s"] = self.data.get("wall_time_s", 0.0) + now - self._clock
        self._clock = now
        atomic_write_json(self.path, self.data)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
