"""`python -m pipelines ...` that also records what the TRAINED model computes, for test_deepspeed.py.

Launched by `accelerate launch --config_file accelerate_configs/deepspeed_zero{2,3}.yaml ds_probe.py
pretrain RECIPE ...`: the real CLI and engine, with engine.export wrapped. Before the export, ZeRO-3's
parameters are released to their partitioned state (each module parameter an empty placeholder, its
values in DeepSpeed's shards), as a model too big to keep gathered has them at the end of training:
on a tiny model DeepSpeed may keep them gathered, and an export that saved the module's own tensors
would then pass unnoticed. There, stops.weights_finite (the check before every save and the export)
must see the shards: one NaN put into the first parameter's shard is caught, then put back. After the
export:
  * the model as DeepSpeed holds it (the engine-wrapped model; ZeRO-3 shards gathered by DeepSpeed's
    own forward hooks, not by the export path) runs on a fixed batch: the trained model's outputs;
  * the engine state is saved as an lmforge checkpoint and consolidated with DeepSpeed's zero_to_fp32
    (get_fp32_state_dict_from_zero_checkpoint): the optimizer's fp32 master weights.
Both go to $LMFORGE_PROBE (tensors, numbers and strings: the test loads it with weights_only=True).
"""

import os
import sys
from pathlib import Path

import torch

from pipelines.commands import cli
from pipelines.engine import checkpoint, stops
from pipelines.engine import loop as engine

_export = engine.export
SENTENCES = (["the value of the object is returned", "a list of names"],
             ["if the file does not exist an error is raised", "see the module documentation"])


def export_and_probe(accelerator, task, model, tokenizer, out_dir: Path):
    plugin = accelerator.state.deepspeed_plugin
    params = list(accelerator.unwrap_model(model).parameters())
    if plugin is not None and plugin.zero_stage == 3:
        model.empty_partition_cache()  # every parameter back to its partitioned placeholder
    partitioned = sum(hasattr(p, "ds_tensor") and p.numel() == 0 for p in params)
    finite = stops.weights_finite(accelerator, model)
    shard = params[0].ds_tensor if partitioned else params[0].data  # one NaN must be seen, shard or not
    kept = shard.view(-1)[0].clone()
    shard.view(-1)[0] = float("nan")
    nan_seen = not stops.weights_finite(accelerator, model)
    shard.view(-1)[0] = kept
    dirs = _export(accelerator, task, model, tokenizer, out_dir)

    batch = {k: v.to(accelerator.device) for k, v in tokenizer(*SENTENCES, padding=True, return_tensors="pt").items()}
    model.eval()
    with torch.no_grad():
        outputs = model(**batch)
    ckpt = checkpoint.save_checkpoint(accelerator, out_dir.parent / "probe-checkpoint", 0, {"step": 0}, keep=0)
    master = None
    if plugin is not None:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        master = {k: v.detach().float().cpu().clone()
                  for k, v in get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag="pytorch_model").items()}
    if accelerator.is_main_process:
        torch.save({"distributed_type": str(accelerator.distributed_type).split(".")[-1],
                    "zero_stage": plugin.zero_stage if plugin is not None else -1,
                    "mixed_precision": str(accelerator.mixed_precision),
                    "n_params": len(params), "partitioned_at_export": partitioned,
                    "weights_finite": finite, "nan_seen": nan_seen,
                    "inputs": {k: v.cpu() for k, v in batch.items()},
                    "outputs": {k: v.float().cpu() for k, v in outputs.items() if isinstance(v, torch.Tensor)},
                    "zero_to_fp32": master}, os.environ["LMFORGE_PROBE"])
    return dirs


engine.export = export_and_probe

if __name__ == "__main__":
    sys.exit(cli.main())
