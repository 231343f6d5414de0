"""Recipes: YAML files validated against typed dataclasses, with dotted command-line overrides.

OmegaConf does the parsing and merging; its structured configs refuse unknown keys and
wrong types, so a typo in a recipe or an override fails loudly instead of being ignored.
A recipe may name a `base` recipe it extends (bert-base extends nothing, bert-tiny extends
bert-base and shrinks it), so shared settings are written once. A fine-tuning recipe may hold
`per_task:` defaults keyed by GLUE task (glue.yaml): the entry of objective.glue_task applies over
its own file (so a recipe extending it still wins), and the command line wins over both.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipelines.errors import LmforgeError, one_line

RECIPE_DIR = Path(__file__).resolve().parent.parent / "tasks" / "recipes"
OPTIMIZERS = ("adamw", "lamb")  # training.optimizer
REPORTERS = ("none", "wandb", "tensorboard")  # training.report_to


@dataclass
class ModelSection:
    family: str = "bert"  # bert | roberta | albert | electra | gpt2 | t5 | bart
    name_or_path: str | None = None  # start from a checkpoint (local folder or Hub name)
    config: dict[str, Any] = field(default_factory=dict)  # kwargs of the transformers Config class


@dataclass
class TokenizerSection:
    name_or_path: str | None = None  # an existing tokenizer; else one is built from the corpus
    vocab_size: int = 8192
    model_max_length: int = 512
    train_sample_mb: float = 256.0  # tokenizer training reads at most this much text (a seeded sample)
    # reuse the tokenizer trained before on the same corpus with the same settings (a cache beside the
    # prepared shards): the same recipe in a new output folder gets the same vocabulary and shards
    reuse: bool = True


@dataclass
class DataSection:
    corpus: str = "default"  # "default" | local file or folder | Hub dataset name
    corpus_config: str | None = None  # Hub dataset config (e.g. wikitext-103-raw-v1)
    split: str = "train"
    revision: str | None = None  # Hub dataset revision (part of the prepared data's fingerprint)
    text_column: str = "text"
    max_seq_length: int = 128
    validation_fraction: float = 0.02  # documents held out for evaluation
    max_documents: int | None = None  # cap for quick runs
    dupe_factor: int = 1  # passes over the corpus when static pairs are built (BERT NSP: 10)
    prepared_dir: str | None = None  # where token shards are cached (shared storage on a cluster);
    # default: $LMFORGE_PREPARED or ~/.cache/lmforge/prepared
    num_proc: int = -1  # processes tokenizing in `prepare`: -1 = os.cpu_count(), 1 = this process only;
    # the shards are the same bytes either way (not part of the prepared data's cache key)


@dataclass
class TrainingSection:
    output_dir: str = "runs/${name}"  # interpolated from the recipe name
    max_steps: int = 1000  # -1: use num_train_epochs
    # wall-time budget ("90s", "60m", "2h", "1h30m"; cramming's unit): the run ends at the budget or at
    # max_steps, whichever comes first, and the schedule runs over the elapsed fraction
    # (pipelines/engine/time_budget.py)
    time_budget: str | None = None
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-6
    optimizer: str = "adamw"  # adamw | lamb (pipelines/engine/optimizers.py)
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = "linear"  # any transformers.get_scheduler name (linear, cosine, ...)
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps == 0
    mixed_precision: str = "no"  # no | bf16 | fp16
    allow_fp16: bool = False  # tasks that overflow in fp16 (T5) refuse it unless this is set
    torch_compile: bool = False
    dataloader_num_workers: int = -1  # processes collating ahead of the step; 0: in the loop; -1: 2 on GPU, 0 on CPU
    dataloader_prefetch_factor: int = 4  # batches each worker keeps ready
    # batches of similar lengths (less padding; fine-tuning tasks with per-example lengths), as HF's group_by_length
    group_by_length: bool = False
    # GLUE classification with examples packed into fewer rows, each attending only to itself (exact;
    # tasks/finetuning/padding_free.py): auto (where supported and it removes rows) | true | false
    padding_free: str = "auto"
    seed: int = 42
    logging_steps: int = 10
    eval_steps: int = 200  # 0: only at the end
    max_eval_batches: int = 50
    save_steps: int = 500  # 0: no intermediate checkpoints
    save_total_limit: int = 2
    resume_from_checkpoint: str | None = None  # a checkpoint folder or "latest"
    nonfinite: str = "stop"  # a NaN/inf loss or gradient norm: stop (last good checkpoint kept) | skip the step
    max_skipped_steps: int = 10  # nonfinite=skip: stop after more than this many non-finite steps in a row
    overwrite_output_dir: bool = False  # remove what lmforge wrote in output_dir first (never other files)
    report_to: str = "none"  # none | wandb | tensorboard
    run_name: str | None = None
    project: str = "lmforge"
    push_to_hub: bool = False
    hub_model_id: str | None = None


@dataclass
class Recipe:
    name: str = "unnamed"
    base: str | None = None  # a recipe this one extends
    task: str = "bert-mlm-nsp"  # key in the tasks registry
    description: str = ""
    objective: dict[str, Any] = field(default_factory=dict)  # the task's own parameters
    model: ModelSection = field(default_factory=ModelSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)


def recipe_path(name_or_path: str) -> Path:
    """A recipe name (tasks/recipes/<name>.yaml) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise LmforgeError(f"recipe file not found: {path}")
        return path
    path = RECIPE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
        raise LmforgeError(f"unknown recipe '{name_or_path}' (known: {known})")
    return path


