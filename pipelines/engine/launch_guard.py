"""Check the launch against what accelerate made of it, before any work.

`accelerate launch` with a multi-process config starts N processes through torchrun and tells
each its WORLD_SIZE / RANK / LOCAL_RANK. When the process group cannot be made for the hardware
(the `multi_gpu` config on a machine without CUDA, without ACCELERATE_USE_CPU=true), accelerate
falls back to a single process in each of them: N independent runs that each think they are
alone, write the same folder and report a world size of 1. We refuse that with one line.
"""

from __future__ import annotations

import os

from pipelines.errors import LmforgeError

# the process-count variables accelerate itself reads (torchrun, MPI launchers)
_WORLD_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def requested_processes(env=os.environ) -> tuple[str, int] | None:
    """(variable, process count) a launcher asked for, or None for a plain single-process start."""
    for name in _WORLD_VARS:  # the first one set counts (torchrun's WORLD_SIZE before MPI's)
        value = env.get(name, "").strip()
        if value.isdigit():
            return (name, int(value)) if int(value) > 1 else None
    return None


def check_launch(accelerator, env=os.environ) -> None:
    """Refuse a launch whose processes did not join one process group (or joined one of another size)."""
    asked = requested_processes(env)
    got = accelerator.num_processes
    if asked is None or asked[1] == got:
        return
    import torch

    var, n = asked
    start = f"the launch asked for {n} processes ({var}={n}) but this one runs in a group of {got}"
    use_cpu = env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if not torch.cuda.is_available() and not use_cpu:
        raise LmforgeError(f"{start}: there is no CUDA GPU here and ACCELERATE_USE_CPU is not set, so each process "
                           "would train alone into the same folder; for CPU processes launch with "
                           "ACCELERATE_USE_CPU=true accelerate launch --config_file accelerate_configs/multi_cpu.yaml, "
                           "on GPUs check that torch.cuda.is_available() is true")
    raise LmforgeError(f"{start}: each process would train alone into the same folder; check the accelerate "
                       "config's num_processes / distributed_type against this machine (accelerate env)")
