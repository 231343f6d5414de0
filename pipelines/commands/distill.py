"""`distill`: a student learns from a teacher folder, with one of three methods, on the one engine.

    python -m pipelines distill --method kd --teacher runs/finetune/.../sst2/final --student student-tiny \\
        --stage glue/sst2 --glue_dir GLUE
    make distill METHOD=tinybert TEACHER=<folder> STUDENT=<recipe or folder> STAGE=general|glue/<task>

STAGE says what the student learns on: `general` (the pretraining corpus, no task; TinyBERT's "general
distillation") or `glue/<task>` (a GLUE task's data; TinyBERT's task stage runs its two steps,
objective.stage=intermediate then prediction, itself). The older spelling `--task pretrain|glue/<task>`
(make TASK=...) still works and names the output folder as it did.
METHOD x STAGE -> recipe (tasks/recipes/distill-*.yaml) and task (tasks/distillation/):
  kd          glue/<task>  distill-kd               logit KD from a fine-tuned teacher
  distilbert  general      distill-distilbert       MLM + soft targets + cosine, from an MLM teacher
  tinybert    general      distill-tinybert-general layer-wise, on the corpus, from any encoder
  tinybert    glue/<task>  distill-tinybert         layer-wise, then prediction layer (two runs)
STUDENT is a recipe whose `model` section describes the student (tasks/recipes/student-*.yaml; the
rest of the config comes from the teacher's), or a checkpoint folder to start from (TinyBERT's task
stage starts from its general student). The tokenizer is always the teacher's.
Output: runs/distill/<method>-<stage>-<student label>/ with distill_results.json (and, for a GLUE task,
glue_results.json, so `make report` puts the student on its leaderboard).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from pipelines.atomic import atomic_write_json
from pipelines.config import load_recipe, recipe_path
from pipelines.errors import LmforgeError

RECIPES = {("kd", "glue"): "distill-kd", ("distilbert", "general"): "distill-distilbert",
           ("tinybert", "general"): "distill-tinybert-general", ("tinybert", "glue"): "distill-tinybert"}
GENERAL = ("general", "pretrain")  # `pretrain`: the older spelling (--task pretrain)


def distill_stage(stage: str | None, task: str | None) -> tuple[str, str]:
    """(stage as given, the flag it came from) of distill's --stage, or of --task (the older spelling)."""
    if stage and task and stage != task and not (stage in GENERAL and task in GENERAL):
        raise LmforgeError(f"distill: --stage {stage} and --task {task} disagree; pass --stage only (--task is its "
                           "older spelling)")
    if not (stage or task):
        raise LmforgeError("distill: no --stage; pass --stage general (on the corpus) or --stage glue/<task> "
                           "(make distill STAGE=...)")
    return (stage, "--stage") if stage else (task, "--task")


def student_source(student: str) -> tuple[dict, str]:
    """(recipe patch, label) of --student: a checkpoint folder, or a recipe's model section."""
    if Path(student).is_dir():
        if not (Path(student) / "config.json").exists():
            raise LmforgeError(f"--student {student}: folder has no config.json (not a save_pretrained folder)")
        from transformers import AutoConfig

        family = AutoConfig.from_pretrained(student).model_type
        return {"model": {"family": family, "name_or_path": os.path.abspath(student), "config": {}}}, \
            Path(student).resolve().parent.name
    from omegaconf import OmegaConf

    recipe = load_recipe(student)
    model = OmegaConf.to_container(OmegaConf.structured(recipe.model), resolve=True)
    return {"model": model}, recipe_path(student).stem


def run_distill(method: str, teacher: str, student: str, stage: str, glue_dir: str | None = None,
                output_dir: str | None = None, overrides=(), flag: str = "--stage") -> dict:
    """`stage`: general (or pretrain, its older name) | glue/<task>; `flag`: how the user spelled it."""
    kind = "general" if stage in GENERAL else "glue" if stage.startswith("glue/") else None
    if kind is None:
        names = "pretrain" if flag == "--task" else "general"
        raise LmforgeError(f"{flag} {stage}: expected {names} or glue/<task> (distillation on the corpus, or on a "
                           "GLUE task's data)")
    if (method, kind) not in RECIPES:
        known = ", ".join(f"{m} with {'general' if k == 'general' else 'glue/<task>'}" for m, k in RECIPES)
        raise LmforgeError(f"--method {method} {flag} {stage}: not a distillation this tool runs ({known})")
    if not (Path(teacher) / "config.json").exists():
        raise LmforgeError(f"--teacher {teacher}: not a checkpoint folder (no config.json)")
    teacher = os.path.abspath(teacher)
    patch, label = student_source(student)
    name = f"{method}-{stage.replace('/', '-')}-{label}"  # as spelled: an older --task pretrain run keeps its folder
    root = Path(output_dir or Path("runs") / "distill" / name)
    fixed = [f"objective.teacher={teacher}", f"tokenizer.name_or_path={teacher}", f"name={name}"]
    if kind == "glue":
        from pipelines.data.glue import get_glue_task

        fixed.append(f"objective.glue_task={get_glue_task(stage.split('/', 1)[1]).name}")
        if glue_dir:
            if not Path(glue_dir).is_dir():
                raise LmforgeError(f"--glue_dir {glue_dir}: no such folder")
            fixed.append(f"objective.glue_dir={os.path.abspath(glue_dir)}")
    recipe_name = RECIPES[(method, kind)]
    if (method, kind) == ("tinybert", "glue"):  # TinyBERT's two runs: intermediate layers, then predictions
        checked = load_recipe(recipe_name, fixed + list(overrides), patch)  # every mistake before the first run
        first = root / "intermediate"
        epochs = checked.objective.get("intermediate_epochs")
        _run(load_recipe(recipe_name, fixed + ["objective.stage=intermediate", f"training.output_dir={first}"]
                         + list(overrides) + ([f"training.num_train_epochs={epochs}"] if epochs else []), patch))
        patch = {"model": {**patch["model"], "name_or_path": str(first / "final"), "config": {}}}
        fixed.append("objective.stage=prediction")
        # the second run starts from the first's student: its embeddings were set there
        overrides = list(overrides) + ["objective.teacher_embeddings=false"]
    recipe = load_recipe(recipe_name, fixed + [f"training.output_dir={root}"] + list(overrides), patch)
    metrics = _run(recipe)
    summary = {"method": method, "stage": "general" if kind == "general" else stage,
               "task": stage,  # the key of older files, as spelled
               "teacher": teacher, "student": student, "teacher_parameters": _parameters(teacher),
               "student_parameters": _parameters(root / "final"),
               **metrics}
    if summary["student_parameters"]:
        summary["parameter_ratio"] = summary["teacher_parameters"] / summary["student_parameters"]
    atomic_write_json(root / "distill_results.json", summary)
    if kind == "glue":  # the student on `make report`'s GLUE leaderboard, next to fine-tuned models
        glue_task = recipe.objective["glue_task"]
        atomic_write_json(root / "glue_results.json", {glue_task: {k: v for k, v in metrics.items()
                                                              if not k.startswith("loss")}})
    print(f"{name}: " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
    print(f"student: {root / 'final'} ({summary['student_parameters']:,} parameters, teacher "
          f"{summary['teacher_parameters']:,})")
    return summary


def _run(recipe) -> dict:
    from pipelines.commands.finetune import train_metrics

    return train_metrics(recipe)


def _parameters(folder) -> int:
    """Parameters stored in a checkpoint folder's safetensors files (no model is built)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                total += math.prod(st.get_slice(key).get_shape())
    return total