def _read_yaml(path: Path, seen: tuple[Path, ...] = (), task: str | None = None, pick: bool = False):
    """The recipe file merged over its bases; with `pick`, each file's per_task entry for `task` is
    merged over that file (base < base's entry < file < file's entry)."""
    if path in seen:
        raise LmforgeError(f"recipe {path}: 'base' chain loops back to itself")
    try:
        raw = OmegaConf.load(path)
    except Exception as exc:  # yaml errors carry line numbers; keep them on one line
        raise LmforgeError(f"recipe {path}: not valid YAML: {one_line(exc, None)}") from None
    if not isinstance(raw, dict) and not OmegaConf.is_dict(raw):
        raise LmforgeError(f"recipe {path}: expected a mapping at the top level")
    per_task = raw.pop("per_task", None)
    if per_task is not None:
        _check_per_task(path, per_task)
    base = raw.get("base")
    if base:
        parent = _read_yaml(recipe_path(base), seen + (path,), task, pick)
        raw = OmegaConf.merge(parent, raw)
    if per_task is not None and pick:
        if task is None:
            raise LmforgeError(f"recipe {path}, per_task: needs {PER_TASK_KEY} to pick an entry")
        if task in per_task:
            raw = OmegaConf.merge(raw, per_task[task])
    return raw


PER_TASK_KEY = "objective.glue_task"  # the value that picks a recipe's per_task entry


def _check_per_task(path: Path, per_task) -> None:
    """Known GLUE task names, each a mapping of recipe fields with valid names and types."""
    from pipelines.data.glue import GLUE_TASKS

    if not OmegaConf.is_dict(per_task):
        raise LmforgeError(f"recipe {path}, per_task: expected a mapping from GLUE task names to recipe fields")
    for name, entry in per_task.items():
        where = f"recipe {path}, per_task.{name}"
        if name not in GLUE_TASKS:
            raise LmforgeError(f"recipe {path}, per_task: unknown GLUE task '{name}' (known: {', '.join(GLUE_TASKS)})")
        if not OmegaConf.is_dict(entry):
            raise LmforgeError(f"{where}: expected a mapping of recipe fields, got '{entry}'")
        fixed = [k for k in ("name", "base", "per_task") if k in entry]
        fixed += [PER_TASK_KEY] if OmegaConf.select(entry, PER_TASK_KEY) is not None else []
        if fixed:
            raise LmforgeError(f"{where}: {fixed[0]} cannot be set per task")
        try:
            OmegaConf.merge(OmegaConf.structured(Recipe), entry)
        except OmegaConfBaseException as exc:
            raise LmforgeError(f"{where}: {_one_line(exc)}") from None


def _picked_task(path: Path, patch: dict | None, overrides: list[str] | None) -> str | None:
    """objective.glue_task as the YAML, patch and overrides leave it: whose per_task entry applies."""
    try:
        dotlist = OmegaConf.from_dotlist([o for o in overrides or () if "=" in o])
        value = OmegaConf.select(OmegaConf.merge(_read_yaml(path), patch or {}, dotlist), PER_TASK_KEY)
    except OmegaConfBaseException:
        return None  # the full merge below reports it
    return None if value is None else str(value)


def _one_line(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None)
    msg = str(exc).splitlines()[0]
    return f"field '{key}': {msg}" if key else msg


