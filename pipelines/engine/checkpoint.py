"""Training checkpoints: accelerate's save_state, published atomically, verified, rotated.

A checkpoint folder under its final name (checkpoints/step-000500) was complete when written: it
is written as a hidden temp folder, synced and renamed. `latest` resumes from the newest one that
is still complete (a copy cut short, a file system that lost data), warning about each it skips.

What a folder holds, and how each file is read back:
  model.safetensors            safetensors (no code can hide in it)
  optimizer.bin                torch.save; accelerate loads it with weights_only=True
  random_states_<rank>.pkl     torch.save; checked here with weights_only=True first: accelerate
                               would skip a missing or unreadable one silently, and the resumed
                               run would not continue the interrupted one
  custom_state_<i>.json        the stateful objects the engine passes (the scheduler), as JSON;
                               not registered with accelerate, which would pickle them as
                               custom_checkpoint_<i>.pkl and unpickle them with weights_only=False,
                               which runs any code a checkpoint someone gave you contains: such a
                               file is refused.
  trainer_state.json           step, tokens, the schedule's settings, and `files`: the name and
                               size of every file above, checked before a resume.
DeepSpeed and FSDP write their own files (model/optimizer shards), listed and size-checked too;
DeepSpeed loads its files with its own torch.load, so resume only from DeepSpeed checkpoints you trust.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
from pathlib import Path

from pipelines.atomic import replace_folder, temp_sibling
from pipelines.errors import LmforgeError, one_line, warn

_STEP_DIR = re.compile(r"^step-(\d+)$")
_PICKLED_CUSTOM = re.compile(r"^custom_checkpoint_\d+\.pkl$")
STATE_FILE = "trainer_state.json"
CUSTOM_STATE = "custom_state_{}.json"
RNG_FILE = "random_states_{}.pkl"  # accelerate's name (RNG_STATE_NAME)
RESUME_HINT = "training.resume_from_checkpoint=latest"


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def incomplete(path: Path) -> str | None:
    """Why the checkpoint folder `path` is not whole (a missing or truncated file), or None."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except FileNotFoundError:
        return f"it has no {STATE_FILE}"
    except (ValueError, OSError):
        return f"{STATE_FILE} is not readable JSON (truncated?)"
    if not isinstance(state, dict) or not isinstance(state.get("files", {}), dict):
        return f"{STATE_FILE} is not a trainer state"
    for name, size in state.get("files", {}).items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if (actual := f.stat().st_size) != size:
            return f"{name} is {actual} bytes, {size} were written (truncated?)"
    return None


def resolve_resume(spec: str | None, output_dir: str | Path) -> Path | None:
    """None, 'latest' (the newest complete checkpoint, or None when there is none yet) or a folder
    (refused when incomplete)."""
    if not spec:
        return None
    if spec == "latest":
        ckpts = list_checkpoints(output_dir)
        for path in reversed(ckpts):
            why = incomplete(path)
            if why is None:
                return path
            warn(f"checkpoint {path} is incomplete ({why}); trying the one before it")
        if ckpts:
            raise LmforgeError(f"training.resume_from_checkpoint=latest: no complete checkpoint in "
                               f"{checkpoint_root(output_dir)} (all {len(ckpts)} are incomplete)")
        return None
    path = Path(spec)
    if not path.is_dir():
        raise LmforgeError(f"training.resume_from_checkpoint: '{spec}' is not a checkpoint folder")
    why = incomplete(path)
    if why is not None:
        raise LmforgeError(f"training.resume_from_checkpoint: {spec} is not a complete checkpoint: {why}")
    return path


