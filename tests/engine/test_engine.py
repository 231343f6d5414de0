"""The engine: global-batch loss semantics, exact resume, reproducible sampling."""

import json

import pytest
import torch
from conftest import TINY_BERT, reset_accelerate

from pipelines.config import load_recipe
from pipelines.data.sampler import GlobalBatchSampler
from pipelines.engine.accelerator import make_accelerator
from pipelines.engine.loop import train
from pipelines.engine.step import train_step
from tasks.base import get_task


def _tiny_task(tmp_path, extra=()):
    recipe = load_recipe("bert-tiny", TINY_BERT + [f"training.output_dir={tmp_path}", *extra])
    return recipe, get_task(recipe.task)(recipe)


def _split(batch, n):
    """n micro-batches of the rows; the flat masked positions are the collator's, recomputed per part."""
    from tasks.shared.sparse_head import mlm_positions

    size = batch["input_ids"].shape[0] // n
    parts = [{k: v[i * size:(i + 1) * size] for k, v in batch.items() if k != "mlm_positions"} for i in range(n)]
    return [{**p, "mlm_positions": mlm_positions(p["labels"])} for p in parts]


def _one_sgd_step(recipe, task, tok, examples, n_micro):
    """Parameter change after one SGD(lr=1) step = minus the gradient."""
    reset_accelerate()
    recipe.training.gradient_accumulation_steps = n_micro
    accelerator = make_accelerator(recipe.training)
    torch.manual_seed(0)
    model = task.build_model(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model, opt = accelerator.prepare(model, opt)
    batch = task.collate(examples, torch.Generator().manual_seed(7))
    logs = train_step(accelerator, model, opt, task, _split(batch, n_micro), max_grad_norm=0.0).logs()
    delta = {n: before[n] - p.detach() for n, p in accelerator.unwrap_model(model).named_parameters()}
    return logs, delta


def test_gradient_accumulation_gives_the_global_batch_gradient(tmp_path):
    recipe, task = _tiny_task(tmp_path, ["model.config.hidden_dropout_prob=0",
                                         "model.config.attention_probs_dropout_prob=0"])
    tok = task.load_tokenizer()
    train_data, _ = task.prepare(tok)
    examples = [train_data[i] for i in range(32)]
    logs1, g1 = _one_sgd_step(recipe, task, tok, examples, 1)
    logs4, g4 = _one_sgd_step(recipe, task, tok, examples, 4)
    # micro-batches hold different numbers of masked tokens: a per-micro-batch mean would differ
    assert logs1["loss"] == pytest.approx(logs4["loss"], rel=1e-5)
    assert logs1["loss/mlm"] == pytest.approx(logs4["loss/mlm"], rel=1e-5)
    for name in g1:
        torch.testing.assert_close(g1[name], g4[name], rtol=1e-4, atol=1e-6, msg=name)
    assert sum(float(g.abs().sum()) for g in g1.values()) > 0


def test_resume_lands_on_the_same_weights(tmp_path):
    import shutil

    from safetensors.torch import load_file

    full = tmp_path / "full"
    recipe, task = _tiny_task(full, ["training.max_steps=6", "training.save_steps=3"])
    train(task, recipe)
    assert (full / "checkpoints" / "step-000003" / "trainer_state.json").exists()
    # a second run that starts from the step-3 checkpoint alone (as if the first had died there)
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step-000003", resumed / "checkpoints" / "step-000003")
    shutil.copytree(full / "tokenizer", resumed / "tokenizer")
    reset_accelerate()
    recipe2, task2 = _tiny_task(resumed, ["training.max_steps=6", "training.save_steps=3",
                                          "training.resume_from_checkpoint=latest"])
    train(task2, recipe2)
    a = load_file(full / "final" / "model.safetensors")
    b = load_file(resumed / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    steps = [json.loads(line)["step"] for line in open(resumed / "metrics.jsonl") if '"loss"' in line]
    assert steps == [4, 5, 6]


def test_same_seed_same_run(tmp_path):
    """One seed fixes everything after the tokenizer: pairs, masks, dropout, data order, weights.
    (The tokenizer is trained once and reused, as a resumed run does: the `tokenizers` trainers
    break tied merge counts in hash order, which differs between processes.)"""
    from safetensors.torch import load_file

    from pipelines.data.default_corpus import default_corpus_path
    from tokenizer import build_tokenizer

    docs = [ln.strip() for ln in open(default_corpus_path()) if ln.strip()]
    build_tokenizer("bert", docs[:3000], 1000, tmp_path / "tok")
    weights = []
    for run in ("a", "b"):
        reset_accelerate()
        recipe, task = _tiny_task(tmp_path / run, ["training.max_steps=3",
                                                   f"tokenizer.name_or_path={tmp_path / 'tok'}"])
        train(task, recipe)
        weights.append(load_file(tmp_path / run / "final" / "model.safetensors"))
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], rtol=0, atol=0, msg=k)


def test_sampler_covers_each_epoch_once_and_is_pure():
    s = GlobalBatchSampler(100, 8, world=2, seed=3)
    seen = [i for g in range(s.per_epoch) for r in range(2) for i in s.indices(g, r)]
    assert len(seen) == len(set(seen)) == 96  # 6 global batches of 16, the rest dropped
    fresh = GlobalBatchSampler(100, 8, world=2, seed=3)
    assert fresh.indices(9, 1) == s.indices(9, 1)  # resume needs nothing but the step
    assert s.indices(0, 0) != GlobalBatchSampler(100, 8, world=2, seed=4).indices(0, 0)


def test_too_small_dataset_is_a_clear_error():
    from pipelines.errors import LmforgeError

    with pytest.raises(LmforgeError, match="fewer than one global batch"):
        GlobalBatchSampler(10, 8, world=2, seed=0)
