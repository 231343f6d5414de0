"""One flag style for every command that takes a recipe: recipe fields as dotted overrides
(`training.max_steps=40`), and what users bring from HF's TrainingArguments accepted as aliases of
them, as a flag or as an override:

    --max_steps 40 | --max_steps=40 | max_steps=40     -> training.max_steps=40
    --bf16 | bf16=true | training.bf16=true           -> training.mixed_precision=bf16
    --output_dir runs/x (pretrain)                    -> training.output_dir=runs/x
    --model_name_or_path, --max_seq_length, --optim adamw_torch, --mlm_probability, ...

A command's own flags (finetune's --task, --model, --output_dir, ...) keep their meaning. A name that
is no recipe field is refused with one line naming the closest field, before anything runs.
"""

from __future__ import annotations

import argparse
import difflib
from dataclasses import fields

from pipelines.config import DataSection, ModelSection, TokenizerSection, TrainingSection
from pipelines.errors import LmforgeError

SECTIONS = {"training": TrainingSection, "data": DataSection, "tokenizer": TokenizerSection, "model": ModelSection}
FREE_SECTIONS = ("objective", "model.config")  # checked by the task's params class / the model's config class
# HF TrainingArguments / run_*.py names whose recipe field has another name or section
RENAMED = {
    "model_name_or_path": "model.name_or_path", "tokenizer_name": "tokenizer.name_or_path",
    "dataset_name": "data.corpus", "dataset_config_name": "data.corpus_config", "train_file": "data.corpus",
    "text_column_name": "data.text_column", "max_seq_length": "data.max_seq_length",
    "mlm_probability": "objective.mlm_probability", "optim": "training.optimizer",
}
PRECISION_FLAGS = ("bf16", "fp16")  # TrainingArguments' booleans: one field here, mixed_precision
OPTIMIZER_NAMES = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw", "adamw": "adamw",
                   "lamb": "lamb"}
TAKES_OVERRIDES = ("pretrain", "prepare", "finetune", "distill", "experiment")
TOP_LEVEL = ("name", "base", "task", "description")  # the recipe's own fields, outside any section


def _field_names(section: str) -> list[str]:
    return [f.name for f in fields(SECTIONS[section])]


def _unique_sections() -> dict[str, str]:
    """field name -> section, for the names only one section has (name_or_path is model's and tokenizer's)."""
    seen: dict[str, list[str]] = {}
    for section in SECTIONS:
        for name in _field_names(section):
            seen.setdefault(name, []).append(section)
    return {name: s[0] for name, s in seen.items() if len(s) == 1}


def recipe_override(name: str, value: str) -> str:
    """`name=value` as the recipe override it means (aliases resolved, the name checked)."""
    section, _, field = name.rpartition(".")
    if field in PRECISION_FLAGS and section in ("", "training"):
        on = value.lower() in ("true", "1", "yes")
        return f"training.mixed_precision={field if on else 'no'}"
    if not section and name in TOP_LEVEL:
        return f"{name}={value}"
    if not section:
        if name in RENAMED:
            name = RENAMED[name]
        elif name in _unique_sections():
            name = f"{_unique_sections()[name]}.{name}"
        else:
            raise LmforgeError(f"'{name}={value}': not a recipe field{_closest(name)}")
    if name == "training.optimizer":
        value = OPTIMIZER_NAMES.get(value, value)
    _check_field(name, value)
    return f"{name}={value}"


def _check_field(name: str, value: str) -> None:
    section, _, field = name.partition(".")
    if name.startswith(FREE_SECTIONS) or section not in SECTIONS:
        return  # objective.* and model.config.* are checked when the task is built; a top-level key by OmegaConf
    if field not in _field_names(section):
        raise LmforgeError(f"'{name}={value}': section '{section}' has no field '{field}'{_closest(field)}")


def _closest(name: str) -> str:
    candidates = {f"{s}.{f}": f for s in SECTIONS for f in _field_names(s)}
    candidates.update({k: k for k in RENAMED})
    bare = difflib.get_close_matches(name, list(candidates.values()) + list(RENAMED), n=1, cutoff=0.6)
    if not bare:
        return ""
    full = RENAMED.get(bare[0]) or next(k for k, v in candidates.items() if v == bare[0])
    return f"; did you mean '{full}'?"


def normalize(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """argv with every flag that is not the command's own, and every key=value, as a recipe override."""
    if not argv or argv[0] not in TAKES_OVERRIDES:
        return argv
    own = _own_flags(parser, argv[0])
    out, overrides, i = [argv[0]], [], 1
    while i < len(argv):
        token = argv[i]
        name = token[2:].partition("=")[0] if token.startswith("--") else ""
        if token.startswith("-") and (not name or name in own or token in ("-h", "--help")):
            out.append(token)  # the command's own flag, and its value (which may hold a '=')
            if own.get(name) and "=" not in token and i + 1 < len(argv):
                out.append(argv[i + 1])
                i += 1
        elif name:
            if "=" in token:
                value = token.partition("=")[2]
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--") and "=" not in argv[i + 1]:
                value, i = argv[i + 1], i + 1
            else:
                value = "true"  # a bare boolean flag (--bf16, --push_to_hub)
            overrides.append(recipe_override(name, value))
        elif "=" in token:
            key, _, value = token.partition("=")
            overrides.append(recipe_override(key, value))
        else:
            out.append(token)  # a positional: the recipe name, or an own flag's value
        i += 1
    # the overrides as one run of positionals: argparse takes `RECIPE key=value...` together, and would
    # refuse a key=value written after one of the command's own flags
    at = 2 if len(out) > 1 and not out[1].startswith("-") else len(out)
    return out[:at] + overrides + out[at:]


def _own_flags(parser: argparse.ArgumentParser, command: str) -> dict[str, bool]:
    """The command's own --flags -> whether each takes a value."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {s[2:]: a.nargs != 0 for a in sub._actions for s in a.option_strings if s.startswith("--")}
