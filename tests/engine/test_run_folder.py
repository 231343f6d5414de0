"""One output folder, one run: run.json identity, overwrite_output_dir, the .lock (issue #13)."""

import json
import subprocess
import sys

import pytest
from conftest import REPO, TINY_BERT, reset_accelerate
from test_cli_errors import assert_one_line_error, run_cli

from pipelines.atomic import atomic_write_json
from pipelines.config import load_recipe, recipe_to_dict
from pipelines.errors import LmforgeError
from pipelines.runs.run_folder import claim_output_dir, clear_output_dir, run_identity


def _recipe(out, *extra):
    return load_recipe("bert-tiny", TINY_BERT + [f"training.output_dir={out}", *extra])


def _train(out, *extra):
    from pipelines.engine.loop import train
    from tasks.base import get_task

    reset_accelerate()
    recipe = _recipe(out, "training.max_steps=2", *extra)
    return train(get_task(recipe.task)(recipe), recipe)


def _steps(out):
    return [json.loads(line)["step"] for line in open(out / "metrics.jsonl") if '"lr"' in line]


def test_another_experiment_is_refused_before_its_tokenizer_is_reused(tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "run"
    _train(out, "tokenizer.vocab_size=600")
    (out / "notes.txt").write_text("mine")
    metrics = (out / "metrics.jsonl").read_text()
    with pytest.raises(LmforgeError) as err:
        _train(out, "tokenizer.vocab_size=2000")
    assert str(err.value) == (f"{out} holds a run of recipe bert-tiny with tokenizer.vocab_size=600; this recipe has "
                              "2000: choose another training.output_dir, or set training.overwrite_output_dir=true")
    assert (out / "metrics.jsonl").read_text() == metrics  # nothing of the refused run was written

    _train(out, "tokenizer.vocab_size=2000", "training.overwrite_output_dir=true")
    assert len(AutoTokenizer.from_pretrained(out / "tokenizer")) > 600  # trained afresh, not the old one
    assert _steps(out) == [1, 2]  # one run's metrics
    assert (out / "notes.txt").read_text() == "mine"  # never lmforge's to delete
    assert json.loads((out / "run.json").read_text())["identity"]["tokenizer.vocab_size"] == 2000

    with pytest.raises(LmforgeError, match="already holds a run of recipe bert-tiny .*resume_from_checkpoint=latest"):
        _train(out, "tokenizer.vocab_size=2000")  # the same recipe from scratch would mix two runs
    claim_output_dir(_recipe(out, "tokenizer.vocab_size=2000", "training.resume_from_checkpoint=latest",
                             "training.max_steps=10", "training.logging_steps=5"))  # a resume (even longer) is fine


def test_mismatch_is_one_cli_line_before_any_tokenizer(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    recipe = _recipe(out, "tokenizer.vocab_size=600")
    atomic_write_json(out / "run.json", {"recipe": "bert-tiny", "identity": run_identity(recipe_to_dict(recipe))})
    proc = run_cli("pretrain", "bert-tiny", *TINY_BERT, "tokenizer.vocab_size=2000", "training.max_steps=2",
                   f"training.output_dir={out}")
    assert_one_line_error(proc, f"{out} holds a run of recipe bert-tiny with tokenizer.vocab_size=600",
                          "this recipe has 2000", "training.overwrite_output_dir=true")
    assert not (out / "tokenizer").exists()


def test_a_second_run_into_a_busy_folder_fails_at_once(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from pipelines.runs.run_folder import "
         "lock_output_dir; lock_output_dir(Path(sys.argv[1])); print('locked', flush=True); sys.stdin.read()",
         str(out)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = run_cli("pretrain", "bert-tiny", *TINY_BERT, "training.max_steps=2", f"training.output_dir={out}")
        assert_one_line_error(proc, f"{out} is in use by another lmforge run (pid {holder.pid})")
        assert not (out / "tokenizer").exists() and not (out / "metrics.jsonl").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_overwrite_removes_only_what_lmforge_wrote(tmp_path):
    ours = ["tokenizer/", "checkpoints/", "final/", "final-generator/", ".final.tmp123/", "metrics.jsonl",
            "results.json", "eval_results.json", "recipe.json", "run.json"]
    theirs = ["notes.txt", "data/", "final_notes/", "finals.txt", ".env", "wandb/"]
    for name in ours + theirs:
        path = tmp_path / name.rstrip("/")
        if name.endswith("/"):
            path.mkdir()
            (path / "x").write_text("x")
        else:
            path.write_text("x")
    assert sorted(clear_output_dir(tmp_path)) == sorted(ours)
    assert sorted(p.name + ("/" if p.is_dir() else "") for p in tmp_path.iterdir()) == sorted(theirs)


def test_identity_fields():
    identity = run_identity(recipe_to_dict(load_recipe("bert-tiny")))
    for key in ("task", "tokenizer.vocab_size", "model.family", "model.config.hidden_size", "data.corpus",
                "objective.mlm_probability", "training.learning_rate", "training.seed",
                "training.per_device_train_batch_size", "training.gradient_accumulation_steps"):
        assert key in identity, key
    for key in ("name", "training.output_dir", "training.resume_from_checkpoint", "training.overwrite_output_dir",
                "training.max_steps", "training.report_to", "training.run_name", "training.logging_steps",
                "training.eval_steps", "training.save_steps", "training.dataloader_num_workers", "data.prepared_dir",
                "data.num_proc"):
        assert key not in identity, key


def test_prepare_then_pretrain_and_older_folders(tmp_path):
    # `prepare` pins only the tokenizer fields: pretraining with another batch size may follow it
    claim_output_dir(_recipe(tmp_path / "a"), training=False)
    claim_output_dir(_recipe(tmp_path / "a", "training.per_device_train_batch_size=8"))
    with pytest.raises(LmforgeError, match="training.per_device_train_batch_size=8; this recipe has 16"):
        claim_output_dir(_recipe(tmp_path / "a"))
    with pytest.raises(LmforgeError, match="tokenizer.vocab_size=1000; this recipe has 700"):
        claim_output_dir(_recipe(tmp_path / "a", "tokenizer.vocab_size=700"), training=False)
    # a folder of an earlier lmforge (recipe.json, no run.json) is compared through its recipe.json
    old = tmp_path / "b"
    (old / "tokenizer").mkdir(parents=True)
    (old / "recipe.json").write_text(json.dumps(recipe_to_dict(_recipe(old, "data.max_seq_length=32"))))
    with pytest.raises(LmforgeError, match="data.max_seq_length=32; this recipe has 64"):
        claim_output_dir(_recipe(old))
    # lmforge outputs with nothing saying which recipe: refused unless resumed or overwritten
    bare = tmp_path / "c"
    (bare / "tokenizer").mkdir(parents=True)
    with pytest.raises(LmforgeError, match="holds tokenizer/ of an lmforge run but no run.json"):
        claim_output_dir(_recipe(bare))
    claim_output_dir(_recipe(bare, "training.resume_from_checkpoint=latest"))
    with pytest.raises(LmforgeError, match="would delete the checkpoint"):
        claim_output_dir(_recipe(bare, "training.resume_from_checkpoint=latest", "training.overwrite_output_dir=true"))


def test_a_finished_process_leaves_no_process_id_in_the_lock(tmp_path):
    import subprocess
    import sys

    code = ("from pathlib import Path; from pipelines.runs.run_folder import lock_output_dir; "
            f"lock_output_dir(Path({str(tmp_path)!r})); print(open({str(tmp_path / '.lock')!r}).read().strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().isdigit()  # held: the writer's pid
    assert (tmp_path / ".lock").read_text() == ""  # after the process ended: empty
