"""Evaluation runs the model once per eval batch: Task.eval_batch returns the loss terms and what
eval_metrics needs (GLUE: predictions), so GLUE's metrics come from the loss's forward pass; GLUE's
eval examples are ordered by length (less padding) when all of them are evaluated."""

import pytest
import torch
from conftest import tiny_bert_checkpoint
from test_grouped_batching import varied_glue

from pipelines.config import Recipe, load_recipe
from pipelines.data.sampler import GlobalBatchSampler
from pipelines.engine.accelerator import make_accelerator
from pipelines.engine.step import evaluate
from tasks.base import Task, get_task


def _glue(tmp_path, *overrides):
    tiny_bert_checkpoint(tmp_path / "base")
    glue = varied_glue(tmp_path / "glue")
    recipe = load_recipe("glue", [f"model.name_or_path={tmp_path / 'base'}", f"objective.glue_dir={glue}",
                                  "objective.glue_task=sst2", f"training.output_dir={tmp_path / 'out'}",
                                  "training.per_device_eval_batch_size=16", *overrides])
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    task.setup(tok)
    return recipe, task, tok


def test_glue_evaluation_runs_one_forward_per_batch_with_the_two_pass_metrics(tmp_path):
    recipe, task, tok = _glue(tmp_path)
    _, dev = task.prepare(tok)
    acc = make_accelerator(recipe.training)
    model = acc.prepare(task.build_model(tok))
    gen = torch.Generator().manual_seed(0)
    batches = [task.collate([dev[i] for i in idx], gen) for idx in GlobalBatchSampler.eval_batches(len(dev), 16, 0, 0)]

    calls = []
    hook = model.register_forward_pre_hook(lambda *_: calls.append(1))
    metrics = evaluate(acc, model, task, batches)
    hook.remove()
    assert len(calls) == len(batches) == 5

    # the previous evaluation: the loss pass, then eval_metrics' own forward pass over the same batches
    model.eval()
    with torch.no_grad():
        loss = sum(task.loss(model, b)["loss"] for b in batches).item() / len(dev)
    two_pass = task.eval_metrics(model, batches)
    assert metrics["eval/loss"] == pytest.approx(loss, rel=1e-6)
    assert {k.removeprefix("eval/"): v for k, v in metrics.items() if k != "eval/loss"} == two_pass


def test_glue_eval_examples_are_ordered_by_length_only_when_all_are_evaluated(tmp_path):
    _, task, tok = _glue(tmp_path)
    _, dev = task.prepare(tok)
    lengths = [len(e["input_ids"]) for e in dev]
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) > 5

    capped = get_task("glue")(load_recipe("glue", [f"model.name_or_path={tmp_path / 'base'}",
                                                   f"objective.glue_dir={tmp_path / 'glue'}",
                                                   "objective.glue_task=sst2", "training.max_eval_batches=2"]))
    capped.setup(tok)
    _, in_file_order = capped.prepare(tok)
    # with a cap, the first rows of the file are evaluated, as before; the same examples either way
    assert [len(e["input_ids"]) for e in in_file_order] != sorted(lengths, reverse=True)
    key = lambda e: (e["split"], e["label"], tuple(e["input_ids"]))  # noqa: E731
    assert sorted(map(key, in_file_order)) == sorted(map(key, dev))


class _Linear(Task):
    """A task whose eval_metrics predates the outputs argument (the old two-argument signature)."""

    def loss(self, model, batch):
        return {"loss": model(batch["x"]).square().sum()}

    def loss_counts(self, batch):
        return {"loss": torch.tensor(batch["x"].shape[0])}

    def eval_metrics(self, model, batches):
        with torch.no_grad():
            return {"mean_output": torch.cat([model(b["x"]) for b in batches]).mean().item()}


def test_an_eval_metrics_override_without_outputs_keeps_working(tmp_path):
    recipe = Recipe()
    recipe.training.output_dir = str(tmp_path)
    acc = make_accelerator(recipe.training)
    model = torch.nn.Linear(3, 1)
    batches = [{"x": torch.randn(4, 3, generator=torch.Generator().manual_seed(i))} for i in range(3)]
    metrics = evaluate(acc, model, _Linear(recipe), batches)
    with torch.no_grad():
        outs = torch.cat([model(b["x"]) for b in batches])
    assert metrics["eval/mean_output"] == outs.mean().item()
    assert abs(metrics["eval/loss"] - outs.square().mean().item()) < 1e-6
