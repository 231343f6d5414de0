"""The sections that run the real command line (`python -m pipelines ...` through
bench/gpu_check/probe.py): one short run each under DeepSpeed ZeRO-2, ZeRO-3 and FSDP whose exports
must reload with the trained model's outputs; a run SIGKILLed after its first checkpoint and resumed,
against the same run uninterrupted; padding-free against padded fine-tuning."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import re
import shutil
from pathlib import Path

from bench.common import SHARED_DATA, steady_from_metrics
from bench.gpu_check.context import RELOAD_TOLERANCE, RESUME_TOLERANCE, Context, failed, of_parts, read_records, skipped
from bench.gpu_check.runner import launch_command, run_cli, run_until

NO_DROPOUT = ("model.config.hidden_dropout_prob=0", "model.config.attention_probs_dropout_prob=0")  # BERT's names
DISTRIBUTED = (("deepspeed_zero2", "deepspeed_zero2.yaml", "DEEPSPEED", 2),
               ("deepspeed_zero3", "deepspeed_zero3.yaml", "DEEPSPEED", 3),
               ("fsdp", "fsdp.yaml", "FSDP", None))


def _pretrain_args(ctx: Context, out_dir: Path, *extra: str) -> list[str]:
    p = ctx.plan
    # a short warmup: the recipes' 10k-step warmups would leave 30 steps at a learning rate near 0,
    # where a resume that lands on the wrong step or weights would still draw the same curve
    return ["pretrain", p.run_recipe, *p.run_overrides, f"training.max_steps={p.run_steps}",
            f"training.mixed_precision={p.run_precision}", "training.warmup_steps=5", "training.logging_steps=1",
            "training.eval_steps=0", "training.max_eval_batches=2", f"training.output_dir={out_dir}", *extra]


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _losses(records: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records}


def _rel_diff(a: dict[int, float], b: dict[int, float], steps) -> float:
    return max((abs(a[s] - b[s]) / max(abs(b[s]), 1e-12) for s in steps), default=0.0)


# --- distributed ---------------------------------------------------------------------------------

def distributed(ctx: Context) -> dict:
    runs = [_distributed_run(ctx, *spec) for spec in DISTRIBUTED]
    return {**of_parts(runs, "run"), "runs": runs}


def _distributed_run(ctx: Context, name: str, config: str, kind: str, stage: int | None) -> dict:
    head = {"run": name, "config": f"accelerate_configs/{config}"}
    if kind == "DEEPSPEED":
        if importlib.util.find_spec("deepspeed") is None:
            return skipped("deepspeed is not installed (DS_BUILD_OPS=0 pip install deepspeed)", **head)
        if not ctx.device()["cuda"] and shutil.which("g++") is None and shutil.which("c++") is None:
            return skipped("DeepSpeed on a CPU JIT-builds its shared-memory op and needs g++", **head)
    if ctx.left() < 10:
        return skipped("the section's time box ran out first (--budget)", **head)
    folder = _fresh(ctx.work / name)
    probe = folder / "probe.pt"
    cmd = launch_command(config, ctx.plan.run_precision, *_pretrain_args(ctx, folder / "run"))
    done = run_cli(cmd, {**ctx.env, "GPU_CHECK_PROBE": str(probe)}, ctx.logs / f"{name}.log", ctx.left())
    if done["rc"] != 0:
        return failed(done["error"], **head)
    facts = _read_json(probe.with_suffix(".json"))
    records = read_records(folder / "run" / "metrics.jsonl")
    losses = _losses(records)
    row = {**head, "wall_s": done["wall_s"], **facts, "steps": len(losses),
           "loss_first": losses.get(1), "loss_last": losses.get(ctx.plan.run_steps),
           "tokens_per_s": (steady_from_metrics(records, 10) or {}).get("tokens_per_s")}
    problems = []
    if sorted(losses) != list(range(1, ctx.plan.run_steps + 1)) or not all(map(math.isfinite, losses.values())):
        problems.append(f"metrics.jsonl holds {len(losses)} finite training losses, {ctx.plan.run_steps} expected")
    if ctx.device()["cuda"] and (facts.get("distributed_type"), facts.get("zero_stage")) != (kind, stage):
        problems.append(f"accelerate ran it as {facts.get('distributed_type')} (ZeRO stage {facts.get('zero_stage')}), "
                        f"not {kind}" + (f" stage {stage}" if stage else ""))
    back = ctx.worker.run("reload", {"folder": str(folder / "run" / "final"), "probe": str(probe)},
                          timeout=max(ctx.left(), 60.0))
    if "error" in back:
        problems.append(f"reload: {back['error']}")
    else:
        row.update(reload=back, export_dtype=back["export_dtype"], reload_max_rel_diff=back["max_rel_diff"])
        tolerance = RELOAD_TOLERANCE.get(ctx.plan.run_precision, RELOAD_TOLERANCE["bf16"])
        if back["bad_keys"] or back["empty_tensors"]:
            problems.append(f"the export reloads with {back['bad_keys'] or ''} {back['empty_tensors'] or ''}".strip())
        if not back["max_rel_diff"] <= tolerance:
            problems.append(f"the reloaded export's outputs differ from the trained model's by "
                            f"{back['max_rel_diff']:.2e} (relative), more than {tolerance:.0e}")
    print(f"  {name}: {row.get('distributed_type')}, {len(losses)} steps, loss {row['loss_first']} -> "
          f"{row['loss_last']}, reload diff {row.get('reload_max_rel_diff', float('nan')):.1e}"
          + (" FAILED" if problems else ""), flush=True)
    return {**row, **(failed("; ".join(problems)) if problems else {"status": "ok"})}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# --- resume ---------------------------------------------------------------------------------------

def resume(ctx: Context) -> dict:
    """SIGKILL once the first checkpoint is on disk (no signal handler runs: what a node failure does),
    resume with training.resume_from_checkpoint=latest, compare every step's loss with the same run
    uninterrupted. Dropout is off: with it on, the resumed run draws other dropout masks than the
    uninterrupted one (measured on a CPU: 1.6e-3 relative after the resume; the data loader takes its
    seed from torch's global generator after the checkpoint restored it), which would hide a small
    resume error in bf16's tolerance; off, the weights, optimizer, schedule and data position alone
    make the curve, exactly on a CPU."""
    p = ctx.plan
    save = p.run_steps // 3
    root = _fresh(ctx.work / "resume")

    def cmd(out: Path, *extra: str) -> list[str]:
        args = _pretrain_args(ctx, out, *NO_DROPOUT, f"training.save_steps={save}", "training.save_total_limit=3",
                              *extra)
        return launch_command(None, p.run_precision, *args)

    probe = {**ctx.env, "GPU_CHECK_PROBE": str(root / "probe.pt")}  # the uninterrupted run's peak memory
    straight = run_cli(cmd(root / "straight"), probe, ctx.logs / "resume-straight.log", ctx.left())
    if straight["rc"] != 0:
        return failed(f"the uninterrupted run: {straight['error']}")
    killed = root / "killed"
    first = killed / "checkpoints" / f"step-{save:06d}"  # complete once under its final name

    def past_the_checkpoint() -> bool:  # steps logged after it: the resume must drop and redo them
        return first.is_dir() and max(_losses(read_records(killed / "metrics.jsonl")), default=0) >= save * 3 // 2

    kill = run_until(cmd(killed), ctx.env, ctx.logs / "resume-killed.log", past_the_checkpoint, ctx.left())
    if not kill["killed"]:
        return failed(kill["error"])
    logged_at_kill = max(_losses(read_records(killed / "metrics.jsonl")), default=0)
    log = ctx.logs / "resume-resumed.log"
    resumed = run_cli(cmd(killed, "training.resume_from_checkpoint=latest"), ctx.env, log, ctx.left())
    if resumed["rc"] != 0:
        return failed(f"the resumed run: {resumed['error']}")
    found = re.search(r"resumed from \S+ at step (\d+)", log.read_text(errors="replace"))
    at = int(found.group(1)) if found else None
    a, b = _losses(read_records(root / "straight" / "metrics.jsonl")), _losses(read_records(killed / "metrics.jsonl"))
    steps = list(range(1, p.run_steps + 1))
    out = {"killed_after_logged_step": logged_at_kill, "resumed_from_step": at, "steps": len(b),
           "straight_losses": [a.get(s) for s in steps], "resumed_losses": [b.get(s) for s in steps],
           "tokens_per_s_straight": (steady_from_metrics(read_records(root / "straight" / "metrics.jsonl"), 10)
                                     or {}).get("tokens_per_s"),
           "peak_memory_gib": _read_json(root / "probe.json").get("peak_memory_gib")}
    if at is None or sorted(a) != steps or sorted(b) != steps:
        return failed(f"expected steps 1..{p.run_steps} in both runs and a 'resumed from' line; got {len(a)} and "
                      f"{len(b)} steps, resumed at {at}", **out)
    out["max_rel_diff_before"] = _rel_diff(a, b, steps[:at])
    out["max_rel_diff_after"] = _rel_diff(a, b, steps[at:])
    tolerance = RESUME_TOLERANCE.get(p.run_precision, RESUME_TOLERANCE["bf16"])
    print(f"  killed after step {logged_at_kill}, resumed at {at}: loss differs from the uninterrupted run by "
          f"{out['max_rel_diff_after']:.1e} after the resume ({out['max_rel_diff_before']:.1e} before)", flush=True)
    if not out["max_rel_diff_after"] <= max(tolerance, 4 * out["max_rel_diff_before"]):
        return failed(f"after the resume at step {at} the loss left the uninterrupted curve by "
                      f"{out['max_rel_diff_after']:.2e} (relative; allowed {tolerance:.0e})", **out)
    return {"status": "ok", **out}


# --- padding-free fine-tuning ----------------------------------------------------------------------

def padding_free(ctx: Context) -> dict:
    """One epoch on SST-2 (../shared/data/glue/SST-2 when present, else generated sentences of mixed
    lengths) from a random-init checkpoint, training.padding_free=true vs false. Dropout is off in the
    checkpoint: both layouts then compute the same losses up to summation order (dropout would draw
    other masks for other tensor shapes), which the run records beside the speed."""
    from pipelines.config import TrainingSection

    if "padding_free" not in TrainingSection.__dataclass_fields__:
        return skipped("training.padding_free not available")
    p = ctx.plan
    root = _fresh(ctx.work / "padding_free")
    real = SHARED_DATA / "glue"
    glue_dir = real if (real / "SST-2" / "train.tsv").is_file() and not p.smoke else sst2_like(root / "glue")
    ckpt = ctx.worker.run("checkpoint", {"recipe": p.finetune_recipe, "folder": str(root / "checkpoint"),
                                         "overrides": [*p.finetune_overrides, *NO_DROPOUT]}, timeout=ctx.left())
    if "error" in ckpt:
        return failed(f"the random-init checkpoint: {ckpt['error']}")
    modes = [_finetune(ctx, root, glue_dir, mode) for mode in ("true", "false")]
    out = {**of_parts(modes, "padding_free"), "data": "SST-2" if glue_dir == real else "generated SST-2-like",
           "modes": modes}
    if all(m["status"] == "ok" for m in modes):
        packed, padded = modes
        out["speedup_samples_per_s"] = packed["samples_per_s"] / padded["samples_per_s"]
        same = set(packed["losses"]) & set(padded["losses"])
        out["loss_max_rel_diff"] = _rel_diff(packed["losses"], padded["losses"], sorted(same))
        print(f"  padding-free {out['speedup_samples_per_s']:.2f}x the padded samples/s; losses differ by "
              f"{out['loss_max_rel_diff']:.1e}", flush=True)
    return out


def _finetune(ctx: Context, root: Path, glue_dir: Path, mode: str) -> dict:
    p = ctx.plan
    head = {"padding_free": mode}
    if ctx.left() < 10:
        return skipped("the section's time box ran out first (--budget)", **head)
    out_dir, probe = root / f"padding_free-{mode}", root / f"probe-{mode}.pt"
    cmd = launch_command(None, p.run_precision, "finetune", "--task", "glue/sst2", "--model", str(root / "checkpoint"),
                         "--glue_dir", str(glue_dir), "--output_dir", str(out_dir), f"training.padding_free={mode}",
                         f"objective.max_train_examples={p.finetune_examples}", "training.num_train_epochs=1",
                         f"training.mixed_precision={p.run_precision}", "training.logging_steps=1")
    done = run_cli(cmd, {**ctx.env, "GPU_CHECK_PROBE": str(probe)}, ctx.logs / f"padding_free-{mode}.log",
                     ctx.left())
    if done["rc"] != 0:
        return failed(done["error"], **head)
    records = read_records(out_dir / "sst2" / "metrics.jsonl")
    recipe = _read_json(out_dir / "sst2" / "recipe.json")
    batch = recipe.get("training", {}).get("per_device_train_batch_size")
    steady = steady_from_metrics(records, records[0]["step"], batch) if records else None
    accuracy = _read_json(out_dir / "glue_results.json").get("sst2", {}).get("accuracy")
    row = {**head, "wall_s": done["wall_s"], "steps": len(records), "losses": _losses(records),
           "samples_per_s": (steady or {}).get("samples_per_s"), "tokens_per_s": (steady or {}).get("tokens_per_s"),
           "dev_accuracy": accuracy, "peak_memory_gib": _read_json(probe.with_suffix(".json")).get("peak_memory_gib")}
    if not steady or accuracy is None or not all(map(math.isfinite, row["losses"].values())):
        return failed(f"no steady samples/s, dev accuracy or finite losses in {out_dir}", **row)
    print(f"  padding_free={mode}: {row['samples_per_s']:,.0f} samples/s, dev accuracy {accuracy:.3f}", flush=True)
    return {"status": "ok", **row}


def sst2_like(root: Path, n_train: int = 4000, n_dev: int = 400) -> Path:
    """SST-2's TSV layout with sentences of mixed lengths (most short, some long, as in SST-2, so
    padding matters) whose label is readable from one sentiment word."""
    rng = random.Random(0)
    good, bad = ["good", "great", "fine", "nice", "superb"], ["bad", "awful", "poor", "wrong", "dull"]
    filler = "the film a story of its cast with some scenes and an ending that is as it was".split()
    (root / "SST-2").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            words = rng.choices(filler, k=min(60, 2 + int(rng.expovariate(1 / 10))))
            words.insert(rng.randrange(len(words) + 1), rng.choice(good if label else bad))
            rows.append(" ".join(words) + f"\t{label}")
        (root / "SST-2" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root
