"""SIGTERM (SLURM, cloud preemption) and Ctrl-C during training: a checkpoint at the next step, one
line saying where, exit 128 + the signal; the resume lands on the uninterrupted run's weights."""

import re
import signal
import subprocess
import time

import pytest
import torch
from conftest import REPO
from tiny_run import build_tiny_tokenizer, cli_command, cli_env, overrides, strict_json_lines, train_tiny

STEPS = "training.max_steps=300"


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


def _interrupt(out, tok, sig, tmp_path):
    """Start a CLI training, send `sig` once it has logged a step, return (exit code, stderr)."""
    err_path = tmp_path / f"stderr-{sig.name}.txt"
    with open(err_path, "w") as err:  # a file, not a pipe: the progress bar would fill a pipe and block
        proc = subprocess.Popen(cli_command("pretrain", "bert-tiny", *overrides(out, tok, STEPS)), cwd=REPO,
                                env=cli_env(), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 240
        log = out / "metrics.jsonl"
        while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(sig)
        code = proc.wait(timeout=240)
    return code, err_path.read_text()


def _saved_step(stderr: str, sig_name: str, launcher: bool = False) -> int:
    lines = [ln for ln in stderr.splitlines() if ln.startswith(f"lmforge: stopped by {sig_name}")]
    assert len(lines) == 1, stderr[-3000:]
    assert launcher or "Traceback" not in stderr  # torchrun itself reports the signal with a traceback
    assert "training.resume_from_checkpoint=latest" in lines[0]
    return int(re.search(r"after step (\d+)", lines[0]).group(1))


def test_sigterm_saves_and_the_resume_is_exact(tmp_path, tok):
    from safetensors.torch import load_file

    out = tmp_path / "preempted"
    code, stderr = _interrupt(out, tok, signal.SIGTERM, tmp_path)
    assert code == 143, stderr[-3000:]
    step = _saved_step(stderr, "SIGTERM")
    assert 0 < step < 300
    ckpt = out / "checkpoints" / f"step-{step:06d}"
    assert ckpt.is_dir() and f"saved to {ckpt}" in stderr
    assert not (out / "final").exists()

    train_tiny(out, tok, STEPS, "training.resume_from_checkpoint=latest")
    train_tiny(tmp_path / "straight", tok, STEPS)
    a = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    b = load_file(out / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    steps = [r["step"] for r in strict_json_lines(out / "metrics.jsonl") if "tokens" in r]
    assert steps == list(range(1, 301))


def test_ctrl_c_saves_too(tmp_path, tok):
    out = tmp_path / "interrupted"
    code, stderr = _interrupt(out, tok, signal.SIGINT, tmp_path)
    assert code == 130, stderr[-3000:]
    step = _saved_step(stderr, "SIGINT")
    assert (out / "checkpoints" / f"step-{step:06d}" / "trainer_state.json").exists()


@pytest.mark.slow
def test_sigterm_under_two_processes_saves_every_rank_and_resumes_exactly(tmp_path, tok):
    """The launcher (torchrun) passes SIGTERM to both ranks; they agree on one step, both write
    their RNG state into the one checkpoint, and a 2-process resume lands on the straight run."""
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    accelerate = str(Path(sys.executable).parent / "accelerate")
    env = {**cli_env(), "ACCELERATE_USE_CPU": "true"}

    def launch(out, *extra, popen=False):
        cmd = [accelerate, "launch", "--config_file", str(REPO / "accelerate_configs" / "multi_cpu.yaml"),
               "-m", "pipelines", "pretrain", "bert-tiny",
               *overrides(out, tok, STEPS, "training.per_device_train_batch_size=8"), *extra]
        if popen:
            return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                    stderr=open(tmp_path / "launch-stderr.txt", "w"))
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]

    out = tmp_path / "preempted"
    proc = launch(out, popen=True)
    deadline = time.monotonic() + 240
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().strip()) \
            and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=240)
    stderr = (tmp_path / "launch-stderr.txt").read_text()
    assert code != 0, stderr[-3000:]
    step = _saved_step(stderr, "SIGTERM", launcher=True)
    ckpt = out / "checkpoints" / f"step-{step:06d}"
    assert (ckpt / "random_states_0.pkl").exists() and (ckpt / "random_states_1.pkl").exists()

    launch(out, "training.resume_from_checkpoint=latest")
    launch(tmp_path / "straight")
    a = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    b = load_file(out / "final" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
