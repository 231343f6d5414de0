"""Sparse prediction (tasks/shared/sparse_head.py) gives the dense loss, gradients and accuracy,
for every MLM-style head: BERT MLM+NSP, RoBERTa, ALBERT, ELECTRA's generator and ModernBERT."""

import copy

import pytest
import torch

from pipelines.config import load_recipe
from tasks.base import get_task

TINY = ["model.config.hidden_size=32", "model.config.num_hidden_layers=2", "model.config.num_attention_heads=2",
        "model.config.intermediate_size=64", "tokenizer.vocab_size=800", "data.max_seq_length=64",
        "data.max_documents=40"]
NO_DROPOUT = ["model.config.hidden_dropout_prob=0", "model.config.attention_probs_dropout_prob=0"]
FAMILIES = {"bert-tiny": NO_DROPOUT, "roberta-tiny": [*NO_DROPOUT, "model.config.max_position_embeddings=66"],
            "albert-tiny": [*NO_DROPOUT, "model.config.embedding_size=16", "model.config.max_position_embeddings=64",
                            "model.config.classifier_dropout_prob=0"],
            "electra-tiny": [*NO_DROPOUT, "model.config.embedding_size=16", "model.config.max_position_embeddings=64"],
            # ModernBERT has no dropout in the recipe; its decoder sits after a dense+norm head
            "modernbert-mini-cram": ["model.config.layer_types=[full_attention,full_attention]",
                                     "model.config.max_position_embeddings=64"]}


def _task(name, tmp_path, sparse):
    recipe = load_recipe(name, TINY + FAMILIES[name] + [f"training.output_dir={tmp_path / name}",
                                                        f"objective.sparse_prediction={sparse}"])
    task = get_task(recipe.task)(recipe)
    tok = task.load_tokenizer()
    task.setup(tok)
    return task, tok


@pytest.mark.parametrize("name", list(FAMILIES))
def test_sparse_prediction_equals_dense(name, tmp_path):
    dense, tok = _task(name, tmp_path, False)
    sparse, _ = _task(name, tmp_path, True)
    train, _ = dense.prepare(tok)
    torch.manual_seed(0)
    model = dense.build_model(tok)
    twin = copy.deepcopy(model)
    if name == "electra-tiny":  # the flag lives on ELECTRA's module (its forward runs the generator)
        model.sparse_prediction, twin.sparse_prediction = False, True
    batch = dense.collate([train[i] for i in range(24)], torch.Generator().manual_seed(1))
    assert (batch["labels"] != -100).any()
    losses = []
    for task, net in ((dense, model), (sparse, twin)):
        terms = task.loss(net, batch)
        total = sum(terms.values())
        total.backward()
        losses.append({k: v.item() for k, v in terms.items()})
    for term in losses[0]:
        assert losses[1][term] == pytest.approx(losses[0][term], rel=1e-5, abs=1e-5), term
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    for n, p in twin.named_parameters():
        assert (p.grad is None) == (n not in grads), n
        if p.grad is not None:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
    with torch.no_grad():
        assert dense.eval_metrics(model, [batch])["mlm_accuracy"] == sparse.eval_metrics(twin, [batch])["mlm_accuracy"]


def test_sparse_logits_have_one_row_per_masked_token(tmp_path):
    task, tok = _task("roberta-tiny", tmp_path, True)
    train, _ = task.prepare(tok)
    model = task.build_model(tok)
    batch = task.collate([train[i] for i in range(8)], torch.Generator().manual_seed(0))
    out = task.mlm_output(model, batch, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert out.logits.shape == (int((batch["labels"] != -100).sum()), len(tok))
    dense = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert dense.dim() == 3  # the hook is gone after the call: the model is dense again
