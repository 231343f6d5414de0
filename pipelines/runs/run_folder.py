"""One output folder, one run: `run.json` says which experiment a folder holds, `.lock` who writes it.

engine.setup() (and `prepare`) claim training.output_dir before the tokenizer is trained or loaded:
task.load_tokenizer() reuses output_dir/tokenizer, `resume_from_checkpoint=latest` takes the newest
checkpoint there and metrics.jsonl is appended to, so a folder of another experiment would hand
over its tokenizer and checkpoints and mix both runs' metrics without a word.

A folder is refused when it holds another experiment (the first differing recipe fields are
named), or the finished or interrupted run of this one without a resume, unless
training.overwrite_output_dir=true, which removes what lmforge wrote there (OWNED_*) and nothing
else. Files lmforge did not write are never deleted.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

from pipelines.atomic import atomic_write_json
from pipelines.config import Recipe, recipe_to_dict
from pipelines.errors import LmforgeError

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
# what lmforge writes into an output folder: all that overwrite_output_dir removes
OWNED_FILES = ("run.json", "recipe.json", "metrics.jsonl", "results.json", "eval_results.json", "lmforge.log")
OWNED_DIRS = ("tokenizer", "checkpoints", "final")  # plus final-<name> (ELECTRA's final-generator)

# Recipe fields that do not change what is trained, so a folder may be continued with other values:
# labels, where it is written, how long (a run may be extended), what is logged / evaluated / saved /
# tracked, what to do on a non-finite step (a resume may switch to skipping), and speed-only settings
# (batches are a pure function of the step). Every other field (task, objective, model, tokenizer,
# data, optimizer, schedule, batch, seed, precision) is identity.
NOT_IDENTITY = frozenset({
    "name", "base", "description",
    "training.output_dir", "training.overwrite_output_dir", "training.resume_from_checkpoint",
    "training.max_steps", "training.num_train_epochs", "training.time_budget",
    "training.logging_steps", "training.eval_steps", "training.max_eval_batches",
    "training.per_device_eval_batch_size", "training.save_steps", "training.save_total_limit",
    "training.report_to", "training.run_name", "training.project", "training.push_to_hub",
    "training.hub_model_id", "training.dataloader_num_workers", "training.dataloader_prefetch_factor",
    "data.num_proc", "tokenizer.reuse",
    "training.torch_compile", "training.padding_free", "training.allow_fp16", "training.nonfinite",
    "training.max_skipped_steps",
    "data.prepared_dir",
})
TOKENIZER_PREFIXES = ("tokenizer.", "data.", "model.family", "model.name_or_path", "training.seed")
_UNSET = "<unset>"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def run_identity(recipe_dict: dict) -> dict:
    """The recipe's identity fields, dotted (`tokenizer.vocab_size`), JSON-normalised."""
    flat = _flatten(json.loads(json.dumps(recipe_dict)))
    return {k: v for k, v in flat.items() if k not in NOT_IDENTITY}


def identity_hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def differences(stored: dict, current: dict) -> list[tuple[str, object, object]]:
    """(field, stored value, current value) in recipe order. A field the stored run lacks counts as
    its schema default (a field added to lmforge later does not orphan older folders)."""
    defaults = run_identity(recipe_to_dict(Recipe()))
    diffs = []
    for key, value in current.items():
        old = stored[key] if key in stored else defaults.get(key, _UNSET)
        if old != value:
            diffs.append((key, old, value))
    diffs += [(k, v, _UNSET) for k, v in stored.items() if k not in current and k not in defaults]
    return diffs


