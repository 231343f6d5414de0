"""3. GPT-2 tiny causal LM: lmforge `pretrain gpt2-tiny` (recipe defaults, and with
training.torch_compile=true unless --no-clm-compile) against a minimal nanoGPT-style loop.

Both sides: gpt2-tiny's model (n_embd 256, 4 layers, 4 heads, 128 positions, no dropout; the config
is built by the same function from the same recipe), the byte-level BPE tokenizer trained once in
this invocation, blocks of 128, batch 32, bf16 autocast, the recipe's AdamW (lr 1e-3, betas
0.9/0.95, eps 1e-8, weight decay 0.1 on matrices only), cosine schedule with its warmup, gradient
clipping at 1.0. The loop (`nanogpt` below, written by hand on purpose: it IS the baseline) is
nanoGPT's train.py reduced to one CPU process: the corpus encoded once into a uint16 token array
(one line per document, end-of-text after each, as nanoGPT's prepare.py does), random contiguous
blocks (get_batch), GPT2LMHeadModel with attn_implementation="sdpa", torch.compile(model), fused
AdamW. Its whole-process time includes tokenization and compilation, as lmforge's includes
preparation (and compilation in the compiled run).
"""

from __future__ import annotations

from pathlib import Path

from bench.common import child_result
from bench.sides import Comparison, Context, pretrain_baseline, pretrain_side

RECIPE, FAMILY, TARGET = "gpt2-tiny", "gpt2", 1.0


def comparison(ctx: Context, compiled: bool = True) -> Comparison:
    sides = [pretrain_side(ctx, RECIPE, FAMILY)]
    if compiled:
        sides.append(pretrain_side(ctx, RECIPE, FAMILY, "lmforge-compile", f"lmforge `pretrain {RECIPE}` "
                                   "training.torch_compile=true", ("training.torch_compile=true",)))
    sides.append(pretrain_baseline(ctx, "nanogpt", RECIPE, FAMILY, "nanogpt",
                                   "nanoGPT-style loop (torch.compile, fused AdamW)"))
    return Comparison("clm", "GPT-2 tiny CLM vs a nanoGPT-style loop", sides, baseline="nanogpt", target=TARGET,
                      losses=True)


def nanogpt(spec: dict) -> None:
    """The baseline process (`python -m bench --child nanogpt SPEC`)."""
    import math
    import time

    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.config import load_recipe
    from tasks.shared.modeling import build_config

    recipe = load_recipe(spec["recipe"])
    t, block, batch = recipe.training, recipe.data.max_seq_length, recipe.training.per_device_train_batch_size
    torch.manual_seed(spec["seed"])
    tok = AutoTokenizer.from_pretrained(spec["tokenizer"])
    eot = tok.eos_token_id
    lines = [ln.strip() for ln in Path(spec["file"]).read_text(encoding="utf-8").splitlines() if ln.strip()]
    data = np.fromiter((i for ids in tok(lines, add_special_tokens=False)["input_ids"] for i in [*ids, eot]),
                       dtype=np.uint16)
    data = torch.from_numpy(data.astype(np.int64))

    def get_batch():
        ix = torch.randint(len(data) - block, (batch,))
        x = torch.stack([data[i:i + block] for i in ix])
        y = torch.stack([data[i + 1:i + 1 + block] for i in ix])
        return x, y

    config = build_config(recipe, tok, bos_token_id=eot, eos_token_id=eot)
    raw = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model = torch.compile(raw)
    params = [p for p in raw.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": t.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon,
                            fused=True)
    steps, warmup = spec["steps"], t.warmup_steps

    def get_lr(it):  # warmup then cosine to 0, as the recipe's (transformers') cosine schedule
        if it < warmup:
            return t.learning_rate * it / max(1, warmup)
        return t.learning_rate * 0.5 * (1.0 + math.cos(math.pi * (it - warmup) / max(1, steps - warmup)))

    step_ends, losses = [], {}
    model.train()
    start = time.perf_counter()
    for it in range(steps):
        for group in opt.param_groups:
            group["lr"] = get_lr(it)
        x, y = get_batch()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=x).logits
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(raw.parameters(), t.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_ends.append(time.perf_counter())
        if (it + 1) % spec["log_every"] == 0 or it + 1 == steps:
            losses[it + 1] = loss.item()
            print(f"iter {it + 1}: loss {losses[it + 1]:.4f}, {step_ends[-1] - start:.1f} s", flush=True)
    raw.save_pretrained(spec["out"])
    child_result({"step_ends": step_ends, "tokens": [batch * block] * steps, "losses": losses,
                  "first_step_s": round(step_ends[0] - start, 2), "corpus_tokens": len(data),
                  "model_config": raw.config.to_diff_dict()})
