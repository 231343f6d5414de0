"""Command line: `python -m pipelines <command> ...` (also `lmforge <command>` once installed).

    pretrain  RECIPE [key=value ...]         train a recipe from tasks/recipes (or a YAML path)
    prepare   RECIPE [key=value ...]         tokenize its corpus once into memory-mapped shards
    finetune  --task glue|glue/sst2 --model CHECKPOINT [--glue_dir DIR] [key=value ...]
              [--do_predict]                 no training: GLUE test-set submission files from an export
    finetune  --task squad|squad_v2|swag|race|ner --model CHECKPOINT --data DIR [--seeds N] [key=value ...]
              [--do_predict]                 squad: predictions.json (+ null_odds.json) of DIR's dev file
    distill   --method kd|distilbert|tinybert --teacher FOLDER --student RECIPE|FOLDER --stage general|glue/<t>
    tokenizer --family bert --corpus default --vocab_size 8192 --output_dir DIR [--overwrite]
    corpus    [--output PATH]                write the embedded default corpus
    push      FOLDER --repo_id USER/NAME [--dry_run]  an export + generated model card to the Hugging Face Hub
    report    RUNS_DIR [--out FOLDER]        static dashboard (HTML + PNG plots) of the results under RUNS_DIR
    experiment RECIPE --budget 60m --glue_dir DIR [--seeds 3]  pretraining under a time budget vs random
              init on GLUE: tokenizer -> prepare -> pretrain -> GLUE x seeds -> report (experiment.json)
    recipes                                  list the recipes by kind, and what finetune --task accepts

User mistakes (LmforgeError) print one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipelines.errors import LmforgeError, Preempted


def _call(module: str, name: str):
    """pipelines.commands.<module>.<name>, imported when the command runs (each pulls in torch or
    transformers: `--help` stays fast)."""

    def run(args) -> int:
        import importlib

        return getattr(importlib.import_module(f"pipelines.commands.{module}"), name)(args)

    return run


def _finetune(args) -> int:
    from pipelines.commands.finetune import run_finetune, run_predict

    if args.do_predict and args.task in ("squad", "squad_v2"):
        from pipelines.commands.finetune import run_predict_squad

        run_predict_squad(args.task, args.model, args.data, args.output_dir)
        return 0
    if args.do_predict:
        run_predict(args.task, args.model, args.glue_dir, args.output_dir)
        return 0
    run_finetune(args.task, args.model, glue_dir=args.glue_dir, data=args.data, recipe_name=args.recipe,
                 overrides=args.overrides, output_dir=args.output_dir, seeds=args.seeds,
                 init_from=args.init_from)
    return 0


def _distill(args) -> int:
    from pipelines.commands.distill import distill_stage, run_distill

    stage, flag = distill_stage(args.stage, args.task)
    run_distill(args.method, args.teacher, args.student, stage, glue_dir=args.glue_dir,
                output_dir=args.output_dir, overrides=args.overrides, flag=flag)
    return 0


def _recipes(args) -> int:
    """The recipes by what runs them: a recipe name (glue, squad) is not a --task value, and a recipe's
    `task:` (its training objective) is neither."""
    from pipelines.commands.finetune import finetune_tasks
    from pipelines.config import RECIPE_DIR, load_recipe
    from pipelines.runs.results import run_kind

    groups = {"pretrain": [], "finetune": [], "distill": [], "student": []}
    for path in sorted(RECIPE_DIR.glob("*.yaml")):
        r = load_recipe(str(path))
        kind = "student" if path.stem.startswith("student-") else run_kind(r.task)
        groups[kind].append(f"  {path.stem:26s} {r.task:26s} {r.description}")
    header = f"  {'recipe':26s} {'objective (its task: field)':26s} description"
    for kind, title in RECIPE_GROUPS.items():
        print("\n".join([title, header, *groups[kind]]))
    print(f"make finetune TASK= (--task, what to fine-tune on): {' | '.join(finetune_tasks())}")
    print("make distill STAGE= (--stage, what the student learns on): general | glue/<task>")
    return 0


RECIPE_GROUPS = {
    "pretrain": "Pretraining recipes: make pretrain RECIPE=<recipe>",
    "finetune": "Fine-tuning recipes: make finetune TASK=<task> MODEL=<checkpoint> picks one from the "
                "checkpoint (ARGS='--recipe <recipe>' to choose)",
    "distill": "Distillation recipes: make distill METHOD=<method> STAGE=<stage> picks one",
    "student": "Student architectures: make distill STUDENT=<recipe>",
}


def _push(args) -> int:
    from pathlib import Path

    from pipelines.runs.push import push_folder

    folder = args.folder
    if not Path(folder).is_dir() and (Path("runs") / folder / "final").is_dir():  # a recipe name: its export
        folder = str(Path("runs") / folder / "final")
    where = push_folder(folder, args.repo_id, private=args.private, results=args.results, glue=args.glue_results,
                        token=args.token, dry_run=args.dry_run, license=args.license)
    if not args.dry_run:
        print(where)
    return 0


def _experiment(args) -> int:
    from pipelines.commands.experiment import run_experiment

    run_experiment(args.recipe, args.budget, args.glue_dir, seeds=args.seeds, baseline=args.baseline == "true",
                   distill=args.distill, tasks=args.tasks, corpus=args.corpus, output_dir=args.output_dir,
                   overrides=args.overrides, finetune_overrides=args.finetune, finetune_recipe=args.finetune_recipe,
                   jobs=args.jobs)
    return 0


def _report(args) -> int:
    from pipelines.runs.report import build_report

    print(f"report: {build_report(args.runs_dir, args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmforge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pt = sub.add_parser("pretrain", help="train a recipe")
    pt.add_argument("recipe", help="recipe name (tasks/recipes/NAME.yaml) or path to a YAML file")
    pt.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.max_steps=100")
    pt.set_defaults(func=_call("pretrain", "pretrain"))
    pr = sub.add_parser("prepare", help="tokenize a recipe's corpus into cached shards (pretrain does it when missing)")
    pr.add_argument("recipe", help="recipe name (tasks/recipes/NAME.yaml) or path to a YAML file")
    pr.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.corpus=/data/wiki")
    pr.set_defaults(func=_call("pretrain", "prepare"))
    ft = sub.add_parser("finetune", help="fine-tune a checkpoint on GLUE or a seq2seq task")
    ft.add_argument("--task", required=True,
                    help="what to fine-tune on: glue | glue/<task> (e.g. glue/sst2) | squad | squad_v2 | swag | race "
                         "| ner | summarization (not a recipe name: see `recipes`)")
    ft.add_argument("--model", required=True, help="checkpoint folder, Hub name, or a pretrain recipe name")
    ft.add_argument("--glue_dir", default=None, help="folder in the GLUE TSV layout; default: the Hub")
    ft.add_argument("--data", default=None, help="squad/swag/race/ner: a folder in the official layout (or a Hub "
                    "name); summarization: local jsonl or Hub dataset name")
    ft.add_argument("--recipe", default=None, help="fine-tuning recipe, tasks/recipes/NAME.yaml (default: the one "
                    "that suits --task and the checkpoint, e.g. glue or glue-t5 for --task glue)")
    ft.add_argument("--output_dir", default=None)
    ft.add_argument("--seeds", type=int, default=1,
                    help="GLUE: train each task with this many seeds (training.seed, +1, ...); report median/mean/std")
    ft.add_argument("--init_from", default=None,
                    help="GLUE: RTE, MRPC and STS-B start from this fine-tuned (MNLI) export (a new head)")
    ft.add_argument("--do_predict", action="store_true",
                    help="no training: GLUE submission files from a fine-tuned export (or finetune output folder)")
    ft.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.learning_rate=3e-5")
    ft.set_defaults(func=_finetune)
    di = sub.add_parser("distill", help="distil a teacher into a student (kd | distilbert | tinybert)")
    di.add_argument("--method", required=True, choices=("kd", "distilbert", "tinybert"))
    di.add_argument("--teacher", required=True, help="teacher checkpoint folder (lmforge export or transformers)")
    di.add_argument("--student", required=True, help="student recipe (e.g. student-tiny) or checkpoint folder")
    di.add_argument("--stage", default=None, help="what the student learns on: general (the corpus, no task) | "
                    "glue/<task> (a GLUE task's data)")
    di.add_argument("--task", default=None, help="the older spelling of --stage: pretrain (= general) | glue/<task>")
    di.add_argument("--glue_dir", default=None, help="folder in the GLUE TSV layout; default: the Hub")
    di.add_argument("--output_dir", default=None)
    di.add_argument("overrides", nargs="*", help="dotted overrides, e.g. objective.alpha=0.1")
    di.set_defaults(func=_distill)
    tk = sub.add_parser("tokenizer", help="train a tokenizer for a model family")
    tk.add_argument("--family", default="bert")
    tk.add_argument("--corpus", default="default", help="'default', a local file/folder, or a Hub dataset")
    tk.add_argument("--text_column", default="text")
    tk.add_argument("--vocab_size", type=int, default=8192)
    tk.add_argument("--model_max_length", type=int, default=512)
    tk.add_argument("--sample_mb", type=float, default=256.0, help="train on a seeded sample of this much text")
    tk.add_argument("--output_dir", required=True)
    tk.add_argument("--overwrite", action="store_true",
                    help="write into a folder holding other files (only its tokenizer files are replaced)")
    tk.set_defaults(func=_call("tokenizer", "tokenizer"))
    co = sub.add_parser("corpus", help="build the embedded default corpus")
    co.add_argument("--output", default=None)
    co.set_defaults(func=_call("tokenizer", "corpus"))
    sub.add_parser("recipes", help="list recipes and tasks").set_defaults(func=_recipes)
    pu = sub.add_parser("push", help="upload an exported folder to the Hugging Face Hub")
    pu.add_argument("folder")
    pu.add_argument("--repo_id", required=True)
    pu.add_argument("--private", action="store_true")
    pu.add_argument("--dry_run", action="store_true",
                    help="build the upload folder and model card, print where; no network")
    pu.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN, else the stored login); never printed")
    pu.add_argument("--results", default=None, help="results.json for the card (default: next to the export)")
    pu.add_argument("--glue_results", default=None,
                    help="glue_results.json for the card's model-index (default: finetune's output for this export)")
    pu.add_argument("--license", default=None, help="the card's license (e.g. apache-2.0, mit); none unless given")
    pu.set_defaults(func=_push)
    ex = sub.add_parser("experiment", help="pretrain under a time budget, fine-tune GLUE against random init, report")
    ex.add_argument("recipe", help="pretraining recipe (e.g. modernbert-mini-cram)")
    ex.add_argument("--budget", default="60m", help="pretraining wall time (training.time_budget): 60m, 2h, ...")
    ex.add_argument("--glue_dir", default=None, help="folder in the GLUE TSV layout (required)")
    ex.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds per task and arm (median reported)")
    ex.add_argument("--baseline", default="true", choices=("true", "false"),
                    help="also fine-tune the same architecture from random init (the comparison)")
    ex.add_argument("--distill", default=None, help="a student recipe: distil the pretrained model into it too")
    ex.add_argument("--tasks", default=None, help="comma-separated GLUE tasks (default: every task in --glue_dir)")
    ex.add_argument("--corpus", default="glue", choices=("glue", "recipe"),
                    help="glue: the tasks' training text (task-adaptive pretraining); recipe: data.corpus")
    ex.add_argument("--finetune_recipe", default="glue-budget", help="GLUE fine-tuning recipe (default: glue-budget)")
    ex.add_argument("--finetune", action="append", default=[], metavar="KEY=VALUE",
                    help="a fine-tuning override (repeatable), e.g. --finetune training.num_train_epochs=3")
    ex.add_argument("--jobs", type=int, default=None,
                    help="fine-tunings side by side (the arms of a task), cores split between them "
                         "(default: one per arm, up to the core count; 1: one after the other in this process)")
    ex.add_argument("--output_dir", default=None, help="default: runs/experiment/<recipe>-<budget>")
    ex.add_argument("overrides", nargs="*", help="pretraining overrides, e.g. model.config.num_hidden_layers=2")
    ex.set_defaults(func=_experiment)
    rp = sub.add_parser("report", help="static dashboard of the results under a runs folder")
    rp.add_argument("runs_dir", help="folder holding run output folders (results.json, glue_results.json)")
    rp.add_argument("--out", default=None, help="report folder (default: RUNS_DIR/report); replaced whole")
    rp.set_defaults(func=_report)
    return p


def run_command(func, args) -> int:
    """func(args) with lmforge's exit convention: a user mistake is one `lmforge: error:` line and
    exit 2, Ctrl-C is 130, a training stopped by a signal after saving a checkpoint is 128 + the
    signal (143 for SIGTERM), anything else is a bug and keeps its traceback."""
    try:
        code = func(args)
    except Preempted as exc:
        if str(exc):  # the main process's line: where the checkpoint is, how to resume
            print(f"lmforge: {exc}", file=sys.stderr)
        code = exc.code
    except LmforgeError as exc:
        print(f"lmforge: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("lmforge: interrupted", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _dispatch(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """HF-style flags and aliases as recipe overrides (arguments.py), then the command."""
    from pipelines.commands.arguments import normalize

    args = parser.parse_args(normalize(argv, parser))
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    from pipelines.commands.memory import limit_malloc_arenas

    limit_malloc_arenas()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    code = run_command(lambda _: _dispatch(parser, argv), None)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # gloo process groups sometimes abort at interpreter exit after a finished run
        # (ENVIRONMENT.md: 3 of 8 runs); a hard exit after the flushes is clean.
        os._exit(code)
    return code
