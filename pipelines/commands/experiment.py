"""`experiment`: does pretraining pay off in this budget on this machine? One command, one folder.

    python -m pipelines experiment modernbert-mini-cram --budget 60m --glue_dir GLUE [--seeds 3]
    make experiment RECIPE=modernbert-mini-cram BUDGET=60m GLUE_DIR=... SEEDS=3

Stages, each recorded in <folder>/experiment.json (pipelines/runs/experiment_log.py) and never redone
once finished; the same command continues an interrupted experiment (SIGKILL included) from the
stage it was in, and a pretraining stage from its newest checkpoint:

    corpus       the GLUE tasks' training text (task-adaptive pretraining; --corpus glue, the default),
                 or the recipe's own corpus (--corpus recipe)
    prepare      the tokenizer and the memory-mapped shards (not counted in the budget)
    pretrain     the recipe under training.time_budget = --budget
    distill      optional (--distill STUDENT): DistilBERT-style distillation of the pretrained model
    glue/<arm>/<task>  GLUE fine-tuning x seeds of each arm: pretrained, distilled, and random_init (the
                 same architecture from fresh weights, on the same seeds; --baseline false skips it)
    report       the comparison table (experiment.md, experiment.json "comparison") and the report page

Every stage runs in this process with the same functions the single commands use; experiment.json
records the equivalent command line of each, so any stage can be rerun by hand.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from pipelines.atomic import atomic_write_json, atomic_write_text
from pipelines.commands.experiment_jobs import Job, auto_jobs, run_jobs
from pipelines.config import load_recipe, parse_duration
from pipelines.errors import LmforgeError
from pipelines.runs.experiment_log import ExperimentLog

CORPORA = ("glue", "recipe")
SHARED_WITH_DISTILL = {f"training.{k}" for k in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                                  "mixed_precision", "logging_steps", "eval_steps", "save_steps",
                                                  "max_eval_batches")}


def run_experiment(recipe: str, budget: str, glue_dir: str | None, seeds: int = 3, baseline: bool = True,
                   distill: str | None = None, tasks: str | None = None, corpus: str = "glue",
                   output_dir: str | None = None, overrides=(), finetune_overrides=(),
                   finetune_recipe: str | None = None, jobs: int | None = None) -> dict:
    from pipelines.commands.finetune import glue_task_list

    parse_duration(budget, "--budget")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise LmforgeError("experiment runs in one process (its stages reset accelerate's state between them); "
                           "start it with python -m pipelines / make experiment, not accelerate launch")
    if not glue_dir:
        raise LmforgeError("experiment: --glue_dir is required (GLUE_DIR=<folder with CoLA/, SST-2/, ...>)")
    if seeds < 1:
        raise LmforgeError(f"--seeds {seeds}: must be >= 1")
    if jobs is not None and jobs < 1:
        raise LmforgeError(f"--jobs {jobs}: must be >= 1")
    if corpus not in CORPORA:
        raise LmforgeError(f"--corpus {corpus}: expected one of {', '.join(CORPORA)}")
    names = glue_task_list("glue", glue_dir)
    if tasks:
        wanted = [t.strip().lower().replace("-", "") for t in tasks.split(",") if t.strip()]
        missing = [t for t in wanted if t not in names]
        if missing:
            raise LmforgeError(f"--tasks {tasks}: {', '.join(missing)} not in --glue_dir {glue_dir} "
                               f"(found: {', '.join(names)})")
        names = [t for t in names if t in wanted]
    root = Path(output_dir or Path("runs") / "experiment" / f"{Path(recipe).stem}-{budget}")
    pretrain_over = [*budget_defaults(load_recipe(recipe, list(overrides))), *overrides,
                     f"training.time_budget={budget}", f"training.output_dir={root / 'pretrain'}"]
    checked = load_recipe(recipe, pretrain_over)  # every recipe mistake before any work
    if checked.training.torch_compile:  # the default recipe compiles: a missing compiler is named before any stage
        from pipelines.engine.compile import check_cpu_compiler

        check_cpu_compiler()
    settings = {"recipe": recipe, "budget": budget, "glue_dir": str(Path(glue_dir).resolve()), "tasks": names,
                "seeds": seeds, "baseline": baseline, "distill": distill, "corpus": corpus,
                "pretrain_overrides": list(overrides), "finetune_overrides": list(finetune_overrides),
                "finetune_recipe": finetune_recipe}
    log = ExperimentLog(root, settings)
    if corpus == "glue":
        text = _corpus_stage(log, root, glue_dir, names)
        pretrain_over.append(f"data.corpus={text}")
        checked = load_recipe(recipe, pretrain_over)
    _prepare_stage(log, recipe, pretrain_over)
    export = _pretrain_stage(log, recipe, pretrain_over, root)
    arms = {"pretrained": (export, [])}
    if distill:
        # the same corpus, sequence length and batch shape as the pretraining (its own rate and schedule)
        corpus_over = [o for o in pretrain_over if o.startswith("data.") or o.split("=")[0] in SHARED_WITH_DISTILL]
        arms["distilled"] = (_distill_stage(log, export, distill, budget, root, corpus_over), [])
    if baseline:
        arms["random_init"] = (export, ["objective.random_init=true"])
    # task by task, every arm of a task before the next, the smallest training sets first: a stopped
    # experiment's finished tasks are whole comparisons, as many as its time allowed; the arms of a
    # task side by side in `jobs` processes (experiment_jobs.py), or one after the other in this one
    jobs = auto_jobs(len(arms)) if jobs is None else jobs
    summaries: dict[str, dict] = {arm: {} for arm in arms}
    for name in sorted(names, key=lambda n: _train_rows(glue_dir, n)):
        over = {arm: [*finetune_overrides, *extra] for arm, (_, extra) in arms.items()}
        runs = {arm: _glue_job(log, arm, path, over[arm], name, glue_dir, seeds, root, finetune_recipe)
                for arm, (path, _) in arms.items()}
        todo = [arm for arm in arms if not log.done(f"glue/{arm}/{name}")]
        if jobs > 1 and len(todo) > 1:
            run_jobs(log, [runs[arm] for arm in todo], jobs, _summary)
        for arm, (path, _) in arms.items():
            if not log.done(f"glue/{arm}/{name}"):
                _glue_stage(log, runs[arm], path, over[arm], name, glue_dir, seeds, root, finetune_recipe)
            summaries[arm][name] = log.result(f"glue/{arm}/{name}")
            atomic_write_json(root / "glue" / arm / "glue_results.json", summaries[arm])  # all its tasks so far
    return _report_stage(log, root, summaries, checked)


def budget_defaults(recipe) -> list[str]:
    """What makes any pretraining recipe a budgeted one: the budget, not the recipe's step count, ends
    the run (a max_steps given on the command line still wins), and a warmup in steps becomes the same
    fraction of the recipe's schedule (the budget's schedule runs over the elapsed fraction)."""
    t = recipe.training
    out = ["training.max_steps=100000000"]
    if t.warmup_steps:
        ratio = min(0.5, t.warmup_steps / t.max_steps) if t.max_steps > 0 else 0.06
        out += ["training.warmup_steps=0", f"training.warmup_ratio={ratio:.4g}"]
    return out


def _fresh_accelerate() -> None:
    """accelerate keeps one process-wide state (precision, device): each stage's run sets its own
    (pretraining in bf16, fine-tuning in fp32), so the state is reset between stages. One process only."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def _command(*words) -> str:
    return "python -m pipelines " + " ".join(shlex.quote(str(w)) for w in words)


