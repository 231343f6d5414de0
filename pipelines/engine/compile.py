"""`training.torch_compile`: torch.compile for every task, with the model left as it was built.

- In place (`nn.Module.compile`), not `torch.compile(model)`: the wrapper that returns keeps the
  model under `_orig_mod.`, so its state_dict (checkpoints, accelerate's get_state_dict, the
  export) would carry that prefix. Compiled in place, weight names, exports and checkpoints are the
  same with compile on or off, and a run can resume with the other setting (run_folder.py lets
  training.torch_compile change on a resume).
- Sparse MLM prediction (tasks/shared/sparse_head.py) hands the output layer the masked rows through
  a forward pre-hook whose closure holds the batch's positions ([n_masked], a new count every batch).
  Dynamo treats tensors it reaches through a module (a hook's closure on a submodule) as static
  shapes, so every new count recompiled the whole forward (a tiny BERT: 4 graphs in 6 steps; after 8,
  torch._dynamo's recompile limit sends the model back to eager for good). With
  `force_nn_module_property_static_shapes` off, automatic dynamic shapes treat that tensor like an
  input: the first new count recompiles once with a symbolic size, and no count after it does.
  Parameters stay static (`force_parameter_static_shapes`). The same automatic dynamic shapes cover
  the varying lengths of padded batches (fine-tuning, BART's encoder input): one recompile for each
  dimension that changes, then none (tests/engine/test_compile.py counts the MLM case).
- A task's own module around several transformers models (ELECTRA's generator + discriminator, a
  student with its frozen teacher) keeps its glue eager and compiles each model inside it: ELECTRA's
  forward registers the sparse-head hook on the generator, and registering a hook inside a compiled
  region is a graph break (torch's RemovableHandle id counter, accelerate's DeepSpeed check), which
  split its step into 7 graphs. Compiled per model, the hook is registered eagerly and traced inside
  the generator's graph, like BERT's.
"""

from __future__ import annotations

import torch

from pipelines.errors import LmforgeError


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """Compile `model` in place for training (inductor); returns the same module."""
    import torch._dynamo

    check_cpu_compiler()
    torch._dynamo.config.force_nn_module_property_static_shapes = False  # process-wide: see the module docstring
    for part in compiled_parts(model):
        part.compile()
    return model


def compiled_parts(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model itself when it is one transformers model (or no transformers model is inside: peft and
    other wrappers), else the transformers models directly inside it."""
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        return [model]
    return [m for m in model.children() if isinstance(m, PreTrainedModel)] or [model]


def check_cpu_compiler() -> None:
    """Inductor writes C++ for the CPU and needs a compiler; without one the first step fails deep in a
    traceback. Asked the way inductor asks (config.cpp.cxx, CXX); the run and the experiment ask before
    they write anything."""
    if torch.cuda.is_available():
        return
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception as exc:  # inductor's InvalidCxxCompiler, or a missing toolchain piece
        raise LmforgeError("training.torch_compile=true needs a C++ compiler on a CPU (torch inductor), and none "
                           f"was found ({type(exc).__name__}): install g++ or clang++ (or set CXX), or set "
                           "training.torch_compile=false") from None