def _show(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def stored_run(out: Path) -> tuple[str, dict, bool] | None:
    """(recipe name, identity, written by `prepare` alone) of the run in `out`: run.json, else the
    recipe.json that folders of earlier lmforge versions hold; None when neither is there."""
    for name in (RUN_FILE, "recipe.json"):
        path = out / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
            if name == RUN_FILE:
                return data.get("recipe", "?"), dict(data["identity"]), bool(data.get("prepared_only"))
            return data.get("name", "?"), run_identity(data), False
        except (ValueError, KeyError, TypeError, AttributeError):
            raise LmforgeError(f"{path} is unreadable, so the run in {out} is unknown: choose another "
                               "training.output_dir, or set training.overwrite_output_dir=true") from None
    return None


def tokenizer_fields(identity: dict) -> dict:
    """The fields that decide what `prepare` leaves in the folder: the tokenizer, trained on a seeded
    sample of the corpus for the model family."""
    return {k: v for k, v in identity.items() if k.startswith(TOKENIZER_PREFIXES)}


def run_outputs(out: Path) -> list[str]:
    """What a started run leaves (tokenizer/ alone is not: reusing this recipe's tokenizer is intended)."""
    found = [n for n in ("metrics.jsonl", "results.json", "eval_results.json") if (out / n).exists()]
    ckpts = out / "checkpoints"
    if ckpts.is_dir() and any(p.name.startswith("step-") for p in ckpts.iterdir()):
        found.append("checkpoints/")
    return found + [f"{p.name}/" for p in _exports(out)]


def _exports(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and (p.name == "final" or p.name.startswith("final-")))


def owned_entries(out: Path) -> list[Path]:
    """Everything lmforge wrote in `out` (and the hidden temp siblings of those names)."""
    names = set(OWNED_FILES) | set(OWNED_DIRS) | {p.name for p in _exports(out)}
    temps = [p for p in out.iterdir() if p.name.startswith(".") and ".tmp" in p.name
             and _is_owned_name(p.name[1:].split(".tmp")[0], names)]
    return sorted([out / n for n in names if (out / n).exists()] + temps)


def _is_owned_name(name: str, names: set[str]) -> bool:
    return name in names or name.startswith("final-")


def clear_output_dir(out: Path) -> list[str]:
    """Remove what lmforge wrote in `out`; other files stay. Returns the names removed."""
    removed = []
    for path in owned_entries(out):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(path.name + "/")
        else:
            path.unlink()
            removed.append(path.name)
    return removed


_HELD: dict[str, int] = {}  # folders this process holds the lock of (file descriptors, kept open)


def lock_output_dir(out: Path) -> None:
    """Exclusive, non-blocking flock on out/.lock, held until the process ends; a second run into
    the folder fails at once. Filesystems without locks (and systems without fcntl) run unlocked."""
    key = str(out.resolve())
    if key in _HELD:
        return
    try:
        import fcntl
    except ImportError:
        return
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        pid = f" (pid {holder})" if holder.isdigit() else ""
        raise LmforgeError(f"{out} is in use by another lmforge run{pid}: wait for it to end, or choose "
                           "another training.output_dir") from None
    except OSError as exc:
        os.close(fd)
        warnings.warn(f"{path}: cannot lock ({exc}); two runs into this folder would not be stopped", stacklevel=2)
        return
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    if not _HELD:
        atexit.register(_forget_pids)
    _HELD[key] = fd


def _forget_pids() -> None:
    """At exit: empty the .lock files this process held, so a finished run leaves no process id that
    looks like a live writer (the file stays: deleting a lock file races with a run opening it)."""
    for fd in _HELD.values():
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass


def _inside(path: str, out: Path) -> bool:
    p = Path(path).resolve()
    return p == out.resolve() or out.resolve() in p.parents


def check_output_dir(out: Path, recipe: Recipe, identity: dict, training: bool = True) -> None:
    """Refuse a folder that holds another experiment, or (for training) a started run of this one
    that is not being resumed. Where `prepare` is involved only the tokenizer fields must agree."""
    t = recipe.training
    fix = "choose another training.output_dir, or set training.overwrite_output_dir=true"
    stored = stored_run(out)
    if stored is not None:
        name, old, prepared_only = stored
        if prepared_only or not training:
            old, identity = tokenizer_fields(old), tokenizer_fields(identity)
        diffs = differences(old, identity)
        if diffs:
            shown = diffs[:3]
            more = f" (and {len(diffs) - 3} more fields)" if len(diffs) > 3 else ""
            raise LmforgeError(
                f"{out} holds a run of recipe {name} with {', '.join(f'{k}={_show(a)}' for k, a, _ in shown)}"
                f"{more}; this recipe has {', '.join(_show(b) for _, _, b in shown)}: {fix}")
    outputs = run_outputs(out)
    if stored is None and not t.resume_from_checkpoint:
        leftovers = outputs + (["tokenizer/"] if (out / "tokenizer").exists() else [])
        if leftovers:
            raise LmforgeError(f"{out} holds {', '.join(leftovers)} of an lmforge run but no {RUN_FILE} saying "
                               f"which recipe: {fix}")
    if training and outputs and not t.resume_from_checkpoint:
        raise LmforgeError(f"{out} already holds a run of recipe {stored[0]} ({', '.join(outputs)}): continue it "
                           f"with training.resume_from_checkpoint=latest, {fix}")


def claim_output_dir(recipe: Recipe, training: bool = True) -> Path:
    """Lock training.output_dir, check (or with overwrite_output_dir, clear) it, and record this run's
    identity in run.json. Called by the main process only, before anything is written there.
    `training=False` (the `prepare` command) records only that the folder's tokenizer is this recipe's."""
    t = recipe.training
    out = Path(t.output_dir)
    if t.overwrite_output_dir and t.resume_from_checkpoint and (
            t.resume_from_checkpoint == "latest" or _inside(t.resume_from_checkpoint, out)):
        raise LmforgeError(f"training.overwrite_output_dir=true would delete the checkpoint that "
                           f"training.resume_from_checkpoint={t.resume_from_checkpoint} resumes from: set one of them")
    if out.exists() and not out.is_dir():
        raise LmforgeError(f"training.output_dir {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    lock_output_dir(out)
    identity = run_identity(recipe_to_dict(recipe))
    if t.overwrite_output_dir:
        removed = clear_output_dir(out)
        if removed:
            print(f"training.overwrite_output_dir: removed {', '.join(removed)} from {out}", flush=True)
    else:
        check_output_dir(out, recipe, identity, training)
    if training or not (out / RUN_FILE).exists():
        atomic_write_json(out / RUN_FILE, {"recipe": recipe.name, "identity_hash": identity_hash(identity),
                                           "prepared_only": not training, "identity": identity})
    return out


def default_output_root(model: str, overrides=()) -> Path:
    """Where `finetune` writes by default: runs/finetune/<label>, where a local folder is labelled by its
    parent, its own name and a short hash of its absolute path (runs/bert-tiny/final ->
    runs/finetune/bert-tiny-final-<hash>), so two models in folders of the same name (every export is
    called `final`) never share an output folder; a Hub name is labelled org--name. The command
    line's recipe overrides name a folder of their own (<label>@learning_rate-3e-5), so a second try
    with other settings is a new run beside the first, not a clash with it. `push` looks in the
    plain folder for an export's GLUE results."""
    folder = Path(model)
    if folder.is_dir():
        absolute = folder.resolve()
        digest = hashlib.sha256(str(absolute).encode()).hexdigest()[:8]
        label = "-".join(part for part in (absolute.parent.name, absolute.name) if part)
        root = Path("runs") / "finetune" / f"{label}-{digest}"
    else:
        root = Path("runs") / "finetune" / model.replace("/", "--")
    return root.with_name(f"{root.name}@{settings_label(overrides)}") if overrides else root


def settings_label(overrides) -> str:
    """A folder-name label of key=value overrides: readable when short (learning_rate-3e-5_seed-7),
    else a hash of them; the same settings in any order give the same label."""
    pairs = sorted(o.partition("=")[::2] for o in overrides)
    text = "_".join(f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in pairs)
    safe = "".join(c if c.isalnum() or c in "-_.+" else "-" for c in text)
    if len(safe) <= 48:
        return safe
    return "settings-" + hashlib.sha256("\n".join(map("=".join, pairs)).encode()).hexdigest()[:10]