def _corpus_stage(log: ExperimentLog, root: Path, glue_dir: str, names: list[str]) -> str:
    from pipelines.data.tapt import write_glue_train_text

    path = root / "corpus" / "glue-train.txt"
    if not log.done("corpus") or not path.is_file():
        with log.stage("corpus", f"(GLUE training text of {', '.join(names)} from {glue_dir})", None) as result:
            result.update(write_glue_train_text(glue_dir, names, path), path=str(path))
    return str(path.resolve())


def _prepare_stage(log: ExperimentLog, recipe: str, over: list[str]) -> None:
    from argparse import Namespace

    from pipelines.commands.pretrain import prepare

    if log.done("prepare"):
        return
    with log.stage("prepare", _command("prepare", recipe, *over), recipe) as result:
        _fresh_accelerate()
        prepare(Namespace(recipe=recipe, overrides=over))
        result["tokenizer"] = str(Path(load_recipe(recipe, over).training.output_dir) / "tokenizer")


def _pretrain_stage(log: ExperimentLog, recipe: str, over: list[str], root: Path) -> str:
    from pipelines.engine.checkpoint import list_checkpoints
    from pipelines.engine.loop import train
    from tasks.base import get_task

    if log.done("pretrain"):
        return log.result("pretrain")["export"]
    extra = []
    if log.interrupted("pretrain"):  # continue from its newest checkpoint, or start it anew
        extra = (["training.resume_from_checkpoint=latest"] if list_checkpoints(root / "pretrain")
                 else ["training.overwrite_output_dir=true"])
    with log.stage("pretrain", _command("pretrain", recipe, *over, *extra), recipe) as result:
        r = load_recipe(recipe, over + extra)
        _fresh_accelerate()
        trained = train(get_task(r.task)(r), r)
        if not trained.export_dirs:
            raise LmforgeError(f"experiment: the pretraining run {root / 'pretrain'} exported nothing")
        result.update(export=str(trained.export_dirs[0].resolve()), steps=trained.steps,
                      final_eval=trained.eval_metrics, **_ended(root / "pretrain"))
    return result["export"]


def _ended(out: Path) -> dict:
    import json

    results = json.loads((out / "results.json").read_text())
    return {k: results[k] for k in ("ended_by", "elapsed_s", "time_budget_s", "tokens", "tokens_per_sec")
            if k in results}


