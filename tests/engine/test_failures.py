"""Training that goes wrong: NaN / inf steps, fp16 without a GPU, a recipe changed at resume, and
the metrics log of a resumed run (issue #13)."""

import json
import math

import pytest
import torch
from tiny_run import build_tiny_tokenizer, nan_loss, strict_json_lines, train_tiny

from pipelines.errors import LmforgeError

DIVERGE = ["training.learning_rate=1e6", "training.weight_decay=0.01"]  # decay x(1 - 1e4) a step: overflow


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


def _finite_weights(path) -> bool:
    from safetensors.torch import load_file

    return all(torch.isfinite(v).all() for v in load_file(path).values())


def test_diverging_run_stops_keeps_the_good_checkpoints_and_exports_nothing(tmp_path, tok):
    out = tmp_path / "run"
    with pytest.raises(LmforgeError) as err:
        train_tiny(out, tok, *DIVERGE, "training.max_steps=60", "training.save_steps=2", "training.save_total_limit=2")
    msg = str(err.value)
    assert msg.startswith("step ") and any(w in msg for w in ("is nan", "is inf", "not finite")), msg
    assert "stopped" in msg and "nothing was exported" in msg
    step = int(msg.split()[1].rstrip(":"))
    ckpts = sorted((out / "checkpoints").glob("step-*"))
    assert ckpts, "the checkpoints before the divergence are kept"
    assert f"The last good checkpoint is {ckpts[-1]}" in msg
    assert int(ckpts[-1].name.split("-")[1]) < step
    for c in ckpts:
        assert _finite_weights(c / "model.safetensors"), c
    assert not (out / "final").exists() and not (out / "results.json").exists()
    records = strict_json_lines(out / "metrics.jsonl")
    assert records[-1]["step"] == step and records[-1]["nonfinite"]


def test_skip_policy_skips_counts_and_finishes(tmp_path, tok):
    out = tmp_path / "run"
    train_tiny(out, tok, "training.max_steps=6", "training.nonfinite=skip", patch=nan_loss(lambda n: n == 3))
    records = [r for r in strict_json_lines(out / "metrics.jsonl") if "tokens" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[2]["loss"] is None  # NaN written as null
    assert [r["skipped_steps"] for r in records] == [0, 0, 1, 1, 1, 1]
    assert records[2]["lr"] == records[1]["lr"]  # no scheduler step for the skipped step
    assert _finite_weights(out / "final" / "model.safetensors")


def test_skip_policy_stops_after_too_many_in_a_row(tmp_path, tok):
    out = tmp_path / "run"
    with pytest.raises(LmforgeError, match=r"step 5: loss is nan .*3 non-finite steps in a row"):
        train_tiny(out, tok, "training.max_steps=8", "training.nonfinite=skip", "training.max_skipped_steps=2",
                   patch=nan_loss(lambda n: n >= 3))
    assert not (out / "final").exists()


def test_nan_final_evaluation_is_an_error_not_a_score(tmp_path, tok):
    def eval_nan(task):
        real = task.loss
        task.loss = lambda model, batch: ({k: v * float("nan") for k, v in real(model, batch).items()}
                                          if not model.training else real(model, batch))
    with pytest.raises(LmforgeError, match="final evaluation: eval/loss.* is nan"):
        train_tiny(tmp_path / "run", tok, "training.max_steps=2", patch=eval_nan)
    assert not (tmp_path / "run" / "final").exists()


def test_diverging_glue_finetune_reports_no_accuracy(tmp_path, tok):
    from conftest import synthetic_glue
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from pipelines.commands.finetune import run_finetune

    tokenizer = AutoTokenizer.from_pretrained(tok)
    model_dir = tmp_path / "bert"
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    glue = synthetic_glue(tmp_path / "glue")
    with pytest.raises(LmforgeError, match="is (nan|inf)|not finite"):
        run_finetune("glue/sst2", str(model_dir), glue_dir=str(glue), output_dir=str(tmp_path / "ft"),
                     overrides=[*DIVERGE, "training.max_steps=60", "training.per_device_train_batch_size=16",
                                "training.mixed_precision=no"])
    assert not (tmp_path / "ft" / "sst2" / "eval_results.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is real on a GPU")
def test_fp16_on_a_cpu_is_refused_bf16_is_not(tmp_path):
    from pipelines.config import TrainingSection
    from pipelines.engine.accelerator import make_accelerator

    with pytest.raises(LmforgeError, match="fp16 needs a GPU.*bf16"):
        make_accelerator(TrainingSection(output_dir=str(tmp_path), mixed_precision="fp16"))
    from conftest import reset_accelerate

    reset_accelerate()
    assert make_accelerator(TrainingSection(output_dir=str(tmp_path), mixed_precision="bf16")).native_amp


def test_changed_learning_rate_and_length_at_resume_are_applied_and_named(tmp_path, tok, capsys):
    first = tmp_path / "first"
    train_tiny(first, tok, "training.max_steps=4", "training.save_steps=2")
    state = json.loads((first / "checkpoints" / "step-000002" / "trainer_state.json").read_text())
    assert state["settings"]["learning_rate"] == 1e-3 and state["settings"]["max_steps"] == 4
    capsys.readouterr()
    again = tmp_path / "again"
    train_tiny(again, tok, "training.max_steps=8", "training.learning_rate=2e-3",
               f"training.resume_from_checkpoint={first / 'checkpoints' / 'step-000002'}")
    warning = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("lmforge: warning: resuming")]
    assert len(warning) == 1 and "learning_rate 0.001 -> 0.002" in warning[0] and "max_steps 4 -> 8" in warning[0]
    lr = {r["step"]: r["lr"] for r in strict_json_lines(again / "metrics.jsonl") if "lr" in r}
    # linear decay after 2 warmup steps, on the NEW rate and length: 2e-3 * (8 - 3) / (8 - 2)
    assert lr[3] == pytest.approx(2e-3 * 5 / 6, rel=1e-6)
    assert math.isclose(lr[8], 0.0, abs_tol=1e-12)


def test_resumed_run_logs_each_step_once(tmp_path, tok):
    import shutil

    out = tmp_path / "run"
    train_tiny(out, tok, "training.max_steps=6", "training.save_steps=3")
    shutil.rmtree(out / "final")  # as if killed after step 6, before the export
    (out / "results.json").unlink()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "loss": 1.')  # the torn last line of a killed write
    train_tiny(out, tok, "training.max_steps=6", "training.save_steps=3", "training.resume_from_checkpoint=latest")
    records = strict_json_lines(out / "metrics.jsonl")
    assert [r["step"] for r in records if "tokens" in r] == [1, 2, 3, 4, 5, 6]
    assert sum("eval/loss" in r for r in records) == 1
