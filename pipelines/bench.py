"""Benchmarks (`make bench`, `python -m pipelines.bench <which>`); results go to docs/BENCHMARKS.md.

    throughput  training tokens/s of recipes' real train steps (fp32 vs bf16), after warm-up
    sst2        pretrained tiny BERT vs the same architecture from random init, same SST-2 budget

Kept apart from the tests: timings belong in a benchmark, not in a pass/fail unit test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def step_throughput(recipe_name: str, precision: str, steps: int, overrides: list[str]) -> dict:
    """Median tokens/s of `steps` real engine train steps (collate + forward + backward + AdamW)."""
    import torch

    from pipelines.config import load_recipe
    from pipelines.engine import build_optimizer, make_accelerator, train_step
    from tasks.base import get_task

    recipe = load_recipe(recipe_name, [f"training.mixed_precision={precision}",
                                       f"training.output_dir=runs/bench/{recipe_name}", *overrides])
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    train_data, _ = task.prepare(tok)
    acc = make_accelerator(recipe.training)
    model = task.build_model(tok)
    opt = build_optimizer(model, recipe.training)
    model, opt = acc.prepare(model, opt)
    bs, times, toks = recipe.training.per_device_train_batch_size, [], []
    gen = torch.Generator().manual_seed(0)
    for i in range(steps + 3):
        t0 = time.perf_counter()
        batch = task.collate([train_data[(i * bs + j) % len(train_data)] for j in range(bs)], gen)
        train_step(acc, model, opt, task, [batch], recipe.training.max_grad_norm)
        if i >= 3:  # warm-up steps excluded (allocator, autocast caches)
            times.append(time.perf_counter() - t0)
            toks.append(task.tokens_in(batch))
    med = statistics.median(times)
    n_params = sum(p.numel() for p in model.parameters())
    return {"recipe": recipe_name, "precision": precision, "params_M": round(n_params / 1e6, 2),
            "batch": bs, "seq": recipe.data.max_seq_length, "median_step_s": round(med, 4),
            "tokens_per_s": round(statistics.median(toks) / med), "threads": torch.get_num_threads()}


def sst2(pretrained: str, glue_dir: str, overrides: list[str]) -> dict:
    """SST-2 dev accuracy: the pretrained export vs the same config with fresh weights."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    from pipelines.finetune import run_finetune

    out = {}
    for name, extra in (("pretrained", []), ("random_init", ["objective.random_init=true"])):
        for state in (AcceleratorState, GradientState, PartialState):  # two runs in one process
            state._reset_state() if state is not AcceleratorState else state._reset_state(True)
        summary = run_finetune("glue/sst2", pretrained, glue_dir=glue_dir,
                               output_dir=f"runs/bench/sst2-{name}",
                               overrides=["training.overwrite_output_dir=true", *overrides, *extra])
        out[name] = summary["sst2"]["accuracy"]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", nargs="?", default="throughput", choices=["throughput", "sst2"])
    p.add_argument("--recipes", default="bert-tiny", help="comma-separated recipe names (throughput)")
    p.add_argument("--precisions", default="no,bf16")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--model", default="runs/bert-tiny/final", help="sst2: the pretrained export")
    p.add_argument("--glue_dir", default="../shared/data/glue")
    p.add_argument("--out", default="runs/bench/results.jsonl")
    args, rest = p.parse_known_args(argv)
    bad = [r for r in rest if "=" not in r]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)} (recipe overrides are key=value)")
    args.overrides = rest
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    results = []
    if args.which == "throughput":
        for recipe in args.recipes.split(","):
            for prec in args.precisions.split(","):
                results.append(step_throughput(recipe, prec, args.steps, args.overrides))
                print(json.dumps(results[-1]), flush=True)
    else:
        results.append({"sst2_dev_accuracy": sst2(args.model, args.glue_dir, args.overrides),
                        "model": args.model, "overrides": args.overrides})
        print(json.dumps(results[-1]))
    with open(args.out, "a") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