def _distill_stage(log: ExperimentLog, teacher: str, student: str, budget: str, root: Path,
                   corpus_over: list[str]) -> str:
    from pipelines.commands.distill import run_distill

    if log.done("distill"):
        return log.result("distill")["export"]
    out = root / "distill"
    over = [f"training.time_budget={budget}", "training.max_steps=100000000", "training.warmup_steps=0",
            "training.warmup_ratio=0.06", *corpus_over]
    if _width(student) not in (None, _width(teacher)):  # DistilBERT's cosine term needs equal widths
        over.append("objective.alpha_cos=0")
    over += ["training.overwrite_output_dir=true"] if log.interrupted("distill") else []
    with log.stage("distill", _command("distill", "--method", "distilbert", "--teacher", teacher, "--student",
                                       student, "--stage", "general", "--output_dir", out, *over), None) as result:
        _fresh_accelerate()
        run_distill("distilbert", teacher, student, "general", output_dir=str(out), overrides=over)
        exports = sorted(p.parent for p in out.rglob("final/config.json"))
        if not exports:
            raise LmforgeError(f"experiment: the distillation run {out} exported nothing")
        result["export"] = str(exports[0].resolve())
    return result["export"]


def _width(model: str) -> int | None:
    """hidden_size of a checkpoint folder or of a student recipe (None: the teacher's, or unknown)."""
    import json

    config = Path(model) / "config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("hidden_size")
    return load_recipe(model).model.config.get("hidden_size")


def _train_rows(glue_dir: str, name: str) -> int:
    """Lines of the task's training file: its fine-tuning cost, as steps dominate at these sizes."""
    from pipelines.data.glue import get_glue_task, split_file

    path = Path(glue_dir) / get_glue_task(name).dir_name / split_file(name, "train")
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _glue_job(log: ExperimentLog, arm: str, model: str, over: list[str], name: str, glue_dir: str, seeds: int,
              root: Path, finetune_recipe) -> Job:
    """One arm's fine-tuning of one task x seeds (one stage), as the command line that runs it."""
    stage, arm_root = f"glue/{arm}/{name}", root / "glue" / arm
    words = ["finetune", "--task", f"glue/{name}", "--model", model, "--glue_dir", glue_dir, "--seeds", seeds,
             "--output_dir", arm_root, *(["--recipe", finetune_recipe] if finetune_recipe else []), *over]
    again = ["training.overwrite_output_dir=true"] if log.interrupted(stage) else []
    return Job(stage, _command(*words), [str(w) for w in words + again], finetune_recipe or "glue",
               arm_root / name / "finetune.log", arm_root / name / "eval_results.json")


def _summary(path: Path) -> dict:
    """A finished fine-tuning's summary from its eval_results.json (median/mean/std per metric)."""
    import json

    return {k: v for k, v in json.loads(path.read_text()).items() if k not in ("task", "model", "exported")}


def _glue_stage(log: ExperimentLog, job: Job, model: str, over: list[str], name: str, glue_dir: str, seeds: int,
                root: Path, finetune_recipe) -> None:
    """The stage in this process (--jobs 1, or the one arm of a task left to run)."""
    from pipelines.commands.finetune import run_glue

    again = ["training.overwrite_output_dir=true"] if log.interrupted(job.stage) else []
    arm_root = root / "glue" / job.stage.split("/")[1]
    with log.stage(job.stage, job.command, job.recipe) as result:
        _fresh_accelerate()
        result.update(run_glue(f"glue/{name}", model, glue_dir, finetune_recipe, over + again, str(arm_root),
                               seeds)[name])


def _report_stage(log: ExperimentLog, root: Path, summaries: dict, recipe) -> dict:
    from pipelines.runs.report import build_report
    from pipelines.runs.report.experiment import comparison, comparison_markdown

    config = recipe.model.config
    shape = (config.get("num_hidden_layers"), config.get("hidden_size"))
    comp = comparison(summaries, shape)
    with log.stage("report", _command("report", root), None) as result:
        log.data["comparison"] = comp
        log.save()  # the report page reads the comparison from experiment.json
        table = comparison_markdown(comp)
        result.update(page=str(build_report(root)), table=str(root / "experiment.md"))
    # after the stage closed, so its own row reads done with its time (the stage reruns every time)
    atomic_write_text(root / "experiment.md", _markdown(log, table))
    print(table)
    print(f"experiment: {root} ({log.data['wall_time_s'] / 60:.1f} min of wall time)")
    return comp


def _markdown(log: ExperimentLog, table: str) -> str:
    s = log.data["settings"]
    rows = "\n".join(f"| {name} | {st.get('status')} | {st.get('wall_time_s', 0) / 60:.1f} | `{st.get('command')}` |"
                     for name, st in log.stages.items())
    return (f"# Experiment: {s['recipe']}, budget {s['budget']}, {s['seeds']} seeds\n\n{table}\n\n"
            f"Wall time: {log.data.get('wall_time_s', 0) / 60:.1f} min (stages run side by side counted once).\n\n"
            f"| stage | status | minutes | command |\n|---|---|---|---|\n{rows}\n")
