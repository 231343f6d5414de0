"""Recipes: YAML files validated against typed dataclasses, with dotted command-line overrides.

OmegaConf does the parsing and merging; its structured configs refuse unknown keys and
wrong types, so a typo in a recipe or an override fails loudly instead of being ignored.
A recipe may name a `base` recipe it extends (bert-base extends nothing, bert-tiny extends
bert-base and shrinks it), so shared settings are written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipelines.errors import LmforgeError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "tasks" / "recipes"


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


@dataclass
class DataSection:
    corpus: str = "default"  # "default" | local file or folder | Hub dataset name
    corpus_config: str | None = None  # Hub dataset config (e.g. wikitext-103-raw-v1)
    split: str = "train"
    text_column: str = "text"
    max_seq_length: int = 128
    validation_fraction: float = 0.02  # documents held out for evaluation
    max_documents: int | None = None  # cap for quick runs
    dupe_factor: int = 1  # passes over the corpus when static pairs are built (BERT NSP: 10)


@dataclass
class TrainingSection:
    output_dir: str = "runs/${name}"  # interpolated from the recipe name
    max_steps: int = 1000  # -1: use num_train_epochs
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    lr_scheduler_type: str = "linear"  # any transformers.get_scheduler name (linear, cosine, ...)
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps == 0
    mixed_precision: str = "no"  # no | bf16 | fp16
    allow_fp16: bool = False  # tasks that overflow in fp16 (T5) refuse it unless this is set
    torch_compile: bool = False
    seed: int = 42
    logging_steps: int = 10
    eval_steps: int = 200  # 0: only at the end
    max_eval_batches: int = 50
    save_steps: int = 500  # 0: no intermediate checkpoints
    save_total_limit: int = 2
    resume_from_checkpoint: str | None = None  # a checkpoint folder or "latest"
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


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()):
    if path in seen:
        raise LmforgeError(f"recipe {path}: 'base' chain loops back to itself")
    try:
        raw = OmegaConf.load(path)
    except Exception as exc:  # yaml errors carry line numbers; keep them on one line
        raise LmforgeError(f"recipe {path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict) and not OmegaConf.is_dict(raw):
        raise LmforgeError(f"recipe {path}: expected a mapping at the top level")
    base = raw.get("base")
    if base:
        parent = _read_yaml(recipe_path(base), seen + (path,))
        raw = OmegaConf.merge(parent, raw)
    return raw


def _one_line(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None)
    msg = str(exc).splitlines()[0]
    return f"field '{key}': {msg}" if key else msg


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Recipe = schema defaults <- YAML (with its bases) <- dotted overrides (key=value)."""
    path = recipe_path(name_or_path)
    schema = OmegaConf.structured(Recipe)
    try:
        merged = OmegaConf.merge(schema, _read_yaml(path))
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
    return recipe


def validate_params(params_cls: type, values: dict[str, Any], where: str):
    """Typed task parameters: unknown keys and wrong types are user errors naming `where`."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(params_cls), values or {})
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise LmforgeError(f"{where}: {_one_line(exc)}") from None


def recipe_to_dict(recipe: Recipe) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(recipe), resolve=True)
