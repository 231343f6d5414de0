"""The child process that runs gpu_check's in-process jobs, one JSON line each on stdin, one result
line each on stdout: the matmul peak, a throughput row, an export reloaded against the outputs its
run recorded, a random-init checkpoint to fine-tune. One process for all of them (imports and the
CUDA context once); the parent restarts it after a crash or a timeout, so a job that kills it costs
that job only.

    python -m bench.gpu_check.worker        (started by bench/gpu_check/runner.py)
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback

START, RESULT = "GPU_CHECK_START ", "GPU_CHECK_RESULT "


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device(spec: dict) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"cuda": cuda, "name": _device_name(), "count": torch.cuda.device_count() if cuda else 0,
            "torch": torch.__version__, "cuda_version": torch.version.cuda if cuda else None}


def peak(spec: dict) -> dict:
    """The best achieved FLOP/s of a large matmul in this run (pipelines.engine.flops.measure_matmul_peak)."""
    import torch

    from pipelines.engine.flops import measure_matmul_peak, peak_flops

    flops = measure_matmul_peak(getattr(torch, spec["dtype"]), n=spec["n"], seconds=spec["seconds"])
    return {"flops": flops, "dtype": spec["dtype"], "n": spec["n"], "device": _device_name(),
            "vendor_peak_flops": peak_flops(), "threads": torch.get_num_threads()}


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    from pipelines.runs.results import _cpu_name

    return _cpu_name()


_PREPARED: dict = {}  # (recipe, overrides) -> (task, tokenizer, train examples): prepared once per worker


def _prepared(recipe_name: str, overrides: list[str]):
    key = (recipe_name, tuple(overrides))
    if key not in _PREPARED:
        from pipelines.config import load_recipe
        from tasks.base import get_task

        recipe = load_recipe(recipe_name, overrides)
        task = get_task(recipe.task)(recipe)
        tokenizer = task.load_tokenizer()
        task.setup(tokenizer)
        train_data, _ = task.prepare(tokenizer)
        _PREPARED[key] = (task, tokenizer, train_data)
    return _PREPARED[key]


def throughput(spec: dict) -> dict:
    """Tokens/s of the engine's own train_step (forward, backward, clipping, fused AdamW) on the
    recipe's model and batch, with batches collated before the clock starts: the device's step, not
    the data path (the loader collates ahead in workers in a real run). Timed from the end of
    spec['warmup'] steps to the end of spec['steps'] more, one device sync at each end."""
    import torch

    from pipelines.engine.accelerator import make_accelerator
    from pipelines.engine.optimizers import build_optimizer
    from pipelines.engine.step import to_device, train_step

    overrides = [*spec["overrides"], f"training.mixed_precision={spec['precision']}",
                 f"training.output_dir={spec['output_dir']}"]
    task, tokenizer, train_data = _prepared(spec["recipe"], overrides)
    t = task.recipe.training
    _reset_accelerate()
    acc = make_accelerator(t)
    torch.manual_seed(t.seed)
    model = task.build_model(tokenizer)
    model.set_attn_implementation(spec["attn"])
    if spec["compile"]:
        from pipelines.engine.compile import compile_model

        compile_model(model)
    optimizer = build_optimizer(model, t)
    model, optimizer = acc.prepare(model, optimizer)
    bs, cuda = t.per_device_train_batch_size, acc.device.type == "cuda"
    gen = torch.Generator().manual_seed(t.seed)
    batches = [task.collate([train_data[(i * bs + j) % len(train_data)] for j in range(bs)], gen) for i in range(8)]
    if cuda:  # as the loader hands them over: pinned, so the copy overlaps the step
        batches = [{k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in batches]
        torch.cuda.reset_peak_memory_stats()
    tokens = [task.tokens_in(b) for b in batches]
    warmup, steps = spec["warmup"], spec["steps"]
    began = start = time.perf_counter()
    counted = 0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(acc.device)
            start = time.perf_counter()
        result = train_step(acc, model, optimizer, task, [to_device(batches[i % 8], acc.device)], t.max_grad_norm)
        counted += tokens[i % 8] if i >= warmup else 0
    _sync(acc.device)
    seconds = time.perf_counter() - start
    loss = float(result.values[0])
    inner = acc.unwrap_model(model)
    row = {"tokens_per_s": counted / seconds, "step_s": seconds / steps, "samples_per_s": bs * steps / seconds,
           "flops_per_token": task.flops_per_token(inner), "loss": loss, "loss_finite": loss == loss,
           "attn_implementation": inner.config._attn_implementation, "compiled": spec["compile"],
           "batch": bs, "seq": task.recipe.data.max_seq_length, "precision": str(acc.mixed_precision),
           "params_M": round(sum(p.numel() for p in inner.parameters()) / 1e6, 2),
           "warmup_s": round(start - began, 2), "device": _device_name(),
           "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
    del model, optimizer, inner, result
    acc.free_memory()
    if spec["compile"]:
        torch._dynamo.reset()
    return row


def _reset_accelerate() -> None:
    """accelerate keeps process-wide state (device, precision, plugins); each row builds its own."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def reload(spec: dict) -> dict:
    """An export loaded by plain transformers in this process (no DeepSpeed config active), run on the
    batch its training run recorded, compared with what the trained model computed there. Loaded in
    the dtype the run held the module in and run under autocast where the run was (DeepSpeed bf16: a
    bf16 module, no autocast), so equal weights give equal outputs up to kernel choice."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForPreTraining

    probe = torch.load(spec["probe"], weights_only=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with safe_open(f"{spec['folder']}/model.safetensors", "pt") as f:
        stored = {f.get_slice(k).get_dtype() for k in f.keys()}
    model, info = AutoModelForPreTraining.from_pretrained(spec["folder"], output_loading_info=True,
                                                          dtype=getattr(torch, probe["trained_dtype"]))
    bad_keys = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    empty = [n for n, p in model.named_parameters() if p.numel() == 0 or not bool(p.abs().sum() > 0)]
    model.to(device).eval()
    inputs = {k: v.to(device) for k, v in probe["inputs"].items()}
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=probe["autocast"]):
        got = model(**inputs)
    diffs, agree = {}, {}
    for name, expected in probe["outputs"].items():
        mine = got[name].float().cpu()
        diffs[name] = float((mine - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
        agree[name] = float((mine.argmax(-1) == expected.argmax(-1)).float().mean())
    return {"export_dtype": ",".join(sorted(stored)), "bad_keys": bad_keys, "empty_tensors": empty[:5],
            "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "max_rel_diff": max(diffs.values()), "diff_per_output": diffs, "argmax_agreement": min(agree.values())}


def checkpoint(spec: dict) -> dict:
    """A randomly initialised model of the recipe, with its tokenizer, as a save_pretrained folder:
    something to fine-tune that needs no pretraining run and no download."""
    import torch

    task, tokenizer, _ = _prepared(spec["recipe"], [*spec["overrides"], f"training.output_dir={spec['folder']}"])
    torch.manual_seed(0)
    model = task.build_model(tokenizer)
    model.save_pretrained(spec["folder"])
    tokenizer.save_pretrained(spec["folder"])
    return {"folder": spec["folder"], "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}


JOBS = {"device": device, "peak": peak, "throughput": throughput, "reload": reload, "checkpoint": checkpoint}


def main() -> int:
    # the protocol keeps the real stdout; anything a library prints goes to stderr (the worker's log)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from pipelines.errors import one_line

    for line in sys.stdin:
        job = json.loads(line)
        protocol.write(START + json.dumps({"id": job["id"]}) + "\n")
        try:
            out = JOBS[job["kind"]](job["spec"])
        except Exception as exc:  # one job's failure is its result; the worker goes on
            traceback.print_exc()
            out = {"error": f"{type(exc).__name__}: {one_line(exc, 400)}"}
        gc.collect()
        protocol.write(RESULT + json.dumps({"id": job["id"], **out}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
