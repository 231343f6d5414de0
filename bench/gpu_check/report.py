"""gpu_check.md: the tables a person pastes into docs/GPU.md, read from gpu_check.json's content."""

from __future__ import annotations

GOAL_MODEL, GOAL_MFU = "bert-base seq128", 0.45


def _num(value, fmt: str = ",.0f", scale: float = 1.0) -> str:
    return "–" if value is None else format(value * scale, fmt)


def _status(part: dict) -> str:
    if part["status"] == "ok":
        return "ok"
    return f"{part['status']}: {part.get('error') or part.get('reason')}".replace("|", "/")[:160]


def goal(report: dict) -> dict | None:
    """The issue's target: the best MFU (against the measured peak) of bert-base seq 128, any row;
    None for a smoke run (toy models on a CPU measure nothing)."""
    if report["smoke"]:
        return None
    rows = [r for s in ("throughput", "compile") for r in report["sections"].get(s, {}).get("rows", [])
            if r["model"] == GOAL_MODEL and r.get("mfu")]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["mfu"])
    return {"model": GOAL_MODEL, "target_mfu": GOAL_MFU, "best_mfu": best["mfu"], "row": best["row"],
            "reached": best["mfu"] >= GOAL_MFU}


def markdown(report: dict) -> str:
    s = report["sections"]
    device = report.get("device", {})
    smoke = " (--smoke: toy sizes)" if report["smoke"] else ""
    lines = [f"# gpu-check: {device.get('name', 'unknown device')}{smoke}",
             "", f"{report['started']}, torch {device.get('torch')}, CUDA {device.get('cuda_version')}; "
                 f"{report['total_s']:.0f} s of a {report['budget_s']:.0f} s budget. Raw numbers: gpu_check.json.", "",
             "| section | status | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {_status(r)} | {r.get('seconds', 0):.0f} |" for name, r in s.items()]
    if s.get("peak", {}).get("status") == "ok":
        p = s["peak"]
        vendor = f" (vendor dense figure {p['vendor_peak_flops'] / 1e12:.0f})" if p.get("vendor_peak_flops") else ""
        lines += ["", f"Measured matmul peak ({p['dtype']}, {p['n']}x{p['n']}): **{p['tflops']:.1f} TFLOP/s**{vendor}"]
    rows = [r for name in ("throughput", "compile") for r in s.get(name, {}).get("rows", [])]
    if rows:
        lines += ["", "## Step throughput (engine train_step, batches collated ahead, one micro-batch per step)", "",
                  "| model | seq x batch | attention | compile | tokens/s | ms/step | TFLOP/s | MFU (measured peak) "
                  "| MFU (vendor peak) | peak memory GiB | status |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['model']} | {r.get('seq', '–')} x {r.get('batch', '–')} | {r['attn']} | "
                         f"{'on' if r['compile'] else 'off'} | {_num(r.get('tokens_per_s'))} | "
                         f"{_num(r.get('step_s'), '.1f', 1e3)} | {_num(r.get('tflops'), '.1f')} | "
                         f"{_num(r.get('mfu'), '.1%')} | {_num(r.get('mfu_vendor_peak'), '.1%')} | "
                         f"{_num(r.get('peak_memory_gib'), '.1f')} | {_status(r)} |")
    if (g := report.get("goal")) is not None:
        lines += ["", f"Goal MFU >= {g['target_mfu']:.0%} for {g['model']} bf16: best {g['best_mfu']:.1%} "
                      f"({g['row']}): **{'reached' if g['reached'] else 'not reached'}**"]
    runs = s.get("distributed", {}).get("runs", [])
    if runs:
        lines += ["", "## DeepSpeed / FSDP on one device (the real CLI, export reloaded by plain transformers)", "",
                  "| config | ran as | loss first -> last | tokens/s | peak memory GiB | export dtype "
                  "| reload max rel. diff | status |", "|---|---|---|---|---|---|---|---|"]
        for r in runs:
            ran = (r.get("distributed_type") or "–") + (f" ZeRO-{r['zero_stage']}" if r.get("zero_stage") else "")
            lines.append(f"| {r['config']} | {ran} | {_num(r.get('loss_first'), '.3f')} -> "
                         f"{_num(r.get('loss_last'), '.3f')} | {_num(r.get('tokens_per_s'))} | "
                         f"{_num(r.get('peak_memory_gib'), '.1f')} | {r.get('export_dtype', '–')} | "
                         f"{_num(r.get('reload_max_rel_diff'), '.1e')} | {_status(r)} |")
    if "resume" in s and "resumed_from_step" in s["resume"]:
        r = s["resume"]
        lines += ["", "## SIGKILL + resume", "",
                  f"Killed after logged step {r['killed_after_logged_step']}, resumed from the checkpoint of step "
                  f"{r['resumed_from_step']}: loss vs the uninterrupted run, max relative difference "
                  f"{_num(r.get('max_rel_diff_before'), '.1e')} before the resume point and "
                  f"{_num(r.get('max_rel_diff_after'), '.1e')} after it ({_status(r)})."]
    modes = s.get("padding_free", {}).get("modes", [])
    if modes:
        pf = s["padding_free"]
        lines += ["", f"## Padding-free vs padded fine-tuning ({pf.get('data')}, one epoch)", "",
                  "| training.padding_free | samples/s | tokens/s | dev accuracy | peak memory GiB | status |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {m['padding_free']} | {_num(m.get('samples_per_s'))} | {_num(m.get('tokens_per_s'))} | "
                  f"{_num(m.get('dev_accuracy'), '.3f')} | {_num(m.get('peak_memory_gib'), '.1f')} | {_status(m)} |"
                  for m in modes]
        if "speedup_samples_per_s" in pf:
            lines += ["", f"Padding-free: {pf['speedup_samples_per_s']:.2f}x the samples/s; training losses differ by "
                          f"at most {pf['loss_max_rel_diff']:.1e} (relative)."]
    return "\n".join(lines) + "\n"
