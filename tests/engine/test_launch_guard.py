"""A launch that asked for several processes but got lone ones is refused before any work (issue #13).

No real multi-process training here: the environment `accelerate launch` gives each process of a
`multi_gpu` config is set by hand, on a machine (or with CUDA hidden) where no process group forms.
"""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import REPO, TINY_BERT
from test_cli_errors import assert_one_line_error

from pipelines.engine.launch_guard import check_launch
from pipelines.errors import LmforgeError


def test_multi_gpu_launch_without_cuda_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("ACCELERATE_USE_CPU", "LOCAL_RANK")}
    # the world size torchrun exports to each process of a 2-process `multi_gpu` launch, CUDA hidden;
    # without LOCAL_RANK no process group is attempted (one alone would wait for its peer)
    env.update(WORLD_SIZE="2", RANK="0", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "pipelines", "pretrain", "bert-tiny", *TINY_BERT,
                           "training.max_steps=2", f"training.output_dir={out}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, "asked for 2 processes (WORLD_SIZE=2)", "group of 1", "ACCELERATE_USE_CPU=true",
                          "accelerate_configs/multi_cpu.yaml")
    assert not out.exists() or not any(out.iterdir())  # refused before the folder was touched


def test_check_launch_cases(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    alone = SimpleNamespace(num_processes=1)
    check_launch(alone, env={})  # a plain start
    check_launch(alone, env={"WORLD_SIZE": "1", "LOCAL_RANK": "0"})  # torchrun with one process
    check_launch(SimpleNamespace(num_processes=2), env={"WORLD_SIZE": "2"})  # a real group
    with pytest.raises(LmforgeError, match="ACCELERATE_USE_CPU is not set"):
        check_launch(alone, env={"WORLD_SIZE": "4"})
    with pytest.raises(LmforgeError, match="asked for 3 processes .OMPI_COMM_WORLD_SIZE=3. .*num_processes"):
        check_launch(alone, env={"OMPI_COMM_WORLD_SIZE": "3", "ACCELERATE_USE_CPU": "true"})
