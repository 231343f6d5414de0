"""`python -m bench throughput`: training tokens/s of recipes' real train steps (fp32 vs
bf16) in this process, after warm-up. A quick per-step figure; the side-by-side suite
(bench/suite.py) is the one that compares lmforge with its baselines."""

from __future__ import annotations

import statistics
import time


def step_throughput(recipe_name: str, precision: str, steps: int, overrides: list[str]) -> dict:
    """Median tokens/s of `steps` real engine train steps (collate + forward + backward + AdamW)."""
    import torch

    from pipelines.config import load_recipe
    from pipelines.engine.accelerator import make_accelerator
    from pipelines.engine.optimizers import build_optimizer
    from pipelines.engine.step import train_step
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