def load_recipe(name_or_path: str, overrides: list[str] | None = None, patch: dict | None = None) -> Recipe:
    """Recipe = schema defaults <- YAML (with its bases) <- `patch` (sections from another recipe, e.g.
    a distillation student's model) <- dotted overrides (key=value)."""
    path = recipe_path(name_or_path)
    schema = OmegaConf.structured(Recipe)
    try:
        yaml = _read_yaml(path, task=_picked_task(path, patch, overrides), pick=True)
        merged = OmegaConf.merge(schema, yaml, patch or {})
    except OmegaConfBaseException as exc:
        raise LmforgeError(f"recipe {path}: {_one_line(exc)}") from None
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise LmforgeError(f"override '{bad[0]}' is not of the form key=value")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        except OmegaConfBaseException as exc:
            raise LmforgeError(f"override: {_one_line(exc)}") from None
    recipe: Recipe = OmegaConf.to_object(merged)
    # YAML 1.1 reads a bare `no` as false; `mixed_precision: no` is what users (and accelerate) write
    if recipe.training.mixed_precision.lower() == "false":
        recipe.training.mixed_precision = "no"
    if not recipe.name or recipe.name == "unnamed":
        recipe.name = path.stem
    check_recipe_values(recipe)
    if recipe.model.config:  # typos and wrong types in model.config, before any tokenizer is trained
        check_model_config(recipe)
    return recipe


def check_model_config(recipe: Recipe) -> None:
    """recipe.model.config against the family's Config class: unknown keys are user errors
    (transformers configs silently accept any kwarg, so a typo would otherwise be ignored), and so
    is text where the field is a number (`num_hidden_layers: two` would fail deep in the model).
    load_recipe calls this, so the mistake surfaces before any tokenizer is trained."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    family = recipe.model.family
    try:
        defaults = AutoConfig.for_model(family)
    except ValueError:
        raise LmforgeError(f"recipe '{recipe.name}', model.family: unknown family '{family}'") from None
    for key, value in recipe.model.config.items():
        if not hasattr(defaults, key):
            raise LmforgeError(f"recipe '{recipe.name}', model.config.{key}: not a field of "
                               f"{type(defaults).__name__}")
        default = getattr(defaults, key)
        if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
            raise LmforgeError(f"recipe '{recipe.name}', model.config.{key}: '{value}' is not a number "
                               f"({type(defaults).__name__}'s default is {default})")
        try:  # the Config class's own field checks (ModernBERT's classifier_pooling: cls or mean)
            setattr(defaults, key, value)
        except StrictDataclassError as exc:
            why = str(exc.__cause__ or exc).splitlines()[-1].strip()
            raise LmforgeError(f"recipe '{recipe.name}', model.config.{key}: {why}") from None


def validate_params(params_cls: type, values: dict[str, Any], where: str):
    """Typed task parameters: unknown keys and wrong types are user errors naming `where`; values
    out of range too, when the params class has a `check(where)` method (built from check_range)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(params_cls), values or {})
        params = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise LmforgeError(f"{where}: {_one_line(exc)}") from None
    if callable(getattr(params, "check", None)):
        params.check(where)
    return params


# --- value ranges ------------------------------------------------------------------------------
# OmegaConf checks types; these check values, so `batch size 0` fails at load with one line
# instead of as a ZeroDivisionError (or a silent no-op) after the tokenizer is trained.


def check_range(where: str, name: str, value, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False):
    """Refuse `value` outside [lo, hi] (an open end excludes the bound; None: unbounded). A value of
    None (an unset optional field) passes; NaN and infinities never do."""
    if value is None:
        return
    finite = not isinstance(value, float) or math.isfinite(value)
    low_ok = lo is None or (value > lo if lo_open else value >= lo)
    high_ok = hi is None or (value < hi if hi_open else value <= hi)
    if finite and low_ok and high_ok:
        return
    if lo is not None and hi is not None:
        rule = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:
        rule = f"{'>' if lo_open else '>='} {lo}"
    elif hi is not None:
        rule = f"{'<' if hi_open else '<='} {hi}"
    else:
        rule = "a finite number"
    raise LmforgeError(f"{where}, {name}: {value} is out of range (must be {rule})")


def check_probability(where: str, name: str, value) -> None:
    check_range(where, name, value, lo=0.0, hi=1.0)


def check_choice(where: str, name: str, value, choices) -> None:
    if value not in choices:
        raise LmforgeError(f"{where}, {name}: '{value}' is not one of {', '.join(map(str, choices))}")


# transformers.SchedulerType's values (5.x); a name not listed is looked up in the installed
# transformers before it is refused (importing it costs seconds, so only then)
_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
               "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
               "warmup_stable_decay", "greedy")


def scheduler_names(name: str) -> tuple[str, ...]:
    if name in _SCHEDULERS:
        return _SCHEDULERS
    from transformers.trainer_utils import SchedulerType

    return tuple(s.value for s in SchedulerType)


