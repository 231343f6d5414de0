"""`python -m pipelines.commands.datatrove_prepare RECIPE [key=value ...]`: `prepare` at cluster scale
(the pipeline itself: pipelines/data/datatrove_prepare.py; docs/DATA.md).

    python -m pipelines.commands.datatrove_prepare RECIPE [key=value ...] --tasks 8
    python -m pipelines.commands.datatrove_prepare RECIPE data.prepared_dir=/shared/prepared \\
        --executor slurm --tasks 64 --partition cpu --time 04:00:00 --cpus_per_task 4
"""

from __future__ import annotations

import argparse
import sys

from pipelines.commands.cli import run_command
from pipelines.config import load_recipe
from pipelines.data.datatrove_prepare import local_source_files, prepare_with_datatrove, require_datatrove
from pipelines.errors import LmforgeError
from tasks.base import get_task


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmforge datatrove-prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="recipe name (tasks/recipes/NAME.yaml) or path to a YAML file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.corpus=/shared/corpus")
    p.add_argument("--executor", choices=["local", "slurm"], default="local")
    p.add_argument("--tasks", type=int, default=None,
                   help="datatrove tasks, each a share of the source files (default: local min(files, cores), "
                        "slurm one per file)")
    p.add_argument("--workers", type=int, default=-1, help="tasks run at once (-1: all)")
    p.add_argument("--output", default=None,
                   help="shard folder (default: the cache folder pretrain reads, under data.prepared_dir)")
    p.add_argument("--logging_dir", default=None, help="datatrove logs (default: .<folder>.datatrove beside it)")
    s = p.add_argument_group("slurm")
    s.add_argument("--partition", default=None)
    s.add_argument("--time", default=None, help="time limit per task, e.g. 04:00:00")
    s.add_argument("--cpus_per_task", type=int, default=4)
    s.add_argument("--mem_per_cpu_gb", type=int, default=4)
    s.add_argument("--qos", default=None)
    s.add_argument("--job_name", default="lmforge-prepare")
    s.add_argument("--env_command", default=None,
                   help="run first in every job (default: cd here, activate this venv, lmforge on PYTHONPATH)")
    return p


def _run(args) -> int:
    require_datatrove()
    recipe = load_recipe(args.recipe, args.overrides)
    local_source_files(recipe.data)  # refuse a Hub dataset before any tokenizer is trained
    if args.executor == "slurm" and not (recipe.data.prepared_dir or args.output):
        raise LmforgeError("--executor slurm: set data.prepared_dir=/shared/... (storage every node reads; "
                           "training reads the shards from there) or --output")
    if args.tasks is not None and args.tasks < 1:
        raise LmforgeError(f"--tasks {args.tasks}: at least 1")
    tokenizer = get_task(recipe.task)(recipe).load_tokenizer()
    slurm = {"partition": args.partition, "time": args.time, "cpus_per_task": args.cpus_per_task,
             "mem_per_cpu_gb": args.mem_per_cpu_gb, "qos": args.qos, "job_name": args.job_name,
             "env_command": args.env_command}
    prepare_with_datatrove(recipe.data, tokenizer, args.output, tasks=args.tasks, workers=args.workers,
                           executor=args.executor, logging_dir=args.logging_dir, slurm=slurm)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(_run, build_parser().parse_intermixed_args(argv))


if __name__ == "__main__":
    sys.exit(main())