def _any_rank(accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    import torch

    return bool(accelerator.gather(torch.tensor([int(flag)], device=accelerator.device)).sum() > 0)


def _write_error_types() -> tuple:
    # torch.save reports a full disk as RuntimeError ("unexpected pos", "file write failed"),
    # safetensors as its own SafetensorError, Python writes as OSError
    from safetensors import SafetensorError

    return OSError, RuntimeError, SafetensorError


def _raise_if_failed(accelerator, exc: BaseException | None, tmp: Path, final: Path, previous: Path | None):
    """Agree across ranks whether the write failed; if so remove the temp folder and say why."""
    if not _any_rank(accelerator, exc is not None):
        return
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    text = one_line(exc) if exc is not None else "another process failed to write it"
    full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    full = full or any(s in text for s in ("No space left", "unexpected pos", "file write failed"))
    reason = f"no space left while writing {final} ({text})" if full else f"cannot write {final}: {text}"
    kept = f"the previous checkpoint {previous} is kept" if previous else "no earlier checkpoint exists"
    raise LmforgeError(f"{reason}; {kept}") from None


def _manifest(folder: Path) -> dict[str, int]:
    """Name -> size of every file under `folder`, each synced to disk first (a rename published
    before the data is on disk can leave empty files after a power loss)."""
    files = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
        files[f.relative_to(folder).as_posix()] = f.stat().st_size
    return files


def save_checkpoint(accelerator, output_dir: str | Path, step: int, state: dict, keep: int,
                    objects: list = ()) -> Path:
    """save_state into a temp folder, add `objects` (stateful objects such as the LR scheduler, kept
    out of accelerate, which would pickle them) as JSON and the trainer state,
    rename, drop the oldest beyond `keep`. Every rank must call this (DeepSpeed saves shards
    collectively). A failed write (full disk) removes the temp folder, keeps the previous
    checkpoint and raises LmforgeError on every rank."""
    root = checkpoint_root(output_dir)
    final = root / f"step-{step:06d}"
    tmp = temp_sibling(final, tag="")  # one name for every rank: .step-000500.tmp
    previous = (list_checkpoints(output_dir) or [None])[-1]
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    error = None
    try:
        accelerator.save_state(str(tmp))
    except _write_error_types() as exc:
        error = exc
    _raise_if_failed(accelerator, error, tmp, final, previous)  # also the barrier before the manifest
    if accelerator.is_main_process:
        try:
            for i, obj in enumerate(objects):
                (tmp / CUSTOM_STATE.format(i)).write_text(json.dumps(obj.state_dict()))
            state = {**state, "files": _manifest(tmp)}
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))  # inside the temp folder: published with it
        except _write_error_types() as exc:
            error = exc
    _raise_if_failed(accelerator, error, tmp, final, previous)
    if accelerator.is_main_process:
        replace_folder(tmp, final)
        for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _check_rng_state(path: Path, rank: int) -> None:
    """Refuse a checkpoint whose RNG state for this rank is missing or is more than RNG state."""
    from accelerate.utils import load  # torch.load(weights_only=True) with numpy's RNG types allowed

    name = RNG_FILE.format(rank)
    if not (path / name).is_file():
        raise LmforgeError(f"checkpoint {path} has no {name}: without its RNG state the resumed run would not "
                           f"continue the interrupted one (dropout differs); resume from another checkpoint")
    try:
        states = load(path / name)
        ok = isinstance(states, dict) and {"random_state", "numpy_random_seed", "torch_manual_seed"} <= set(states)
    except Exception as exc:  # noqa: BLE001  (any failure of the restricted unpickler means: refused)
        raise LmforgeError(f"checkpoint {path}: {name} cannot be loaded safely ({one_line(exc, 120)}); "
                           "it is not an RNG state lmforge wrote, and it is not unpickled") from None
    if not ok:
        raise LmforgeError(f"checkpoint {path}: {name} does not hold RNG states")


def load_checkpoint(accelerator, path: Path, objects: list = ()) -> dict:
    """Restore model, optimizer, RNG and `objects` (from JSON, see save_checkpoint); return the trainer
    state, plus `checkpoint` (the folder) and `restored_objects` (how many had a JSON state)."""
    pickled = sorted(p.name for p in path.iterdir() if _PICKLED_CUSTOM.match(p.name))
    if pickled:
        raise LmforgeError(f"checkpoint {path}: {pickled[0]} is a pickle, which runs any code it holds when loaded; "
                           "lmforge does not load it (its scheduler state is JSON). If this folder is yours, "
                           "delete the file to resume: the schedule is then recomputed from the recipe")
    _check_rng_state(path, accelerator.process_index)
    try:
        accelerator.load_state(str(path))
    except (pickle.UnpicklingError, *_write_error_types()) as exc:
        raise LmforgeError(f"cannot resume from {path}: {one_line(exc)}") from None
    restored = 0
    for i, obj in enumerate(objects):
        f = path / CUSTOM_STATE.format(i)
        if f.is_file():
            known = set(obj.state_dict())  # LambdaLR.load_state_dict sets any key as an attribute
            obj.load_state_dict({k: v for k, v in json.loads(f.read_text()).items() if k in known})
            restored += 1
    state = json.loads((path / STATE_FILE).read_text())
    return {**state, "checkpoint": str(path), "restored_objects": restored}
