"""training.torch_compile (pipelines/engine/compile.py): compiled steps equal eager ones, the sparse MLM head's
changing row count recompiles once and then never, and the export and checkpoints keep plain weight
names. Inductor compiles for real (a C++ compiler is needed, as for any compiled run on a CPU)."""

import shutil

import pytest
import torch
from conftest import TINY_BERT, reset_accelerate
from tiny_run import build_tiny_tokenizer, overrides, strict_json_lines

from pipelines.config import load_recipe
from pipelines.engine.accelerator import make_accelerator
from pipelines.engine.optimizers import build_optimizer
from pipelines.engine.step import train_step
from tasks.base import get_task


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("compile-tok") / "tok")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    # compiled code and counters of one test never serve another; compile_model's process-wide dynamo
    # setting is put back (to torch's default) for the rest of the session
    torch._dynamo.reset()
    with torch._dynamo.config.patch(force_nn_module_property_static_shapes=True):
        yield
    torch._dynamo.reset()


def _steps(task, tok, batches, compiled: bool) -> tuple[list[dict], list[int]]:
    """Logs of real engine train steps from the same initial weights; with `compiled`, the number of
    graphs dynamo had compiled after each step."""
    from torch._dynamo.utils import counters

    from pipelines.engine.compile import compile_model

    reset_accelerate()
    acc = make_accelerator(task.recipe.training)
    torch.manual_seed(0)
    model = task.build_model(tok)
    if compiled:
        model = compile_model(model)
    opt = build_optimizer(model, task.recipe.training)
    model, opt = acc.prepare(model, opt)
    logs, graphs = [], []
    for batch in batches:
        logs.append(train_step(acc, model, opt, task, [batch], task.recipe.training.max_grad_norm).logs())
        graphs.append(counters["stats"]["unique_graphs"])
    return logs, graphs


def test_compiled_steps_equal_eager_and_masked_counts_recompile_once(tmp_path, tok_dir):
    recipe = load_recipe("bert-tiny", [*TINY_BERT, f"training.output_dir={tmp_path}",
                                       f"tokenizer.name_or_path={tok_dir}"])
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    task.setup(tok)
    train_data, _ = task.prepare(tok)
    gen, bs = torch.Generator().manual_seed(0), recipe.training.per_device_train_batch_size
    batches = [task.collate([train_data[i * bs + j] for j in range(bs)], gen) for i in range(6)]
    masked = [int(b["mlm_positions"].numel()) for b in batches]
    change = next(i for i, m in enumerate(masked) if m != masked[0])  # the first step with another count
    assert len(set(masked[change + 1:]) - {masked[0], masked[change]}) >= 2, masked  # and more new ones after it

    eager, _ = _steps(task, tok, batches, compiled=False)
    compiled, graphs = _steps(task, tok, batches, compiled=True)
    for step, (e, c) in enumerate(zip(eager, compiled)):
        for key in ("loss", "loss/mlm", "loss/nsp", "grad_norm"):
            assert c[key] == pytest.approx(e[key], rel=1e-4), (step, key)
    # the first changed count recompiles with a symbolic size; every later count reuses that graph
    # (without it: one recompilation per new count, then eager after torch._dynamo's limit of 8)
    assert graphs[0] >= 1 and graphs[change] > graphs[change - 1], (graphs, masked)
    assert graphs[change:] == [graphs[change]] * (len(graphs) - change), (graphs, masked)


def _train(out, tok_dir, *extra):
    """An engine run (setup, loop, finish) of the tiny BERT; returns its result and trained weights."""
    from pipelines.engine.loop import finish, loop, setup

    reset_accelerate()
    recipe = load_recipe("bert-tiny", overrides(out, tok_dir, *extra))
    run = setup(get_task(recipe.task)(recipe), recipe)
    result = finish(run, loop(run))
    return result, {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def test_compiled_run_exports_plain_weights_and_resumes(tmp_path, tok_dir):
    """A compiled engine run: the export loads in plain transformers with the trained weights, the
    checkpoints have plain names, and a run resumed from one, compiled or not, lands on the
    uninterrupted run's weights."""
    from safetensors.torch import load_file
    from torch._dynamo.utils import counters
    from transformers import AutoModelForPreTraining

    args = ["training.torch_compile=true", "training.max_steps=4", "training.save_steps=2"]
    full, trained = _train(tmp_path / "full", tok_dir, *args)
    assert counters["stats"]["unique_graphs"] >= 1  # the engine did compile
    ckpt = full.output_dir / "checkpoints" / "step-000002"
    assert not [k for k in load_file(ckpt / "model.safetensors") if "_orig_mod" in k]

    loaded, info = AutoModelForPreTraining.from_pretrained(full.export_dirs[0], output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    state = loaded.state_dict()
    assert state.keys() == trained.keys()
    for name, value in trained.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)

    for compile_on in ("true", "false"):  # training.torch_compile may change on a resume (run_folder.py)
        resumed = tmp_path / f"resumed-{compile_on}"
        (resumed / "checkpoints").mkdir(parents=True)
        shutil.copytree(ckpt, resumed / "checkpoints" / ckpt.name)
        torch._dynamo.reset()
        _, again = _train(resumed, tok_dir, *args, f"training.torch_compile={compile_on}",
                          "training.resume_from_checkpoint=latest")
        assert [r["step"] for r in strict_json_lines(resumed / "metrics.jsonl") if "loss" in r] == [3, 4]
        for name, value in again.items():  # other graphs (or eager) after the resume: equal to rounding
            torch.testing.assert_close(value, trained[name], rtol=1e-4, atol=1e-5, msg=f"{compile_on}: {name}")


def test_missing_cpp_compiler_is_one_line():
    from torch._inductor import config as inductor_config

    from pipelines.engine.compile import compile_model
    from pipelines.errors import LmforgeError

    if torch.cuda.is_available():
        pytest.skip("the compiler check is for CPU training")
    # inductor's own patch: a monkeypatch of its config proxy leaves `cxx` deleted for later tests
    with inductor_config.patch({"cpp.cxx": ("lmforge-no-such-compiler",)}):
        with pytest.raises(LmforgeError, match=r"training\.torch_compile=true needs a C\+\+ compiler"):
            compile_model(torch.nn.Linear(2, 2))


def test_missing_cpp_compiler_is_named_before_the_run_folder_exists(tmp_path, tok_dir):
    from tiny_run import train_tiny
    from torch._inductor import config as inductor_config

    from pipelines.errors import LmforgeError

    if torch.cuda.is_available():
        pytest.skip("the compiler check is for CPU training")
    out = tmp_path / "run"
    with inductor_config.patch({"cpp.cxx": ("lmforge-no-such-compiler",)}):
        with pytest.raises(LmforgeError, match=r"needs a C\+\+ compiler"):
            train_tiny(out, tok_dir, "training.torch_compile=true", "training.max_steps=2")
    assert not out.exists()
