"""`python -m bench compile`: does training.torch_compile pay off, per family, on this machine?

    python -m bench compile --recipes bert-tiny,roberta-tiny --steps 30 [key=value ...]

Per recipe and --reps repetition, two fresh processes (eager, then compiled; same environment as the
bench suite: OMP_NUM_THREADS=--threads, an empty inductor cache, so compilation is paid in full as on a
first run) each build the recipe's model and run warm-up + --steps real engine train steps
(pipelines.engine.step.train_step; the recipe's precision, bf16 for the tiny ones) on the engine's own
micro-batches (the recipe's sampler and collate seeds, collated before the clock starts: collation is
the same work with or without compile), then evaluate twice (the first evaluation compiles the eval
graph). Reported:

    step s          median seconds of the steps after --warmup
    warm-up s       the first --warmup steps' seconds beyond eager's (compilation, the first recompile)
    eval +s         the first evaluation's seconds beyond eager's
    run s           the recipe's whole training.max_steps: every measured step + the rest at the median,
                    plus its evaluations (every eval_steps and the final one); compilation included
    loss Δ          |compiled - eager| / eager of the first step's loss (same weights and batch)
    graphs          graphs dynamo compiled for training (a recompilation storm shows here)

and whether the recipe should turn compile on by default: its whole run is at least --min-gain faster
and the first loss agrees. Results: runs/bench/compile/results.json and table.md (--out).
Timings belong on a quiet machine; a smoke run: --recipes bert-tiny --steps 3 --warmup 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.common import REPO, child_env, child_result, log, run_child

FAMILY_RECIPES = "bert-tiny,roberta-tiny,albert-tiny,electra-tiny,gpt2-tiny,t5-tiny,bart-tiny"


# --- the measured child process ----------------------------------------------------------------


def measure(spec: dict) -> dict:
    """Train steps and two evaluations of one recipe, eager or compiled, in this (fresh) process."""
    import torch
    from torch._dynamo.utils import counters

    from pipelines.config import load_recipe
    from pipelines.data.loader import MicroBatches
    from pipelines.data.sampler import GlobalBatchSampler, collate_seed
    from pipelines.engine.accelerator import make_accelerator
    from pipelines.engine.optimizers import build_optimizer
    from pipelines.engine.plan import training_sampler
    from pipelines.engine.step import evaluate, train_step
    from tasks.base import get_task

    recipe = load_recipe(spec["recipe"], [f"training.output_dir={spec['out_dir']}",
                                          f"training.torch_compile={str(spec['compile']).lower()}",
                                          *spec["overrides"]])
    t = recipe.training
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    task.setup(tok)
    train_data, eval_data = task.prepare(tok)
    acc = make_accelerator(t)
    torch.manual_seed(t.seed)
    model = task.build_model(tok)
    if t.torch_compile:  # what engine.setup() does
        from pipelines.engine.compile import compile_model

        model = compile_model(model)
    opt = build_optimizer(model, t)
    model, opt = acc.prepare(model, opt)

    ga, n_steps = t.gradient_accumulation_steps, spec["warmup"] + spec["steps"]
    micro = MicroBatches(task, train_data, training_sampler(task, train_data, recipe, 1), t.seed, ga, 0)
    steps = [[_on(micro[s * ga + m], acc.device) for m in range(ga)] for s in range(n_steps)]
    eval_gen = torch.Generator().manual_seed(collate_seed(t.seed, -1, 0, 0))
    eval_batches = [_on(task.collate([eval_data[i] for i in idx], eval_gen), acc.device)
                    for idx in GlobalBatchSampler.eval_batches(len(eval_data), t.per_device_eval_batch_size, 0,
                                                                t.max_eval_batches)]

    seconds, losses = [], []
    for batches in steps:
        start = time.perf_counter()
        result = train_step(acc, model, opt, task, batches, t.max_grad_norm)
        losses.append(result.logs()["loss"])  # reads the device: the step is finished when the clock stops
        seconds.append(time.perf_counter() - start)
    graphs = counters["stats"]["unique_graphs"]
    evals = []
    for _ in range(2 if eval_batches else 0):
        start = time.perf_counter()
        evaluate(acc, model, task, eval_batches)
        evals.append(time.perf_counter() - start)
    return {"recipe": recipe.name, "family": recipe.model.family, "compile": bool(t.torch_compile),
            "max_steps": t.max_steps, "eval_steps": t.eval_steps, "precision": t.mixed_precision,
            "batch": t.per_device_train_batch_size * ga, "seq": recipe.data.max_seq_length,
            "step_seconds": seconds, "losses": losses, "eval_seconds": evals, "graphs": graphs,
            "graphs_after_eval": counters["stats"]["unique_graphs"], "threads": torch.get_num_threads()}


def _on(batch: dict, device) -> dict:
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# --- the parent: fresh processes, the table ----------------------------------------------------


def run_recipe(recipe: str, args, overrides: list[str]) -> dict:
    """Eager and compiled runs of one recipe, --reps times alternated; the per-mode medians."""
    work = Path(args.out).resolve()
    runs = {"eager": [], "compiled": []}
    for rep in range(args.reps):
        for mode in runs:
            scratch = work / "scratch" / f"{recipe}-{mode}-{rep}"
            env = child_env(args.threads, scratch)
            env["LMFORGE_PREPARED"] = str(work / "prepared")  # both modes read the same shards (not timed)
            spec = {"recipe": recipe, "compile": mode == "compiled", "steps": args.steps, "warmup": args.warmup,
                    "overrides": overrides, "out_dir": str(work / "runs" / recipe)}  # one tokenizer for both
            log(f"{recipe} {mode} (rep {rep + 1}/{args.reps})")
            r = run_child([sys.executable, "-m", "bench.compile", "--child", json.dumps(spec)], env,
                          scratch / "log.txt", args.timeout)
            shutil.rmtree(scratch / "inductor", ignore_errors=True)  # compiled kernels: tens of MB per run
            if r.get("error"):
                return {"recipe": recipe, "error": f"{mode}: {r['error']} (log: {r['log']})"}
            runs[mode].append(r)
    return summarize(recipe, runs, args.warmup, args.min_gain)


def run_seconds(r: dict, warmup: int) -> dict:
    """One process's figures, and its whole recipe run extrapolated from them."""
    s, max_steps = r["step_seconds"], r["max_steps"]
    step = statistics.median(s[warmup:] or s)
    n_eval = (max_steps - 1) // r["eval_steps"] + 1 if r["eval_steps"] else 1  # every eval_steps + the final one
    first_eval, later_eval = (r["eval_seconds"] + [0.0, 0.0])[:2]
    total = sum(s) + max(0, max_steps - len(s)) * step + first_eval + (n_eval - 1) * later_eval
    return {"step": step, "first_k": sum(s[:warmup]), "first_eval": first_eval, "run": total}


