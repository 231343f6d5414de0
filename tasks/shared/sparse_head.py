"""Sparse prediction: the MLM output layer (hidden -> vocabulary) runs only at the masked positions.

At 15 % masking the full-vocabulary logits of the other 85 % of positions are computed, stored
and back-propagated for nothing: with vocab 8,192 and hidden 256 that layer is about 40 % of the
forward FLOPs and most of the activation memory ([batch, length, vocab] floats, several copies).
NVIDIA's BERT, cramming (`sparse_prediction`) and ModernBERT (`masked_prediction`) gather the
masked rows first; so do we, without touching the transformers model: a forward pre-hook on its
output layer (`get_output_embeddings()`: the decoder Linear of BERT, RoBERTa, ALBERT and ELECTRA's
generator) hands it hidden[selected] ([N, hidden]) instead of hidden ([B, T, hidden]), so the model
returns logits [N, vocab] in row-major order of `selected`. The model is still called through its
top-level forward (DDP hooks and autocast apply), weight names and the export are unchanged, and
loss and gradients equal the dense computation (tests/objectives/test_sparse_head.py).

The rows are best given as flat positions computed by the collator on the host (`mlm_positions`):
indexing with a boolean mask on a GPU needs its count first (a device-to-host sync every step);
index_select with positions whose number the host already knows does not.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


def output_layer(model: torch.nn.Module) -> torch.nn.Module:
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model).get_output_embeddings()


def mlm_positions(labels: torch.Tensor) -> torch.Tensor:
    """Flat indices (into labels.reshape(-1)) of the predicted positions, in row-major order; the
    collators add them to MLM batches as "mlm_positions" while the labels are still on the host."""
    return torch.nonzero(labels.reshape(-1) != -100).squeeze(1)


def _rows(hidden: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    if selected.dtype == torch.bool:
        return hidden[selected]
    return hidden.reshape(-1, hidden.size(-1)).index_select(0, selected)


@contextmanager
def predict_only(model: torch.nn.Module, selected: torch.Tensor | None):
    """Within the block, model(...) computes MLM logits only at `selected`: flat positions from
    mlm_positions() (no device sync) or a [B, T] bool mask. None leaves the model dense."""
    if selected is None:
        yield
        return
    handle = output_layer(model).register_forward_pre_hook(lambda module, args: (_rows(args[0], selected), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def selected_labels(labels: torch.Tensor, sparse: bool, positions: torch.Tensor | None = None) -> torch.Tensor:
    """The labels that line up with the logits: the selected ones in order (sparse), or all."""
    if not sparse:
        return labels
    return labels.reshape(-1).index_select(0, positions) if positions is not None else labels[labels != -100]
