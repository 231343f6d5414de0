"""`experiment` (issue #21): tokenizer -> prepare -> pretrain under a time budget -> GLUE x seeds for the
pretrained model and the random-init baseline -> report, in one folder with experiment.json; a finished
stage is never redone, an interrupted one (SIGKILL) continues from its checkpoint, and other settings
for the same folder are refused. Tiny shapes and budgets, a synthetic SST-2-shaped task."""

import json
import signal
import subprocess
import time

import pytest
from conftest import REPO, synthetic_glue
from tiny_run import cli_command, cli_env, strict_json_lines

TINY = ["model.config.hidden_size=32", "model.config.num_hidden_layers=2", "model.config.num_attention_heads=2",
        "model.config.intermediate_size=64", "model.config.max_position_embeddings=64", "tokenizer.vocab_size=1000",
        "data.max_seq_length=64", "training.per_device_train_batch_size=16", "training.logging_steps=1",
        "training.eval_steps=0", "training.max_eval_batches=2", "training.save_steps=3",
        "training.mixed_precision=no"]
FINETUNE = ["--finetune", "training.max_steps=12", "--finetune", "training.per_device_train_batch_size=16"]


def experiment(glue, out, budget, *extra, wait=True):
    args = cli_command("experiment", "bert-mini-cram", "--budget", budget, "--glue_dir", str(glue), "--output_dir",
                       str(out), *FINETUNE, *extra, *TINY)
    if not wait:
        return subprocess.Popen(args, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(args, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)


def stages(out) -> dict:
    return json.loads((out / "experiment.json").read_text())["stages"]


@pytest.fixture(scope="module")
def glue(tmp_path_factory):
    return synthetic_glue(tmp_path_factory.mktemp("glue"))


def test_one_command_runs_every_stage_and_a_rerun_redoes_none(tmp_path, glue):
    out = tmp_path / "exp"
    proc = experiment(glue, out, "4s", "--seeds", "2", "--jobs", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = stages(out)
    assert list(done) == ["corpus", "prepare", "pretrain", "glue/pretrained/sst2", "glue/random_init/sst2", "report"]
    assert all(s["status"] == "done" and s["attempts"] == 1 and s["wall_time_s"] > 0 for s in done.values())
    assert done["pretrain"]["result"]["ended_by"] == "time_budget"
    # --jobs 2: the two arms side by side, each in its own process with its own log
    a, b = done["glue/pretrained/sst2"], done["glue/random_init/sst2"]
    assert a["started_at"] <= b["finished_at"] and b["started_at"] <= a["finished_at"]
    assert all((out / "glue" / arm / "sst2" / "finetune.log").is_file() for arm in ("pretrained", "random_init"))
    wall = json.loads((out / "experiment.json").read_text())["wall_time_s"]
    assert wall < sum(s["wall_time_s"] for s in done.values())  # overlapping stages counted once
    assert done["pretrain"]["command"].startswith("python -m pipelines pretrain bert-mini-cram")
    assert "training.time_budget=4s" in done["pretrain"]["command"]
    # the corpus is the task's TRAINING text only (dev sentences never reach pretraining)
    corpus = (out / "corpus" / "glue-train.txt").read_text()
    train_rows = (glue / "SST-2" / "train.tsv").read_text().splitlines()[1:]
    assert corpus.count("\n\n") == len(train_rows)
    assert done["corpus"]["result"]["examples"] == {"sst2": len(train_rows)}

    data = json.loads((out / "experiment.json").read_text())
    comp = data["comparison"]
    assert comp["tasks"] == ["sst2"] and set(comp["arms"]) == {"pretrained", "random_init"}
    assert comp["arms"]["pretrained"]["sst2"]["seeds"] == 2
    assert comp["gain"]["sst2"] == pytest.approx(comp["arms"]["pretrained"]["sst2"]["score"]
                                                 - comp["arms"]["random_init"]["sst2"]["score"])
    baseline = json.loads((out / "glue" / "random_init" / "sst2" / "seed-42" / "final" / "config.json").read_text())
    pretrained = json.loads((out / "pretrain" / "final" / "config.json").read_text())
    assert baseline["hidden_size"] == pretrained["hidden_size"] == 32  # the same architecture
    assert "gain: pretrained - random init" in (out / "experiment.md").read_text()
    assert "| running |" not in (out / "experiment.md").read_text()  # the report's own row included
    page = (out / "report" / "index.html").read_text()
    assert 'id="experiment"' in page and str(tmp_path) not in page

    began = time.monotonic()
    again = experiment(glue, out, "4s", "--seeds", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    redone = stages(out)
    assert all(redone[k]["attempts"] == 1 for k in done if k != "report")  # nothing trained again
    assert "resumed" not in again.stdout and time.monotonic() - began < 60

    other = experiment(glue, out, "4s", "--seeds", "3")
    lines = [ln for ln in other.stderr.splitlines() if ln.startswith("lmforge: error:")]
    assert other.returncode == 2 and len(lines) == 1 and "seeds=2" in lines[0] and "--output_dir" in lines[0]


def test_sigkill_in_pretraining_continues_from_its_checkpoint(tmp_path, glue):
    out = tmp_path / "killed"
    proc = experiment(glue, out, "12s", "--baseline", "false", "--seeds", "1", wait=False)
    deadline = time.monotonic() + 300
    ckpts = out / "pretrain" / "checkpoints"
    while time.monotonic() < deadline and proc.poll() is None and not any(ckpts.glob("step-*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert stages(out)["pretrain"]["status"] == "running"
    saved = max(int(p.name.split("-")[1]) for p in ckpts.glob("step-*"))

    again = experiment(glue, out, "12s", "--baseline", "false", "--seeds", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    done = stages(out)
    assert done["corpus"]["attempts"] == done["prepare"]["attempts"] == 1  # finished stages not redone
    assert done["pretrain"]["attempts"] == 2 and done["pretrain"]["status"] == "done"
    assert "training.resume_from_checkpoint=latest" in done["pretrain"]["command"]
    assert f"at step {saved}" in again.stdout
    results = json.loads((out / "pretrain" / "results.json").read_text())
    assert results["ended_by"] == "time_budget" and results["elapsed_s"] >= 12
    steps = [r["step"] for r in strict_json_lines(out / "pretrain" / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, len(steps) + 1))  # one curve, continued from the checkpoint


def test_own_flag_values_with_equals_stay_the_flags_and_overrides_may_follow_flags():
    from pipelines.commands.arguments import normalize
    from pipelines.commands.cli import build_parser

    parser = build_parser()
    argv = ["experiment", "bert-mini-cram", "--budget", "20s", "--finetune", "training.max_steps=30",
            "training.eval_steps=100", "--max_steps", "5"]
    args = parser.parse_args(normalize(argv, parser))
    assert args.recipe == "bert-mini-cram" and args.budget == "20s"
    assert args.finetune == ["training.max_steps=30"]
    assert args.overrides == ["training.eval_steps=100", "training.max_steps=5"]


def test_a_distilled_student_is_a_third_arm(tmp_path, glue):
    """DISTILL=student-tiny: DistilBERT-style distillation of the pretrained model (under the same budget,
    on the same corpus; the cosine term dropped where the widths differ), fine-tuned beside the others."""
    out = tmp_path / "distilled"
    proc = experiment(glue, out, "3s", "--baseline", "false", "--seeds", "1", "--distill", "student-tiny",
                      "--jobs", "1")  # in this process, one arm after the other
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = stages(out)
    assert list(done) == ["corpus", "prepare", "pretrain", "distill", "glue/pretrained/sst2", "glue/distilled/sst2",
                          "report"]
    assert "objective.alpha_cos=0" in done["distill"]["command"]  # student-tiny is 128 wide, the teacher 32
    assert f"data.corpus={(out / 'corpus' / 'glue-train.txt').resolve()}" in done["distill"]["command"]
    student = json.loads((out / "glue" / "distilled" / "sst2" / "final" / "config.json").read_text())
    assert student["hidden_size"] == 128 and student["num_hidden_layers"] == 2
    assert set(json.loads((out / "experiment.json").read_text())["comparison"]["arms"]) == {"pretrained", "distilled"}


def test_a_recipe_with_warmup_steps_becomes_a_budgeted_run():
    from pipelines.commands.experiment import budget_defaults
    from pipelines.config import load_recipe

    over = budget_defaults(load_recipe("bert-tiny"))  # warmup_steps 40 of max_steps 400
    assert over == ["training.max_steps=100000000", "training.warmup_steps=0", "training.warmup_ratio=0.1"]
    assert load_recipe("bert-tiny", over + ["training.time_budget=1m"]).training.time_budget == "1m"


def test_side_by_side_jobs_mark_each_stage_and_name_the_one_that_failed(tmp_path):
    """experiment_jobs.run_jobs with real child processes: the job that succeeds is done with its
    result, the one that fails stays running (the next run redoes it) and is named in one error line."""
    from pipelines.commands.experiment_jobs import Job, run_jobs
    from pipelines.errors import LmforgeError
    from pipelines.runs.experiment_log import ExperimentLog

    log = ExperimentLog(tmp_path, {"recipe": "x"})
    (tmp_path / "good.json").write_text(json.dumps({"accuracy": 0.75}))
    good = Job("glue/pretrained/rte", "python -m pipelines recipes", ["recipes"], "glue", tmp_path / "good.log",
               tmp_path / "good.json")
    bad = Job("glue/random_init/rte", "python -m pipelines finetune --task glue/nope", ["finetune", "--task",
              "glue/nope", "--model", str(tmp_path)], "glue", tmp_path / "bad" / "finetune.log", tmp_path / "no.json")
    with pytest.raises(LmforgeError) as err:
        run_jobs(log, [good, bad], 2, lambda path: json.loads(path.read_text()))
    assert log.stages["glue/pretrained/rte"]["status"] == "done"
    assert log.stages["glue/pretrained/rte"]["result"] == {"accuracy": 0.75}
    assert log.stages["glue/random_init/rte"]["status"] == "running"
    message = str(err.value)
    assert "glue/random_init/rte (exit 2: lmforge: error:" in message and "glue/pretrained/rte" not in message
    assert "glue-budget" in good.log.read_text()  # the child's output went to its log


def test_a_compiled_recipe_without_a_cpp_compiler_stops_before_any_stage(tmp_path, glue):
    # modernbert-mini-cram (the default) compiles: a machine without g++/clang++ is told so in one line
    # before the corpus, tokenizer or pretraining is made, not an hour into the run
    out = tmp_path / "exp"
    args = cli_command("experiment", "bert-mini-cram", "--budget", "4s", "--glue_dir", str(glue), "--output_dir",
                       str(out), *TINY, "training.torch_compile=true")
    proc = subprocess.run(args, cwd=REPO, env={**cli_env(), "CXX": "lmforge-no-such-compiler"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "training.torch_compile=true needs a C++ compiler" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
