"""`finetune`: run a checkpoint through every requested GLUE task, or a summarization / translation
task, with the one training engine; write each run's results JSON and print the scores.

    python -m pipelines finetune --task glue --model runs/bert-tiny/final --glue_dir GLUE
    python -m pipelines finetune --task summarization --model runs/t5-tiny/final --data news.jsonl
    make finetune TASK=summarization MODEL=runs/bart-tiny/final DATA=news.jsonl

Which recipe suits a checkpoint is the tasks' decision (tasks/finetuning/glue_t5.py and squad_t5.py:
text-to-text for T5, a head otherwise); the driver only reads the checkpoint's model_type.

Default output: runs/finetune/<model label>/<task> (pipelines/runs/run_folder.py, default_output_root).
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.atomic import atomic_write_json
from pipelines.config import load_recipe
from pipelines.errors import LmforgeError
from pipelines.runs.run_folder import default_output_root

SEQ2SEQ_RECIPE = "summarization"
# the papers' other benchmarks: --task -> (recipe, what the task name fixes); SQuAD on T5: squad-t5
DOWNSTREAM = {
    "squad": ("squad", []),
    "squad_v2": ("squad", ["objective.version_2_with_negative=true"]),
    "swag": ("swag", []),
    "race": ("race", []),
    "ner": ("ner", []),
}


def resolve_model(model: str, flag: str = "--model") -> str:
    """A checkpoint folder, a pretrain recipe name whose export exists (runs/<name>/final), or a Hub name."""
    if Path(model).is_dir():
        if not (Path(model) / "config.json").exists():
            raise LmforgeError(f"{flag} {model}: folder has no config.json (not a save_pretrained folder)")
        return model
    exported = Path("runs") / model / "final"
    if (exported / "config.json").exists():
        return str(exported)
    if Path(model).suffix or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise LmforgeError(f"{flag} {model}: no such checkpoint folder")
    return model  # a Hub name: from_pretrained reports it if it cannot be had


def glue_task_list(spec: str, glue_dir: str | None) -> list[str]:
    from pipelines.data.glue import GLUE_TASKS, get_glue_task, glue_tasks_present

    if spec.startswith("glue/"):
        return [get_glue_task(spec.split("/", 1)[1]).name]
    if glue_dir:
        if not Path(glue_dir).is_dir():
            raise LmforgeError(f"--glue_dir {glue_dir}: no such folder")
        found = glue_tasks_present(glue_dir)
        if not found:
            raise LmforgeError(f"--glue_dir {glue_dir}: no GLUE task folder with train.tsv and dev.tsv")
        return found
    return list(GLUE_TASKS)


def run_finetune(task: str, model: str, glue_dir=None, data=None, recipe_name=None, overrides=(), output_dir=None,
                 seeds: int = 1, init_from: str | None = None):
    """Fine-tune `model` on `task` (glue, glue/<name>, summarization, seq2seq...); return the metrics.
    `init_from`: RTE, MRPC and STS-B start from this fine-tuned (MNLI) checkpoint instead."""
    task_family(task)  # an unknown task fails before the checkpoint is looked at
    path = resolve_model(model)
    if seeds != 1 and not (task.startswith("glue") or task in DOWNSTREAM):
        raise LmforgeError(f"--seeds {seeds}: several seeds are supported for GLUE and {', '.join(DOWNSTREAM)} only")
    if init_from and not task.startswith("glue"):
        raise LmforgeError(f"--init_from {init_from}: starting from a fine-tuned checkpoint is for GLUE tasks only")
    if recipe_name:
        check_recipe_fits(task, recipe_name)
    if task == "summarization" or task.startswith("seq2seq"):
        return run_seq2seq(task, path, data, recipe_name, list(overrides), output_dir)
    if task in DOWNSTREAM:
        return run_downstream(task, path, data, recipe_name, list(overrides), output_dir, seeds)
    return run_glue(task, path, glue_dir, recipe_name, list(overrides), output_dir, seeds, init_from)


def finetune_tasks() -> list[str]:
    """What --task accepts (make finetune TASK=): benchmarks, not recipe names."""
    return ["glue", "glue/<task>", *DOWNSTREAM, "summarization"]


# --task family -> the recipe objectives (a recipe's `task:`) that can run it
RECIPE_TASKS = {"glue": ("glue", "glue-t5"), "squad": ("squad", "squad-t5"), "squad_v2": ("squad", "squad-t5"),
                "swag": ("multiple-choice",), "race": ("multiple-choice",), "ner": ("ner",),
                "summarization": ("seq2seq",)}


def task_family(task: str) -> str:
    """glue/<t> -> glue, seq2seq* -> summarization; an unknown --task is one line (a recipe name named as such)."""
    from pipelines.config import RECIPE_DIR

    family = "glue" if task.startswith("glue/") else "summarization" if task.startswith("seq2seq") else task
    if family in RECIPE_TASKS:
        return family
    hint = ""
    if (RECIPE_DIR / f"{task}.yaml").is_file():  # `glue-t5`, `distill-kd`: recipes, not tasks
        hint = f" ('{task}' is a recipe: name what to fine-tune on with --task and pass --recipe {task})"
    raise LmforgeError(f"--task {task}: expected {', '.join(finetune_tasks())}{hint}")


def check_recipe_fits(task: str, recipe_name: str) -> None:
    """--recipe must train what --task asks for: `--task glue/sst2 --recipe squad` is one line, not a
    params error about a missing glue_task field."""
    family = task_family(task)
    objective = load_recipe(recipe_name).task
    if objective not in RECIPE_TASKS[family]:
        raise LmforgeError(f"--recipe {recipe_name} runs objective '{objective}', which cannot run --task {task}; "
                           f"--task {family} takes a recipe of {' or '.join(RECIPE_TASKS[family])} "
                           "(see `python -m pipelines recipes`)")


def init_from_overrides(init_from: str | None, task: str, names: list[str]) -> dict[str, str]:
    """{task: 'objective.init_from=<abs path>'} for the tasks RoBERTa starts from MNLI (rte, mrpc, stsb)."""
    from tasks.finetuning.init_from import INIT_FROM_TASKS

    if not init_from:
        return {}
    folder = resolve_model(init_from, "--init_from")
    starts = [n for n in names if n in INIT_FROM_TASKS]
    if not starts:
        raise LmforgeError(f"--init_from {init_from}: only {', '.join(INIT_FROM_TASKS)} start from it (RoBERTa's "
                           f"practice), and --task {task} runs {', '.join(names)}; to start another task from a "
                           "fine-tuned checkpoint, pass objective.init_from=<folder>")
    where = os.path.abspath(folder) if Path(folder).is_dir() else folder  # recipe.json works from anywhere
    return {n: f"objective.init_from={where}" for n in starts}


def run_glue(task: str, path: str, glue_dir=None, recipe_name=None, overrides=(), output_dir=None,
             seeds: int = 1, init_from: str | None = None) -> dict:
    """One run per GLUE task (per seed: training.seed, +1, ... in <task>/seed-<s> when seeds > 1);
    writes eval_results.json (with the evaluation each export holds) per run and per task, and
    glue_results.json, prints the table."""
    from tasks.finetuning.common import checkpoint_config, family_override
    from tasks.finetuning.glue_t5 import glue_recipe_for
    from tasks.finetuning.seeds import best_seed, seed_list, seed_summary

    if seeds < 1:
        raise LmforgeError(f"--seeds {seeds}: must be >= 1")
    names = glue_task_list(task, glue_dir)
    recipe_name = recipe_name or glue_recipe_for(checkpoint_config(path).model_type)
    root = Path(output_dir or default_output_root(path, overrides))
    starts = init_from_overrides(init_from, task, names)
    family = family_override(path)
    summary = {}
    for name in names:
        fixed = [f"objective.glue_task={name}", f"model.name_or_path={path}", *family,
                 f"training.output_dir={root / name}", f"name={recipe_name}-{name}"]
        if glue_dir:
            fixed.append(f"objective.glue_dir={os.path.abspath(glue_dir)}")
        fixed += [starts[name]] if name in starts else []
        recipe = load_recipe(recipe_name, fixed + list(overrides))
        per_seed, out_dirs, exported = {}, {}, {}
        for seed in seed_list(recipe.training.seed, seeds):
            out_dirs[seed] = root / name / f"seed-{seed}" if seeds > 1 else root / name
            recipe = load_recipe(recipe_name, fixed + list(overrides) +
                                 [f"training.seed={seed}", f"training.output_dir={out_dirs[seed]}"])
            metrics, exported[seed] = train_and_report(recipe)
            per_seed[seed] = {k: v for k, v in metrics.items() if not k.startswith("loss")}
            if seeds > 1:
                atomic_write_json(out_dirs[seed] / "eval_results.json", {"task": name, "model": path, "seed": seed,
                                                                         **per_seed[seed], "exported": exported[seed]})
        summary[name] = per_seed[seed] if seeds == 1 else seed_summary(per_seed)
        which = exported[seed] if seeds == 1 else {str(s): e for s, e in exported.items()}
        atomic_write_json(root / name / "eval_results.json", {"task": name, "model": path, **summary[name],
                                                              "exported": which})
        if glue_dir and recipe.task == "glue" and _main_process():  # test files present: the submission too
            from pipelines.data.glue import get_glue_task
            from tasks.finetuning.submission import write_submission

            chosen = best_seed(per_seed, get_glue_task(name).metrics[0])
            write_submission(out_dirs[chosen] / "final", name, glue_dir, root / "submission",
                             recipe.data.max_seq_length)
    atomic_write_json(root / "glue_results.json", summary)
    print(glue_table(summary))
    if (root / "submission").is_dir():
        print(f"GLUE submission files: {root / 'submission'}" + (" (best dev seed per task)" if seeds > 1 else ""))
    print(f"results: {root}")
    return summary


def run_downstream(task: str, path: str, data: str | None, recipe_name: str | None = None, overrides=(),
                   output_dir: str | None = None, seeds: int = 1) -> dict:
    """SQuAD, SWAG, RACE or NER: one run per seed (training.seed, +1, ...; <out>/seed-<s> when seeds > 1);
    eval_results.json with the metrics of the evaluation each export holds (median / mean / std over
    seeds), and the scores printed."""
    from tasks.finetuning.common import family_override
    from tasks.finetuning.seeds import seed_list, seed_summary

    if seeds < 1:
        raise LmforgeError(f"--seeds {seeds}: must be >= 1")
    if not data:
        raise LmforgeError(f"--task {task}: no data; pass --data <folder in the official layout, or a Hub name> "
                           f"(make finetune TASK={task} MODEL=... DATA=<folder>)")
    recipe_name = recipe_name or downstream_recipe(task, path)
    root = Path(output_dir or default_output_root(path, overrides) / task)
    where = os.path.abspath(data) if Path(data).exists() else data  # recipe.json works from anywhere
    fixed = [f"model.name_or_path={path}", *family_override(path), f"objective.data={where}",
             f"name={recipe_name}-{task}", *DOWNSTREAM[task][1]]
    first = load_recipe(recipe_name, fixed + list(overrides) + [f"training.output_dir={root}"]).training.seed
    per_seed, exported = {}, {}
    for seed in seed_list(first, seeds):
        out = root / f"seed-{seed}" if seeds > 1 else root
        recipe = load_recipe(recipe_name, fixed + list(overrides) + [f"training.seed={seed}",
                                                                      f"training.output_dir={out}"])
        metrics, exported[seed] = train_and_report(recipe)
        per_seed[seed] = {k: v for k, v in metrics.items() if not k.startswith("loss")}
    summary = per_seed[first] if seeds == 1 else seed_summary(per_seed)
    which = exported[first] if seeds == 1 else {str(s): e for s, e in exported.items()}
    atomic_write_json(root / "eval_results.json", {"task": task, "model": path, "data": where, **summary,
                                                   "exported": which})
    shown = summary if seeds == 1 else summary["median"]
    scores = [f"{k}={100 * v:.2f}" for k, v in shown.items() if not k.endswith(("_thresh", "total"))]
    print(f"{task}: " + "  ".join(scores) + ("" if seeds == 1 else f"  [median of {seeds} seeds]"))
    print(f"results: {root}")
    return summary


def downstream_recipe(task: str, path: str) -> str:
    """The recipe of a SQuAD / SWAG / RACE / NER task for checkpoint `path`: SQuAD on a T5 checkpoint is
    text-to-text (tasks/finetuning/squad_t5.py decides from its model_type), the rest a head."""
    if task in ("squad", "squad_v2"):
        from tasks.finetuning.common import checkpoint_config
        from tasks.finetuning.squad_t5 import squad_recipe_for

        return squad_recipe_for(checkpoint_config(path).model_type)
    return DOWNSTREAM[task][0]


def run_predict_squad(task: str, model: str, data: str | None, output_dir: str | None = None) -> Path:
    """predictions.json ({id: answer}) and, for squad_v2 with a span-extracting model, null_odds.json
    ({id: null minus best span score}) in the official formats, for the dev file of `data` (or a JSON
    file), from a fine-tuned export; with the official scores when the file has answers. A T5 export
    answers by generating (squad-t5, no null odds). The export's own run settings (recipe.json beside
    it: length, doc stride, answer length, threshold) are used when present."""
    import torch

    from pipelines.data.squad import load_squad
    from tasks.base import get_task
    from tasks.finetuning.common import checkpoint_config
    from tasks.finetuning.squad import with_threshold
    from tasks.finetuning.squad_eval import squad_v1_scores, squad_v2_scores
    from tasks.finetuning.squad_t5 import squad_recipe_for

    if not data:
        raise LmforgeError(f"--task {task} --do_predict: pass --data <folder with the dev file, or the JSON file>")
    export = resolve_model(model)
    v2 = task == "squad_v2"
    out = Path(output_dir or (Path(export).parent if Path(export).is_dir() else Path("runs")) / "predictions")
    where = os.path.abspath(data) if Path(data).exists() else data
    recipe_name = squad_recipe_for(checkpoint_config(export).model_type)
    recipe = load_recipe(recipe_name, [f"model.name_or_path={export}", f"objective.data={where}",
                                       f"objective.version_2_with_negative={str(v2).lower()}",
                                       f"training.output_dir={out}", *_predict_settings(export)])
    qa = get_task(recipe.task)(recipe)
    tokenizer = qa.load_tokenizer()
    qa.setup(tokenizer)
    examples = load_squad(where, "dev", v2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch_size = recipe.training.per_device_eval_batch_size
    null_odds = None
    if recipe_name == "squad-t5":  # the generated text is the answer
        predictions = qa.predict(qa.build_model(tokenizer).to(device), examples, batch_size=batch_size)
        scores = qa.scores(examples, predictions)
    else:
        from transformers import AutoModelForQuestionAnswering

        net = AutoModelForQuestionAnswering.from_pretrained(export).to(device)
        answers, null_odds = qa.predict(net, examples, batch_size=batch_size)
        threshold = qa.params.null_score_diff_threshold
        predictions = with_threshold(answers, null_odds, threshold) if v2 else answers
        scores = squad_v2_scores(examples, answers, null_odds, threshold) if v2 else squad_v1_scores(examples, answers)
    atomic_write_json(out / "predictions.json", predictions)
    if v2 and null_odds is not None:
        atomic_write_json(out / "null_odds.json", null_odds)
    if all(e["answers"] or e["is_impossible"] for e in examples):  # a dev file: score it
        atomic_write_json(out / "eval_results.json", {"task": task, "model": export, "data": where, **scores})
        print(f"{task}: " + "  ".join(f"{k}={100 * v:.2f}" for k, v in scores.items()
                                      if not k.endswith(("_thresh", "total"))))
    print(f"predictions: {out / 'predictions.json'}")
    return out


# the settings an export was fine-tuned and evaluated with, which prediction keeps (recipe.json)
PREDICT_SETTINGS = ("doc_stride", "max_answer_length", "n_best_size", "null_score_diff_threshold", "no_answer_text",
                    "num_beams")


def _predict_settings(export: str) -> list[str]:
    """Overrides repeating the input length and answer settings of the run that wrote `export`."""
    import json

    recipe_json = Path(export).parent / "recipe.json"
    if not recipe_json.is_file():
        return []
    saved = json.loads(recipe_json.read_text())
    return [f"data.max_seq_length={saved['data']['max_seq_length']}"] + [
        f"objective.{k}={saved['objective'][k]}" for k in PREDICT_SETTINGS if k in saved["objective"]]


def run_predict(task: str, model: str, glue_dir: str | None, output_dir: str | None = None) -> list[Path]:
    """--do_predict: GLUE submission files from an already fine-tuned export (a <task>/final folder,
    with --task glue/<task>) or from a finetune output folder holding <task>/final exports."""
    import json

    from pipelines.data.glue import get_glue_task
    from tasks.finetuning.submission import write_submission

    if not glue_dir or not Path(glue_dir).is_dir():
        raise LmforgeError(f"--do_predict needs --glue_dir with the GLUE test files (got {glue_dir})")
    folder = Path(model)
    if not folder.is_dir():
        raise LmforgeError(f"--model {model}: no such folder (a fine-tuned export or a finetune output folder)")
    if (folder / "config.json").exists():
        if not task.startswith("glue/"):
            raise LmforgeError(f"--model {model} is one export: name its task with --task glue/<task>")
        exports, out = {get_glue_task(task.split("/", 1)[1]).name: folder}, folder.parent / "submission"
    else:
        exports = {n: folder / n / "final" for n in glue_task_list(task, None)
                   if (folder / n / "final" / "config.json").exists()}
        out = folder / "submission"
        if not exports:
            raise LmforgeError(f"--model {model}: no <task>/final export in it")
    written = []
    for name, export in exports.items():
        recipe_json = export.parent / "recipe.json"  # the length the model was fine-tuned with
        max_length = json.loads(recipe_json.read_text())["data"]["max_seq_length"] if recipe_json.exists() else 128
        written += write_submission(export, name, glue_dir, Path(output_dir or out), max_length)
    if not written:
        raise LmforgeError(f"--glue_dir {glue_dir}: no GLUE test file for {', '.join(exports)}")
    print(f"GLUE submission files ({len(written)}): {written[0].parent}")
    return written


def _main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def run_seq2seq(task: str, path: str, data: str | None, recipe_name: str | None = None, overrides=(),
                output_dir: str | None = None) -> dict:
    """Train `path` on `data` (local file or Hub dataset name); writes eval_results.json, prints ROUGE / BLEU."""
    from tasks.finetuning.common import family_override

    recipe_name = recipe_name or SEQ2SEQ_RECIPE
    root = Path(output_dir or default_output_root(path, overrides) / task.replace("/", "-"))
    fixed = [f"model.name_or_path={path}", *family_override(path), f"training.output_dir={root}",
             f"name={recipe_name}"]
    if data:
        # absolute, so the recipe.json of the run still points at the file from any directory
        fixed.append(f"objective.dataset={os.path.abspath(data) if Path(data).exists() else data}")
    recipe = load_recipe(recipe_name, fixed + list(overrides))
    if not recipe.objective.get("dataset"):
        raise LmforgeError(f"--task {task}: no data; pass --data <file.jsonl|.csv|.json or Hub dataset name> "
                           "(make finetune ... DATA=<file>)")
    metrics = train_metrics(recipe)
    atomic_write_json(root / "eval_results.json", {"task": task, "model": path, "data": recipe.objective["dataset"],
                                                   **metrics})
    print(scores_line(task, metrics))
    print(f"results: {root}")
    return metrics


def train_metrics(recipe) -> dict:
    """The exported evaluation's metrics of one engine run, without the 'eval/' prefix."""
    return train_and_report(recipe)[0]


