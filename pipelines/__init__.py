"""lmforge's engine and entry points: `python -m pipelines <command>` (see pipelines/commands/cli.py)."""
