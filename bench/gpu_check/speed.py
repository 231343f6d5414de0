"""The speed sections: the card's measured matmul peak, and for every model the step throughput and
MFU with SDPA and with eager attention (compile off), then with torch.compile (SDPA). MFU = training
FLOPs per token (the task's own count, pipelines/engine/flops.py) x tokens/s / the peak measured in
this same run; the vendor's dense bf16 figure is given beside it where the card is known."""

from __future__ import annotations

import re

from bench.gpu_check.context import Context, failed, of_parts, skipped
from bench.gpu_check.plan import Model


def peak(ctx: Context) -> dict:
    out = ctx.worker.run("peak", ctx.plan.peak, timeout=ctx.left())
    if "error" in out:
        return failed(out["error"])
    tflops = out["flops"] / 1e12
    print(f"  {out['device']}: {out['dtype']} {out['n']}x{out['n']} matmul peak {tflops:.1f} TFLOP/s"
          + (f" (vendor figure {out['vendor_peak_flops'] / 1e12:.0f})" if out.get("vendor_peak_flops") else ""),
          flush=True)
    return {"status": "ok", "tflops": tflops, **out}


def throughput(ctx: Context) -> dict:
    """SDPA vs eager attention, compile off, every model."""
    rows = [_row(ctx, model, attn, compiled=False) for model in ctx.plan.models for attn in ("sdpa", "eager")]
    for row in rows:  # SDPA's gain over eager, on the SDPA row
        other = _find(rows, row["model"], "eager", False)
        if row["attn"] == "sdpa" and row["status"] == other["status"] == "ok":
            row["speedup_vs_eager"] = row["tokens_per_s"] / other["tokens_per_s"]
    return {**of_parts(rows, "row"), "rows": rows}


def compiled(ctx: Context) -> dict:
    """torch.compile (training.torch_compile: inductor, in place) with SDPA, the models in
    plan.compile_models order; the compile-off row is the throughput section's SDPA row."""
    by_label = {m.label: m for m in ctx.plan.models}
    rows = [_row(ctx, by_label[label], "sdpa", compiled=True) for label in ctx.plan.compile_models]
    plain = ctx.results.get("throughput", {}).get("rows", [])
    for row in rows:
        other = _find(plain, row["model"], "sdpa", False)
        if row["status"] == "ok" and other.get("status") == "ok":
            row["speedup_vs_compile_off"] = row["tokens_per_s"] / other["tokens_per_s"]
    return {**of_parts(rows, "row"), "rows": rows}


def _find(rows: list[dict], model: str, attn: str, compile_: bool) -> dict:
    return next((r for r in rows if (r["model"], r["attn"], r["compile"]) == (model, attn, compile_)), {})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")


def _row(ctx: Context, model: Model, attn: str, compiled: bool) -> dict:
    name = f"{model.label}, {attn}" + (", compiled" if compiled else "")
    head = {"row": name, "model": model.label, "recipe": model.recipe, "attn": attn, "compile": compiled}
    if ctx.left() < 5:
        return skipped("the section's time box ran out first (--budget)", **head)
    plan = ctx.plan
    spec = {"recipe": model.recipe, "overrides": list(model.overrides), "precision": plan.precision,
            # the task's tokenizer lives in output_dir/tokenizer: one folder per model
            "output_dir": str(ctx.work / "throughput" / _slug(model.label)),
            "attn": attn, "compile": compiled, "warmup": plan.warmup, "steps": plan.steps}
    out = ctx.worker.run("throughput", spec, timeout=ctx.left())
    if "error" in out:
        print(f"  {name}: FAILED {out['error']}", flush=True)
        return failed(out["error"], **head)
    row = {"status": "ok", **head, **out}
    if not out["loss_finite"]:
        row.update(status="failed", error=f"the loss is not finite after {plan.warmup + plan.steps} steps")
    achieved = (out["flops_per_token"] or 0) * out["tokens_per_s"]
    row["tflops"] = achieved / 1e12
    if ctx.peak_flops() and achieved:
        row["mfu"] = achieved / ctx.peak_flops()
    vendor = ctx.results.get("peak", {}).get("vendor_peak_flops")
    if vendor and achieved:
        row["mfu_vendor_peak"] = achieved / vendor
    memory = f", peak {out['peak_memory_gib']:.1f} GiB" if out.get("peak_memory_gib") is not None else ""
    print(f"  {name}: {out['tokens_per_s']:,.0f} tokens/s, {1e3 * out['step_s']:.1f} ms/step"
          + (f", MFU {row['mfu']:.1%}" if "mfu" in row else "") + memory, flush=True)
    return row
