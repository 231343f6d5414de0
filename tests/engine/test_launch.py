"""`accelerate launch` with the shipped configs: one process, and two real CPU processes (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TINY_BERT

ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def _launch(config: str, out: Path, extra_env=None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(extra_env or {})}
    cmd = [ACCELERATE, "launch", "--config_file", str(REPO / "accelerate_configs" / config), "-m", "pipelines",
           "pretrain", "bert-tiny", *TINY_BERT, "training.max_steps=3", "training.per_device_train_batch_size=8",
           f"training.output_dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "final" / "model.safetensors").exists()
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_single_process_launch(tmp_path):
    results = _launch("cpu.yaml", tmp_path / "one")
    assert results["world_size"] == 1 and results["global_batch"] == 8


@pytest.mark.slow
def test_two_cpu_processes_share_one_global_batch(tmp_path):
    results = _launch("multi_cpu.yaml", tmp_path / "two", {"ACCELERATE_USE_CPU": "true"})
    assert results["world_size"] == 2 and results["global_batch"] == 16
    logs = [json.loads(line) for line in open(tmp_path / "two" / "metrics.jsonl") if '"loss"' in line]
    assert [r["step"] for r in logs if "lr" in r] == [1, 2, 3]  # rank 0 alone writes the log
