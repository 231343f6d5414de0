"""Objectives and downstream tasks: one module each, registered by name (see tasks/base.py)."""

import importlib

from tasks.base import get_task, register, task_names  # noqa: F401

# Every module that registers a task; a missing optional module must not hide the others.
_TASK_MODULES = ["mlm", "nsp", "sop", "rtd", "clm", "span_corruption_task", "denoising_task", "glue",
                 "seq2seq", "glue_t5"]
for _name in _TASK_MODULES:
    try:
        importlib.import_module(f"tasks.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"tasks.{_name}":
            raise
