"""Words that say what they are (#23 item 2): distill's STAGE=general|glue/<task> (TASK=pretrain, the older
spelling, still works and names its folder as before), recipes listed by what runs them, and a recipe name
where a task belongs (or a task's recipe given to the wrong command) is one line naming the right command."""

import json
import subprocess

import pytest
from conftest import reset_accelerate, tiny_bert_checkpoint

from pipelines.commands.cli import main
from pipelines.commands.distill import distill_stage

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def _error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lmforge: error: "), err
    return err[0].removeprefix("lmforge: error: ")


def test_stage_and_its_older_spelling():
    assert distill_stage("general", None) == ("general", "--stage")
    assert distill_stage(None, "pretrain") == ("pretrain", "--task")
    assert distill_stage("glue/sst2", "glue/sst2") == ("glue/sst2", "--stage")
    assert distill_stage("general", "pretrain") == ("general", "--stage")  # the same thing, both spellings


@pytest.mark.parametrize("argv, words", [
    ([], "distill: no --stage; pass --stage general (on the corpus) or --stage glue/<task>"),
    (["--stage", "general", "--task", "glue/sst2"], "--stage general and --task glue/sst2 disagree"),
    (["--stage", "glue"], "--stage glue: expected general or glue/<task>"),
    (["--task", "glue"], "--task glue: expected pretrain or glue/<task>"),  # the older flag, its own words
    (["--stage", "general", "--method", "kd"], "--method kd --stage general: not a distillation this tool runs "
                                               "(kd with glue/<task>, distilbert with general"),
])
def test_distill_stage_mistakes_are_one_line(argv, words, capsys, tmp_path):
    base = ["distill", "--method", "tinybert", "--teacher", str(tmp_path), "--student", "student-tiny"]
    assert words in _error(base + argv, capsys)


def test_stage_general_runs_and_names_its_folder(tmp_path, monkeypatch):
    teacher = tiny_bert_checkpoint(tmp_path / "teacher")
    monkeypatch.chdir(tmp_path)
    reset_accelerate()
    assert main(["distill", "--method", "distilbert", "--teacher", str(teacher), "--student", "student-half",
                 "--stage", "general", "data.max_documents=40", "data.max_seq_length=64", "training.max_steps=2",
                 "training.eval_steps=0", "training.save_steps=0", "training.max_eval_batches=1",
                 "training.mixed_precision=no", "training.warmup_steps=0"]) == 0
    out = tmp_path / "runs" / "distill" / "distilbert-general-student-half"
    summary = json.loads((out / "distill_results.json").read_text())
    assert (summary["stage"], summary["task"]) == ("general", "general") and (out / "final" / "config.json").is_file()


@pytest.mark.parametrize("variables, flags", [
    ("STAGE=general", "--stage general"),
    ("STAGE=glue/sst2", "--stage glue/sst2"),
    ("TASK=pretrain", "--task pretrain"),  # the older spelling reaches the command unchanged
])
def test_make_distill_passes_stage_or_the_older_task(variables, flags):
    out = subprocess.run(["make", "-n", "distill", "TEACHER=t", variables], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    command = " ".join(out.stdout.replace("\\\n", " ").split())
    assert f"pipelines distill --method kd --teacher t --student student-tiny {flags}" in command
    assert ("--task" in command) == variables.startswith("TASK")  # make's default TASK (glue) never leaks in


def test_recipes_are_listed_by_what_runs_them(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    sections = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            sections[line] = []
            current = sections[line]
        elif not line.strip().startswith("recipe "):
            current.append(line.split()[0])
    titles = {t.split(":")[0]: names for t, names in sections.items()}
    assert "bert-tiny" in titles["Pretraining recipes"] and "glue" not in titles["Pretraining recipes"]
    assert {"glue", "glue-t5", "squad", "squad-t5", "swag"} <= set(titles["Fine-tuning recipes"])
    assert {"distill-kd", "distill-tinybert-general"} <= set(titles["Distillation recipes"])
    assert titles["Student architectures"] == ["student-albert", "student-half", "student-tiny"]
    assert "make finetune TASK= (--task, what to fine-tune on): glue | glue/<task> | squad | squad_v2 | swag | race " \
           "| ner | summarization" in out


@pytest.mark.parametrize("argv, words", [
    (["finetune", "--task", "glue-t5", "--model", "m"],
     "--task glue-t5: expected glue, glue/<task>, squad, squad_v2, swag, race, ner, summarization ('glue-t5' is a "
     "recipe: name what to fine-tune on with --task and pass --recipe glue-t5)"),
    (["finetune", "--task", "glue/sst2", "--recipe", "squad", "--model", "m"],
     "--recipe squad runs objective 'squad', which cannot run --task glue/sst2; --task glue takes a recipe of glue "
     "or glue-t5"),
    (["finetune", "--task", "squad", "--recipe", "glue", "--model", "m"],
     "--recipe glue runs objective 'glue', which cannot run --task squad; --task squad takes a recipe of squad or "
     "squad-t5"),
    (["pretrain", "glue"], "pretrain glue: 'glue' is a fine-tuning recipe (objective glue); run it with make finetune "
                           "TASK=<task> MODEL=<checkpoint> ARGS='--recipe glue'"),
    (["pretrain", "distill-kd"], "pretrain distill-kd: 'distill-kd' is a distillation recipe (objective distill-kd); "
                                 "run it with make distill"),
])
def test_a_recipe_where_a_task_belongs_is_one_line_naming_the_command(argv, words, capsys):
    assert words in _error(argv, capsys)
