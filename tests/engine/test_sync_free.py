"""The training step never reads the device (issue #12): no `.item()`/`float()`/`bool()` on a tensor,
no `.tolist()`, no boolean-mask indexing (its output size needs a device-to-host copy on a GPU).
On this CPU machine every tensor lives on the host, so the test records the operations that WOULD
wait for a GPU: aten._local_scalar_dense (behind item/float/int/bool), nonzero / masked_select /
index with a bool mask (data-dependent sizes), and Tensor.tolist.

One read is transformers' own: its mask builder checks `padding_mask.all()` on each forward of a
padded batch (to drop an all-ones mask). RoBERTa's packed batches skip it (the collator says on the
host that they hold no padding); for BERT/ELECTRA pairs and GPT-2 (whose model, given no mask,
reads input_ids to warn about padding instead) it is the only read."""

import traceback

import pytest
import torch
from conftest import TINY_BERT, reset_accelerate
from tiny_run import build_tiny_tokenizer, nan_loss, strict_json_lines, train_tiny
from torch.utils._python_dispatch import TorchDispatchMode

from pipelines.config import load_recipe
from pipelines.engine.accelerator import make_accelerator
from pipelines.engine.optimizers import build_optimizer
from pipelines.engine.step import train_step
from pipelines.errors import LmforgeError
from tasks.base import get_task

SYNCING = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default"}


class HostReads(TorchDispatchMode):
    """Records every aten call that needs the device's data on the host."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in SYNCING:
            library = any(f.filename.endswith("transformers/masking_utils.py") for f in traceback.extract_stack())
            self.reads.append(f"{name} (transformers' mask check)" if library else name)
        if name.startswith("aten.index.Tensor") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ())):
            self.reads.append(name + " (bool mask)")
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("bpe") / "bpe", "roberta")


def _task_and_step(recipe_name: str, tmp_path, tok, extra=()):
    """(task, train data, step(micro_batches) -> StepResult) for a tiny recipe with its real optimizer."""
    reset_accelerate()
    base = TINY_BERT if recipe_name != "gpt2-tiny" else [o for o in TINY_BERT if not o.startswith("model.config.")]
    recipe = load_recipe(recipe_name, [*base, f"training.output_dir={tmp_path}", f"tokenizer.name_or_path={tok}",
                                       *extra])
    task = get_task(recipe.task)(recipe)
    tokenizer = task.load_tokenizer()
    task.setup(tokenizer)
    train_data, _ = task.prepare(tokenizer)
    acc = make_accelerator(recipe.training)
    model = task.build_model(tokenizer)
    model, opt = acc.prepare(model, build_optimizer(model, recipe.training))
    return task, train_data, lambda micro: train_step(acc, model, opt, task, micro, recipe.training.max_grad_norm)


def _batches(task, train_data, n=3, size=8):
    gen = torch.Generator().manual_seed(0)
    return [[task.collate([train_data[i * size + j] for j in range(size)], gen)] for i in range(n)]


@pytest.mark.parametrize("recipe", ["bert-tiny", "electra-tiny", "roberta-tiny", "gpt2-tiny"])
def test_train_step_never_reads_the_device(recipe, tmp_path, tok, bpe, monkeypatch):
    byte_level = recipe in ("roberta-tiny", "gpt2-tiny")
    extra = {"gpt2-tiny": ["model.config.n_embd=32", "model.config.n_layer=2", "model.config.n_head=2",
                           "model.config.n_positions=64"],
             "roberta-tiny": ["model.config.max_position_embeddings=66"]}.get(recipe, [])
    task, data, step = _task_and_step(recipe, tmp_path, bpe if byte_level else tok, extra)
    batches = _batches(task, data)
    tolist_calls = []
    real_tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: tolist_calls.append(1) or real_tolist(t))
    with HostReads() as mode:
        results = [step(micro) for micro in batches]
    monkeypatch.undo()
    ours = [r for r in mode.reads if "transformers' mask check" not in r]
    assert ours == [] and tolist_calls == [], (ours, len(tolist_calls))
    if recipe == "roberta-tiny":  # packed blocks, marked unpadded on the host
        assert mode.reads == []
    else:  # at most transformers' one check per model forward (ELECTRA: generator + discriminator)
        assert len(mode.reads) <= len(batches) * (2 if recipe == "electra-tiny" else 1), mode.reads
    values = [r.logs() for r in results]  # the loop's read: finite, measured
    assert all(v["loss"] > 0 and v["grad_norm"] > 0 for v in values), values


def test_the_probe_sees_a_boolean_mask_gather(tmp_path, tok):
    """The probe is not blind: without the collator's host-side positions the MLM head falls back
    to a boolean-mask gather, which it reports."""
    task, data, step = _task_and_step("bert-tiny", tmp_path, tok)
    (micro,) = _batches(task, data, n=1)
    micro[0].pop("mlm_positions")
    with HostReads() as mode:
        step(micro)
    assert any("bool mask" in r or "nonzero" in r for r in mode.reads), mode.reads


def test_a_skipped_step_between_reads_is_reported_and_rewinds_the_schedule(tmp_path, tok):
    """Logging every 5 steps, a NaN at step 3: the read at step 5 reports one skipped step, and the
    learning rate there is the one of a run that read every step (4 applied updates, not 5)."""
    nan_at_3 = nan_loss(lambda n: n == 3)
    every = strict_json_lines(train_tiny(tmp_path / "a", tok, "training.max_steps=10", "training.nonfinite=skip",
                                         patch=nan_at_3).output_dir / "metrics.jsonl")
    sparse = strict_json_lines(train_tiny(tmp_path / "b", tok, "training.max_steps=10", "training.nonfinite=skip",
                                          "training.logging_steps=5", patch=nan_at_3).output_dir / "metrics.jsonl")
    every = {r["step"]: r for r in every if "tokens" in r}
    sparse = [r for r in sparse if "tokens" in r]
    assert [r["step"] for r in sparse] == [5, 10]
    assert [r["skipped_steps"] for r in sparse] == [1, 1]
    for r in sparse:
        assert r["lr"] == pytest.approx(every[r["step"]]["lr"], rel=1e-12)
        assert r["tokens"] == every[r["step"]]["tokens"]
    assert every[3]["skipped_steps"] == 1


def test_stop_names_the_bad_step_found_at_a_later_read(tmp_path, tok):
    out = tmp_path / "run"
    with pytest.raises(LmforgeError, match=r"^step 3: loss is nan.*stopped") as err:
        train_tiny(out, tok, "training.max_steps=10", "training.logging_steps=5", patch=nan_loss(lambda n: n == 3))
    assert "nothing was exported" in str(err.value)
    records = strict_json_lines(out / "metrics.jsonl")
    assert records[-1]["step"] == 3 and records[-1]["nonfinite"].startswith("loss is nan")
    assert not (out / "final").exists()
