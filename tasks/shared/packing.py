"""Packing tokenized documents into training blocks.

- pack_contiguous: one stream of all documents, a separator between documents, cut into full
  blocks that cross document boundaries (RoBERTa's FULL-SENTENCES, GPT-2's <|endoftext|>,
  T5's concatenated C4 stream). No position is padding; only the last block can be short.
- pack_sentences: whole sentences of ONE document grouped into blocks of at most max_tokens
  (fairseq's `complete_doc` break mode, used by BART so sentence permutation has sentences
  to permute and no block mixes documents).

Hand-written: transformers' run_mlm/run_clm `group_texts` does the cutting but has no separator
and always drops the remainder; it is a few numpy lines either way.
"""

from __future__ import annotations

import numpy as np

from pipelines.errors import LmforgeError


def pack_contiguous(documents: list[list[int]], block_size: int, separator_id: int | None,
                    drop_last: bool = True) -> list[list[int]]:
    """Blocks of exactly block_size ids from documents joined by separator_id.

    The separator goes BETWEEN documents (not after the last one); None joins them with nothing
    (T5's original stream). Empty documents are skipped, so two separators are never adjacent.
    drop_last=True drops the final short block (as group_texts does; T5 needs exact lengths),
    False keeps it, so the blocks concatenate back to the whole stream."""
    if block_size < 1:
        raise LmforgeError(f"packing: block_size must be >= 1, got {block_size}")
    docs = [np.asarray(d, dtype=np.int64) for d in documents if len(d)]
    if not docs:
        return []
    if separator_id is not None:
        sep = np.asarray([separator_id], dtype=np.int64)
        parts = [sep if k % 2 else docs[k // 2] for k in range(2 * len(docs) - 1)]
    else:
        parts = docs
    stream = np.concatenate(parts)
    num_full = len(stream) // block_size
    blocks = stream[: num_full * block_size].reshape(num_full, block_size).tolist()
    if not drop_last and len(stream) > num_full * block_size:
        blocks.append(stream[num_full * block_size:].tolist())
    return blocks


def pack_sentences(documents: list[list[list[int]]], max_tokens: int) -> list[list[list[int]]]:
    """Each document (a list of sentences of ids) split into examples of consecutive whole
    sentences totalling at most max_tokens ids. A sentence longer than max_tokens is cut into
    max_tokens pieces, each its own "sentence" (it cannot fit in any example otherwise)."""
    if max_tokens < 1:
        raise LmforgeError(f"packing: max_tokens must be >= 1, got {max_tokens}")
    examples: list[list[list[int]]] = []
    for doc in documents:
        current: list[list[int]] = []
        size = 0
        for sent in doc:
            for k in range(0, len(sent), max_tokens):
                piece = list(sent[k:k + max_tokens])
                if size + len(piece) > max_tokens and current:
                    examples.append(current)
                    current, size = [], 0
                current.append(piece)
                size += len(piece)
        if current:
            examples.append(current)
    return examples
