"""`python -m pipelines ...` (the real CLI and engine) that also records, when the run exports, what
the TRAINED model computes and what the run was: gpu_check's distributed, resume and fine-tuning
runs are launched through it (`accelerate launch ... -m bench.gpu_check.probe pretrain RECIPE ...`).

After engine.export, the model as the engine holds it (DeepSpeed's engine, FSDP's sharded module:
ZeRO-3 / FSDP shards gathered by their own forward hooks, not by the export path) runs on a fixed
batch under the run's autocast; inputs and outputs go to $GPU_CHECK_PROBE (.pt, tensors only: the
reload loads it with weights_only=True), and the run's facts (distributed type, ZeRO stage, mixed
precision, device, peak GPU memory of the whole run) to $GPU_CHECK_PROBE with .json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from pipelines.commands import cli
from pipelines.engine import loop as engine

_export = engine.export
SENTENCES = (["the value of the object is returned", "a list of names"],
             ["if the file does not exist an error is raised", "see the module documentation"])


def export_and_probe(accelerator, task, model, tokenizer, out_dir: Path):
    dirs = _export(accelerator, task, model, tokenizer, out_dir)
    if not os.environ.get("GPU_CHECK_PROBE"):
        return dirs
    batch = {k: v.to(accelerator.device) for k, v in tokenizer(*SENTENCES, padding=True, return_tensors="pt").items()}
    model.eval()
    with torch.no_grad(), accelerator.autocast():
        outputs = model(**batch)
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)  # accelerate raises, not None, where absent
    cuda = accelerator.device.type == "cuda"
    facts = {"distributed_type": str(accelerator.distributed_type).rsplit(".", 1)[-1],
             "zero_stage": plugin.zero_stage if plugin is not None else None,
             "fsdp_version": getattr(getattr(accelerator.state, "fsdp_plugin", None), "fsdp_version", None),
             "mixed_precision": str(accelerator.mixed_precision), "device": str(accelerator.device),
             # accelerate autocasts except under DeepSpeed, which keeps the module itself in bf16
             "autocast": bool(accelerator.native_amp),
             "trained_dtype": str(next(accelerator.unwrap_model(model).parameters()).dtype).removeprefix("torch."),
             "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
    if accelerator.is_main_process:
        path = Path(os.environ["GPU_CHECK_PROBE"])
        inputs = {k: v.cpu() for k, v in batch.items()}
        outputs = {k: v.float().cpu() for k, v in outputs.items() if isinstance(v, torch.Tensor)}
        torch.save({"autocast": facts["autocast"], "trained_dtype": facts["trained_dtype"], "inputs": inputs,
                    "outputs": outputs}, path)
        path.with_suffix(".json").write_text(json.dumps(facts))
    return dirs


engine.export = export_and_probe

if __name__ == "__main__":
    sys.exit(cli.main())
