"""The suite's results as markdown (ready for docs/BENCHMARKS.md) and a loss-curve PNG; every number
comes from the results dict of this invocation."""

from __future__ import annotations

from pathlib import Path

PRETRAINING = ("mlm", "nsp", "clm")
SHORT = {"mlm": "RoBERTa MLM", "nsp": "BERT MLM+NSP", "clm": "GPT-2 CLM", "glue": "GLUE"}


def _num(v, fmt="{:,.0f}") -> str:
    return "–" if v is None else fmt.format(v)


def _spread(values, fmt="{:,.0f}") -> str:
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return f" ({fmt.format(min(values))}–{fmt.format(max(values))})"


def _verdict(ok) -> str:
    return "PASS" if ok else "FAIL"


def _header(res: dict) -> list[str]:
    s = res["settings"]
    peak = res.get("matmul_peak_flops") or {}
    lines = [f"$ {res['command']}", "", f"{res['date']}; {res['machine']}", "",
             f"Every figure is the median of {s['reps']} runs per side, the sides run alternately, each run a fresh "
             f"process with cold caches (prepared data, datasets cache, compiled kernels). Steady throughput: steps "
             f"{s['warmup'] + 1}..last of each run, timed by each side at the end of its optimizer steps; whole "
             "process: launch to exit (imports, data preparation, compilation, training, final evaluation, save)."]
    if peak.get("bf16"):
        lines.append(f"Measured matmul peak ({peak.get('threads')} threads, 2048^3 torch.mm): bf16 "
                     f"{peak['bf16'] / 1e9:,.1f} GFLOP/s, fp32 {peak['fp32'] / 1e9:,.1f} GFLOP/s.")
    for name, why in res.get("skipped", {}).items():
        lines.append(f"Skipped {name}: {why}.")
    return lines + [""]


def _pretraining(res: dict) -> list[str]:
    comps = {k: v for k, v in res["comparisons"].items() if k in PRETRAINING}
    if not comps:
        return []
    s = res["settings"]
    lines = [f"### Pretraining on WikiText-2 valid+test, bf16 autocast, {s['steps']} steps per run "
             "(each recipe's batch and length)", "",
             "| comparison | run | steady tokens/s | whole process s "
             "| lmforge vs baseline (tokens/s ratio; whole-process speed-up) | achieved GFLOP/s | MFU (bf16 peak) |",
             "|---|---|---|---|---|---|---|"]
    notes = []
    for name, c in comps.items():
        for side, row in c["sides"].items():
            if side == c["baseline"]:
                vs = "baseline"
            elif "ratio" in row:
                vs = f"**{row['ratio']:.2f}x**; {row.get('wall_speedup', 0):.2f}x"
            else:
                vs = "–"
            failed = f" ({row['failed_runs']} failed)" if row["failed_runs"] else ""
            mfu = row.get("mfu_bf16_peak")
            lines.append(f"| {SHORT[name]} | {row['label']}{failed} | {_num(row.get('tokens_per_s'))}"
                         f"{_spread(row.get('tokens_per_s_all', []))} | {_num(row.get('wall_s'), '{:.1f}')}"
                         f"{_spread(row.get('wall_s_all', []), '{:.1f}')} | {vs} | "
                         f"{_num(row.get('achieved_flops') and row['achieved_flops'] / 1e9, '{:,.1f}')} | "
                         f"{_num(mfu and 100 * mfu, '{:.1f} %')} |")
            if row.get("first_step_s") is not None:
                notes.append(f"- {SHORT[name]}, {row['label']}: first step (incl. torch.compile) "
                             f"{row['first_step_s']:.1f} s")
            if "pass" in row and row["pass"] is not None:
                notes.append(f"- {SHORT[name]}: {row['label']} / {c['sides'][c['baseline']]['label']} = "
                             f"{row['ratio']:.2f}x tokens/s (target >= {c['target']}x): {_verdict(row['pass'])}")
            if "model_config_differences" in row:
                diff = row["model_config_differences"]
                notes.append(f"- {SHORT[name]}: {row['label']} and the baseline "
                             + ("train the same model config" if not diff else f"configs DIFFER: {'; '.join(diff)}"))
    return lines + [""] + notes + [""]


