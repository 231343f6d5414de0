"""Padding-free GLUE fine-tuning (issue #22 part 1): lmforge padded, lmforge padding-free and the HF
Trainer + DataCollatorWithPadding at EQUAL batching: the same rows, batch 32, seeds, schedule and
precision as the suite's GLUE comparison (bench/glue.py), and length grouping on all three sides or
on none. Grouped, each side uses its own sampler: the Trainer's LengthGroupedSampler (megabatches of
min(50, rows / (4 x batch)) batches, each sorted long to short and taken in that order) and lmforge's
training.group_by_length (megabatches of 50 batches, taken in shuffled order). The sides run alternately,
each rep in a fresh process with its own seed (--seed + rep); samples/s over the steady window
(bench/common.py), medians over reps; dev scores per seed.

    python -m bench padding-free                              # off and on, 3 reps: 13 min on 2 cores
    python -m bench padding-free --grouping off --reps 1      # one quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from bench.common import SHARED_DATA, child_env, log, median, run_child

TARGET = 1.5  # packed lmforge / Trainer samples/s, at equal batching (issue #22)
SCORE_TOLERANCE = 0.5  # points of dev accuracy, median over seeds


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m bench padding-free", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glue_dir", default=str(SHARED_DATA / "glue"))
    p.add_argument("--grouping", default="off,on", help="off, on or off,on: length grouping on every side")
    p.add_argument("--packed", default="true", choices=["true", "auto"], help="the padding-free side's setting")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--glue-task", default="sst2")
    p.add_argument("--glue-examples", type=int, default=2000)
    p.add_argument("--glue-eval-examples", type=int, default=0)
    p.add_argument("--glue-epochs", type=int, default=1)
    p.add_argument("--glue-lr", type=float, default=1e-4)
    p.add_argument("--glue-precision", default="bf16", choices=["bf16", "no"])
    p.add_argument("--glue-model", default=None)
    p.add_argument("--work", default="runs/bench/padding-free")
    p.add_argument("--timeout", type=float, default=1200.0)
    return p.parse_args(argv)


def sides(ctx, packed: str):
    from bench import glue
    from bench.sides import glue_side

    hf = next(s for s in glue.comparison(ctx).sides if s.name == "hf-trainer")
    return [glue_side(ctx, "lmforge-padded", "lmforge, padded", ("training.padding_free=false",)),
            glue_side(ctx, "lmforge-packed", f"lmforge, padding_free={packed}", (f"training.padding_free={packed}",)),
            hf]


def run_grouping(args, glue_cfg: dict, grouped: bool, work: Path) -> dict:
    """Every side --reps times, alternated (the order rotates each rep); what each run measured."""
    from bench.sides import Context

    cfg = {**glue_cfg, "group_by_length": grouped, "trainer_group_by_length": grouped}
    ctx = Context(work, None, {}, 0, args.warmup, args.log_every, args.seed, cfg)
    todo = sides(ctx, args.packed)
    runs: dict[str, list[dict]] = {s.name: [] for s in todo}
    for rep in range(args.reps):
        for side in todo[rep % len(todo):] + todo[:rep % len(todo)]:
            scratch = work / "scratch" / f"{side.name}-{rep}"
            shutil.rmtree(scratch, ignore_errors=True)
            tag = f"{'grouped' if grouped else 'random'}-{side.name}-{rep}"
            result = run_child(side.command(scratch, rep), child_env(args.threads, scratch),
                               work / "logs" / f"{tag}.log", args.timeout)
            measured = side.read(result, scratch) if result["rc"] == 0 else {}
            runs[side.name].append({"seed": args.seed + rep, "wall_s": result["wall_s"], **measured,
                                    **({"error": result["error"]} if "error" in result else {})})
            rate = (measured.get("steady") or {}).get("samples_per_s")
            log(f"{tag}: {rate and round(rate, 1)} samples/s, dev {measured.get('dev')}, {result.get('error', 'ok')}")
            shutil.rmtree(scratch, ignore_errors=True)
    return runs


def summarize(runs: dict[str, list[dict]]) -> dict:
    rate = {n: median((r.get("steady") or {}).get("samples_per_s") for r in rs) for n, rs in runs.items()}
    acc = {n: median(r.get("dev", {}).get("accuracy") for r in rs) for n, rs in runs.items()}
    out = {"samples_per_s": rate, "dev_accuracy": acc,
           "dev_accuracy_per_seed": {n: [r.get("dev", {}).get("accuracy") for r in rs] for n, rs in runs.items()}}
    base, padded, packed = rate.get("hf-trainer"), rate.get("lmforge-padded"), rate.get("lmforge-packed")
    if base and packed and padded:
        out["packed_vs_trainer"] = packed / base
        out["padded_vs_trainer"] = padded / base
        out["packed_vs_padded"] = packed / padded
        out["target_met"] = packed / base >= TARGET
    if acc.get("lmforge-packed") is not None and acc.get("hf-trainer") is not None:
        out["dev_diff_points"] = 100 * (acc["lmforge-packed"] - acc["hf-trainer"])
        out["dev_within_tolerance"] = abs(out["dev_diff_points"]) <= SCORE_TOLERANCE
    return out


def markdown(results: dict) -> str:
    lines = ["| batches | lmforge padded | lmforge packed | Trainer | packed / Trainer | packed / padded | "
             "dev acc (packed, padded, Trainer; median) |", "|---|---|---|---|---|---|---|"]
    fmt = lambda v, p=1: "–" if v is None else f"{v:.{p}f}"  # noqa: E731
    pct = lambda v: fmt(None if v is None else 100 * v, 2)  # noqa: E731
    for grouping, s in results["groupings"].items():
        r, a = s["samples_per_s"], s["dev_accuracy"]
        lines.append(f"| {grouping} | {fmt(r.get('lmforge-padded'))} | {fmt(r.get('lmforge-packed'))} | "
                     f"{fmt(r.get('hf-trainer'))} | {fmt(s.get('packed_vs_trainer'), 2)}x | "
                     f"{fmt(s.get('packed_vs_padded'), 2)}x | {pct(a.get('lmforge-packed'))}, "
                     f"{pct(a.get('lmforge-padded'))}, {pct(a.get('hf-trainer'))} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from bench.suite import glue_settings, machine

    args = parse(argv)
    args.glue_grouping = False  # glue_settings' own switch; the grouping is set per pass here
    glue_cfg, why = glue_settings(args)
    if why:
        raise SystemExit(f"bench padding-free: {why}")
    work = Path(args.work)
    results = {"machine": machine(args.threads), "load_at_start": os.getloadavg(), "glue": glue_cfg,
               "packed_setting": args.packed, "reps": args.reps, "groupings": {}, "runs": {}}
    for grouping in args.grouping.split(","):
        runs = run_grouping(args, glue_cfg, grouping == "on", work)
        results["runs"][grouping] = runs
        results["groupings"]["grouped" if grouping == "on" else "random"] = summarize(runs)
    results["load_at_end"] = os.getloadavg()
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    (work / "results.md").write_text(markdown(results))
    print(markdown(results))
    log(f"wrote {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
