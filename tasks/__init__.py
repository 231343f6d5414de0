"""Objectives (tasks/objectives/), downstream tasks (tasks/finetuning/) and distillation
(tasks/distillation/): one module each,
registered by name with @register (tasks/base.py). Modules are discovered, not listed: a new
file is picked up, and a module that fails to import fails loudly instead of being skipped."""

import importlib
import pkgutil

from tasks.base import get_task, register, task_names  # noqa: F401

for _package in ("objectives", "finetuning", "distillation"):
    _pkg = importlib.import_module(f"tasks.{_package}")
    for _info in pkgutil.iter_modules(_pkg.__path__):
        importlib.import_module(f"tasks.{_package}.{_info.name}")