def _loss_table(res: dict) -> list[str]:
    cols = [(name, side, row) for name, c in res["comparisons"].items() for side, row in c["sides"].items()
            if row.get("losses")]
    if not cols:
        return []
    steps = sorted({int(s) for _, _, row in cols for s in row["losses"]})
    per_step = {row.get("tokens_per_step") for _, _, row in cols}
    tokens = f"{_num(next(iter(per_step)))} tokens per step on every side" if len(per_step) == 1 else \
        "tokens per step: " + ", ".join(f"{row['label']} {_num(row.get('tokens_per_step'))}" for _, _, row in cols)
    lines = ["### Training loss at equal tokens (each side's loss of the logged step itself, median over runs; "
             f"{tokens})", "",
             "| step | " + " | ".join(f"{SHORT[n]}: {row['label']}" for n, _, row in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for step in steps:
        cells = [_num(row["losses"].get(step, row["losses"].get(str(step))), "{:.3f}") for _, _, row in cols]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines + [""]


def _glue(res: dict) -> list[str]:
    c = res["comparisons"].get("glue")
    if not c:
        return []
    g = res["glue"]
    metrics = sorted({k for row in c["sides"].values() for k in row.get("dev", {})})
    subset = f"{g['examples']:,} train rows (seeded subset)" if g.get("examples") else "all train rows"
    lines = [f"### GLUE {g['name']} fine-tuning, all-MiniLM-L6-v2: {subset}, {g['epochs']} epoch(s), batch "
             f"{g['batch']}, lr {g['lr']:g}, max length {g['max_length']}, {g['precision']}", "",
             "| run | steady samples/s | whole process s "
             "| lmforge vs Trainer (samples/s ratio; whole-process speed-up) | "
             + " | ".join(f"dev {m} (median; per seed)" for m in metrics) + " |",
             "|---|---|---|---|" + "---|" * len(metrics)]
    notes = []
    for side, row in c["sides"].items():
        vs = "baseline" if side == c["baseline"] else (
            f"**{row['ratio']:.2f}x**; {row.get('wall_speedup', 0):.2f}x" if "ratio" in row else "–")
        per_seed = {m: ", ".join(f"{100 * d[m]:.2f}" for d in row.get("dev_all", []) if m in d) for m in metrics}
        lines.append(f"| {row['label']} | {_num(row.get('samples_per_s'), '{:,.1f}')}"
                     f"{_spread(row.get('samples_per_s_all', []), '{:,.1f}')} | {_num(row.get('wall_s'), '{:.1f}')} | "
                     f"{vs} | " + " | ".join(f"{_num(row.get('dev', {}).get(m) and 100 * row['dev'][m], '{:.2f}')} "
                                             f"({per_seed[m]})" for m in metrics) + " |")
        if "pass" in row and row["pass"] is not None:
            notes.append(f"- samples/s: {row['ratio']:.2f}x the Trainer's (target >= {c['target']}x): "
                         f"{_verdict(row['pass'])}")
        if "dev_diff_points" in row:
            diffs = ", ".join(f"{m} {v:+.2f}" for m, v in row["dev_diff_points"].items())
            notes.append(f"- dev scores, lmforge minus Trainer (points): {diffs} (target: within 1): "
                         f"{_verdict(row['dev_pass'])}")
    return lines + [""] + notes + [""]


def markdown(res: dict) -> str:
    return "\n".join(_header(res) + _pretraining(res) + _loss_table(res) + _glue(res)) + "\n"


def loss_plot(res: dict, path: Path) -> Path | None:
    """One panel per comparison with loss curves: median loss per logged step, one line per side."""
    panels = [(name, c) for name, c in res["comparisons"].items()
              if any(row.get("losses") for row in c["sides"].values())]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (_, c) in zip(axes[0], panels):
        for row in c["sides"].values():
            pts = sorted((int(s), v) for s, v in row.get("losses", {}).items() if v is not None)
            if pts and row.get("tokens_per_step"):
                ax.plot([p[0] * row["tokens_per_step"] for p in pts], [p[1] for p in pts], marker="o",
                        label=row["label"])
        ax.set_title(c["title"], fontsize=9)
        ax.set_xlabel("training tokens")
        ax.set_ylabel("training loss (logged step)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