def check_recipe_values(recipe: Recipe) -> None:
    """Range checks of the training, data and tokenizer sections (objective parameters are checked
    by their params class, model.config by tasks/shared/modeling.py)."""
    where, t, d, tok = f"recipe '{recipe.name}'", recipe.training, recipe.data, recipe.tokenizer
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                 "logging_steps"):
        check_range(where, f"training.{name}", getattr(t, name), lo=1)
    for name in ("eval_steps", "save_steps", "save_total_limit", "warmup_steps", "weight_decay", "max_grad_norm"):
        check_range(where, f"training.{name}", getattr(t, name), lo=0)
    if t.max_steps < 1 and t.max_steps != -1:
        why = "trains nothing" if t.max_steps == 0 else "is out of range"
        raise LmforgeError(f"{where}, training.max_steps: {t.max_steps} {why} (use a positive step count, or -1 "
                           "to train training.num_train_epochs epochs)")
    if t.max_steps == -1:
        check_range(where, "training.num_train_epochs", t.num_train_epochs, lo=0, lo_open=True)
    check_range(where, "training.learning_rate", t.learning_rate, lo=0, lo_open=True)
    if t.time_budget is not None:
        parse_duration(t.time_budget, f"{where}, training.time_budget")
        if t.warmup_steps:
            raise LmforgeError(f"{where}, training.warmup_steps={t.warmup_steps}: with training.time_budget the "
                               "schedule runs over the budget's elapsed fraction, not steps; set "
                               "training.warmup_ratio (e.g. 0.1) and training.warmup_steps=0")
    check_range(where, "training.dataloader_num_workers", t.dataloader_num_workers, lo=-1)
    check_range(where, "training.dataloader_prefetch_factor", t.dataloader_prefetch_factor, lo=1)
    check_range(where, "tokenizer.train_sample_mb", recipe.tokenizer.train_sample_mb, lo=0, lo_open=True)
    check_range(where, "training.warmup_ratio", t.warmup_ratio, lo=0, hi=1, hi_open=True)
    for name in ("adam_beta1", "adam_beta2"):
        check_range(where, f"training.{name}", getattr(t, name), lo=0, hi=1, hi_open=True)
    check_range(where, "training.adam_epsilon", t.adam_epsilon, lo=0, lo_open=True)
    check_choice(where, "training.lr_scheduler_type", t.lr_scheduler_type, scheduler_names(t.lr_scheduler_type))
    check_choice(where, "training.optimizer", t.optimizer, OPTIMIZERS)
    check_choice(where, "training.mixed_precision", t.mixed_precision, ("no", "bf16", "fp16"))
    check_choice(where, "training.nonfinite", t.nonfinite, ("stop", "skip"))
    check_choice(where, "training.padding_free", str(t.padding_free).lower(), ("auto", "true", "false"))
    check_range(where, "training.max_skipped_steps", t.max_skipped_steps, lo=0)
    check_choice(where, "training.report_to", t.report_to, REPORTERS)

    check_range(where, "data.max_seq_length", d.max_seq_length, lo=8)
    check_range(where, "data.validation_fraction", d.validation_fraction, lo=0, hi=1, hi_open=True)
    check_range(where, "data.dupe_factor", d.dupe_factor, lo=1)
    check_range(where, "data.max_documents", d.max_documents, lo=1)
    if d.num_proc == 0 or d.num_proc < -1:
        raise LmforgeError(f"{where}, data.num_proc: {d.num_proc} is out of range (must be -1 for one process per "
                           "core, or a positive count)")

    check_range(where, "tokenizer.vocab_size", tok.vocab_size, lo=smallest_vocab(recipe.model.family))
    check_range(where, "tokenizer.model_max_length", tok.model_max_length, lo=1)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(value, where: str) -> float:
    """Seconds in "90s", "60m", "2h", "1h30m" or a plain number of seconds; one error line otherwise."""
    text = str(value).strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.fullmatch(text)
        if not text or not match or not any(match.groups()):
            raise LmforgeError(f"{where}: '{value}' is not a duration (e.g. 90s, 60m, 2h, 1h30m)") from None
        h, m, s = (float(g or 0) for g in match.groups())
        seconds = 3600 * h + 60 * m + s
    if not seconds > 0 or seconds == float("inf"):
        raise LmforgeError(f"{where}: '{value}' must be a positive, finite duration")
    return seconds


def smallest_vocab(family: str) -> int:
    """The smallest vocab_size the tokenizer builder accepts for `family` (its special tokens, 16
    learned ones, and the 256 byte symbols of a byte-level BPE); families without a builder: the
    smallest of any."""
    from tokenizer.build import min_vocab_size
    from tokenizer.families import FAMILY_SPECS

    if family in FAMILY_SPECS:
        return min_vocab_size(FAMILY_SPECS[family])
    return min(min_vocab_size(spec) for spec in FAMILY_SPECS.values())


def recipe_to_dict(recipe: Recipe) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(recipe), resolve=True)
