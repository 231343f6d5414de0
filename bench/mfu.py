"""5. Model FLOPs utilisation of every lmforge pretraining row: achieved FLOP/s = training FLOPs per
token (the task's own hand count, pipelines/engine/flops.py, from the run's exported config) x steady
tokens/s, and its fraction of this machine's MEASURED bf16 matmul peak (pipelines.engine.flops.
measure_matmul_peak, run once per invocation in a child with the suite's environment: a CPU has no
vendor figure that applies). Fine-tuning rows are left out: their per-token count depends on each
batch's padded length."""

from __future__ import annotations

from pathlib import Path

from bench.common import child_command, child_result, log, run_child


def peak_child(spec: dict) -> None:
    import torch

    from pipelines.engine import flops

    measure = getattr(flops, "measure_matmul_peak", None)
    if measure is None:  # TODO(lead): pipelines.engine.flops.measure_matmul_peak is not there; wire the peak here
        child_result({"error": "pipelines.engine.flops.measure_matmul_peak is missing"})
        return
    child_result({"bf16": measure(torch.bfloat16), "fp32": measure(torch.float32), "threads": torch.get_num_threads()})


def measure_peak(env: dict, work: Path, timeout: float) -> dict:
    r = run_child(child_command("peak", {}), env, work / "logs" / "matmul-peak.log", timeout)
    if "bf16" in r:
        log(f"matmul peak ({r['threads']} threads): bf16 {r['bf16'] / 1e9:.1f} GFLOP/s, "
            f"fp32 {r['fp32'] / 1e9:.1f} GFLOP/s")
    else:
        log(f"matmul peak not measured: {r.get('error', 'no result')}")
    return {k: r[k] for k in ("bf16", "fp32", "threads") if k in r} or {"error": r.get("error")}


def flops_per_token(recipe: str, overrides: list[str], model_config: dict) -> float | None:
    """The lmforge task's own count for this recipe, from the config the run exported."""
    from transformers import AutoConfig

    from pipelines.config import load_recipe
    from tasks.base import get_task

    config = dict(model_config)
    kind = config.pop("model_type")
    r = load_recipe(recipe, overrides)
    task = get_task(r.task)(r)
    return task.flops_per_token(AutoConfig.for_model(kind, **config))


def add_mfu(row: dict, fpt: float | None, peak: dict) -> None:
    tps = row.get("tokens_per_s")
    if not fpt or not tps:
        return
    row["flops_per_token"] = fpt
    row["achieved_flops"] = fpt * tps
    if peak.get("bf16"):
        row["mfu_bf16_peak"] = fpt * tps / peak["bf16"]
