"""Training checkpoints: accelerate's save_state, published atomically and rotated.

A checkpoint folder under its final name (checkpoints/step-000500) is always complete: it
is written as a hidden temp folder and renamed. `latest` resumes from the newest one.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from pipelines.atomic import replace_folder, temp_sibling
from pipelines.errors import LmforgeError

_STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "trainer_state.json"


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def resolve_resume(spec: str | None, output_dir: str | Path) -> Path | None:
    """None, 'latest' (newest complete checkpoint, or None when there is none yet) or a folder."""
    if not spec:
        return None
    if spec == "latest":
        ckpts = list_checkpoints(output_dir)
        return ckpts[-1] if ckpts else None
    path = Path(spec)
    if not (path / STATE_FILE).exists():
        raise LmforgeError(f"training.resume_from_checkpoint: '{spec}' is not a complete checkpoint "
                           f"(no {STATE_FILE})")
    return path


def save_checkpoint(accelerator, output_dir: str | Path, step: int, state: dict, keep: int) -> Path:
    """save_state into a temp folder, add the trainer state, rename, drop the oldest beyond `keep`.
    Every rank must call this (DeepSpeed saves shards collectively)."""
    root = checkpoint_root(output_dir)
    final = root / f"step-{step:06d}"
    tmp = temp_sibling(final, tag="")  # one name for every rank: .step-000500.tmp
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))  # inside the temp folder: published with it
        replace_folder(tmp, final)
        for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> dict:
    accelerator.load_state(str(path))
    return json.loads((path / STATE_FILE).read_text())
