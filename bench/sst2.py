"""`python -m bench sst2`: SST-2 dev accuracy of a pretrained export against the same
architecture from random initialisation, same fine-tuning budget (does pretraining help?)."""

from __future__ import annotations


def sst2(pretrained: str, glue_dir: str, overrides: list[str]) -> dict:
    """SST-2 dev accuracy: the pretrained export vs the same config with fresh weights."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    from pipelines.commands.finetune import run_finetune

    out = {}
    for name, extra in (("pretrained", []), ("random_init", ["objective.random_init=true"])):
        for state in (AcceleratorState, GradientState, PartialState):  # two runs in one process
            state._reset_state() if state is not AcceleratorState else state._reset_state(True)
        summary = run_finetune("glue/sst2", pretrained, glue_dir=glue_dir,
                               output_dir=f"runs/bench/sst2-{name}",
                               overrides=["training.overwrite_output_dir=true", *overrides, *extra])
        out[name] = summary["sst2"]["accuracy"]
    return out