def summarize(recipe: str, runs: dict, warmup: int, min_gain: float) -> dict:
    med = {mode: {k: statistics.median(run_seconds(r, warmup)[k] for r in rs)
                  for k in ("step", "first_k", "first_eval", "run")} for mode, rs in runs.items()}
    e, c = med["eager"], med["compiled"]
    first = runs["eager"][0]
    loss_delta = max(abs(rc["losses"][0] - re["losses"][0]) / abs(re["losses"][0])
                     for re, rc in zip(runs["eager"], runs["compiled"]))
    whole = e["run"] / c["run"]
    return {"recipe": recipe, "family": first["family"], "precision": first["precision"], "batch": first["batch"],
            "seq": first["seq"], "max_steps": first["max_steps"], "threads": first["threads"],
            "eager_step_s": e["step"], "compiled_step_s": c["step"], "step_speedup": e["step"] / c["step"],
            "warmup_extra_s": c["first_k"] - e["first_k"], "eval_extra_s": c["first_eval"] - e["first_eval"],
            "eager_run_s": e["run"], "compiled_run_s": c["run"], "run_speedup": whole,
            "first_loss_rel_diff": loss_delta,
            "graphs": max(r["graphs"] for r in runs["compiled"]),
            "graphs_with_eval": max(r["graphs_after_eval"] for r in runs["compiled"]),
            "compile_by_default": whole >= 1 + min_gain and loss_delta < 1e-2, "reps": len(runs["eager"])}


def table(rows: list[dict], args) -> str:
    head = ("| recipe | family | eager step s | compiled step s | step speed-up | warm-up +s | eval +s | "
            "run s eager | run s compiled | run speed-up | loss Δ | graphs (+eval) | compile by default |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['recipe']} | failed: {r['error'][:200]} |" + " |" * 11)
            continue
        lines.append(f"| {r['recipe']} | {r['family']} | {r['eager_step_s']:.3f} | {r['compiled_step_s']:.3f} | "
                     f"{r['step_speedup']:.2f}x | {r['warmup_extra_s']:.1f} | {r['eval_extra_s']:.1f} | "
                     f"{r['eager_run_s']:.0f} | {r['compiled_run_s']:.0f} | {r['run_speedup']:.2f}x | "
                     f"{r['first_loss_rel_diff']:.1e} | {r['graphs']} ({r['graphs_with_eval']}) | "
                     f"{'**yes**' if r['compile_by_default'] else 'no'} |")
    note = (f"\n{args.steps} measured steps after {args.warmup} warm-up steps, {args.reps} rep(s), "
            f"OMP_NUM_THREADS={args.threads}, cold inductor cache; run s = the recipe's max_steps with its "
            f"evaluations, compilation included; default on when the run is >= {args.min_gain:.0%} faster.\n")
    return head + "\n".join(lines) + "\n" + note


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child_result(measure(json.loads(argv[1])))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench compile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=FAMILY_RECIPES, help="comma-separated recipe names")
    p.add_argument("--steps", type=int, default=30, help="measured train steps after the warm-up")
    p.add_argument("--warmup", type=int, default=5, help="steps that hold compilation and the first recompile")
    p.add_argument("--reps", type=int, default=1, help="eager/compiled process pairs per recipe (medians)")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every measured process")
    p.add_argument("--min-gain", type=float, default=0.05, help="whole-run speed-up needed to recommend compile")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    p.add_argument("--out", default=str(REPO / "runs" / "bench" / "compile"))
    args, overrides = p.parse_known_args(argv)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)} (recipe overrides are key=value)")
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be at least 1")
    rows = [run_recipe(r, args, overrides) for r in args.recipes.split(",") if r]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    md = table(rows, args)
    (out / "table.md").write_text(md)
    print(md)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