def train_and_report(recipe) -> tuple[dict, dict | None]:
    """(metrics of the evaluation the export holds, which evaluation that is: None for the last step).
    With objective.export_best (GLUE's default) the export is the best dev evaluation's weights."""
    from pipelines.engine.loop import train
    from tasks.base import get_task

    result = train(get_task(recipe.task)(recipe), recipe)
    if result.exported_evaluation is not None:
        from pipelines.engine.best import summary_line

        print(summary_line(result.exported_evaluation))
        return result.exported_metrics, result.exported_evaluation
    return {k.removeprefix("eval/"): v for k, v in result.eval_metrics.items()}, None


def glue_table(summary: dict[str, dict]) -> str:
    from tasks.finetuning.seeds import seed_table_line

    lines = [f"{'task':8s} {'metrics'}", "-" * 60]
    for task, metrics in summary.items():
        if "seeds" in metrics:
            lines.append(seed_table_line(task, metrics))
            continue
        lines.append(f"{task:8s} " + "  ".join(f"{k}={100 * v:.2f}" for k, v in metrics.items()))
    return "\n".join(lines)


def scores_line(task: str, metrics: dict) -> str:
    """ROUGE as percentages (its 0..1 F-measure x 100), BLEU on its own 0..100 scale."""
    parts = [f"{k}={100 * metrics[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "rougeLsum") if k in metrics]
    parts += [f"{k}={metrics[k]:.2f}" for k in ("bleu", "gen_len", "loss") if k in metrics]
    return f"{task}: " + "  ".join(parts)
