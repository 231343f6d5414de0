"""Objectives (tasks/objectives/), downstream tasks (tasks/finetuning/) and distillation
(tasks/distillation/): one module each, registered by name with @register (tasks/base.py, which
discovers the modules on the first get_task)."""
