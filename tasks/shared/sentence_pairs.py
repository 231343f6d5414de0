"""Segment pairs for the sentence-level objectives: BERT's next-sentence prediction (NSP) and
ALBERT's sentence-order prediction (SOP).

A document is a list of sentences, each a list of token ids (tasks.shared.tokenize_documents),
or of (token id, word id) pairs for word-level masking: tokens are only sliced and concatenated.
Both builders follow create_instances_from_document of google-research/bert and
google-research/albert: sentences are gathered into a chunk until it reaches a target length
(max_tokens, or with probability short_seq_prob a random shorter one, so the model also sees
short inputs), the chunk is cut at a random sentence boundary into A and B, and the pair is
truncated to max_tokens by truncate_seq_pair. Hand-written: no library builds NSP/SOP pairs
(transformers removed TextDatasetForNextSentencePrediction).

Labels follow the transformers heads: BertForPreTraining's next_sentence_label is 0 when B
continues A and 1 when B is random; AlbertForPreTraining's sentence_order_label is 0 for the
original order and 1 for swapped. Each pair's flag is True exactly when its label is 1.
"""

from __future__ import annotations

import numpy as np

from pipelines.errors import LmforgeError
from tasks.shared.rng import numpy_rng

Document = list[list[int]]
Pair = tuple[list[int], list[int], bool]


def _usable_documents(documents, max_tokens: int, objective: str) -> list[Document]:
    """Documents without empty sentences; raises if no pair can be built."""
    if max_tokens < 2:
        raise LmforgeError(f"{objective}: max_tokens must be >= 2 (one token per segment), got {max_tokens}")
    docs = [d for d in ([list(s) for s in doc if len(s)] for doc in documents) if d]
    if not any(len(d) >= 2 for d in docs):
        raise LmforgeError(f"{objective} needs documents of at least 2 sentences, but none of the corpus's "
                           f"{len(docs)} documents has more than one: give one sentence per line with a "
                           "blank line between documents")
    return docs


def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_tokens: int,
                      rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """BERT's truncate_seq_pair: drop one token at a time from the longer segment, from its front or
    its back at random ("to add more randomness and avoid biases"), until the pair fits."""
    excess = len(tokens_a) + len(tokens_b) - max_tokens
    a_lo, a_hi, b_lo, b_hi = 0, len(tokens_a), 0, len(tokens_b)
    for front in (rng.random(excess) < 0.5 if excess > 0 else ()):
        if a_hi - a_lo > b_hi - b_lo:
            a_lo, a_hi = (a_lo + 1, a_hi) if front else (a_lo, a_hi - 1)
        else:
            b_lo, b_hi = (b_lo + 1, b_hi) if front else (b_lo, b_hi - 1)
    return tokens_a[a_lo:a_hi], tokens_b[b_lo:b_hi]


def _target_length(max_tokens: int, short_seq_prob: float, rng: np.random.Generator) -> int:
    if rng.random() < short_seq_prob:
        return int(rng.integers(2, max_tokens + 1))
    return max_tokens


def _chunks(document: Document, target: int, emit):
    """Cut a document into chunks of sentences, BERT-style: sentences are added until the chunk
    reaches `target` tokens; `emit(start, end)` gets each chunk's sentence range and returns where
    the next chunk starts (NSP puts back the sentences a random B did not use).

    Unlike BERT, a chunk never holds a lone sentence: it closes only once it has two, and it also
    takes the document's last sentence rather than leave it alone. BERT must make every lone
    sentence a random-next pair, which on the default corpus skewed NSP labels to 51-53 % random.
    """
    last = len(document) - 1
    start, length, i = 0, 0, 0
    while i <= last:
        length += len(document[i])
        if i == last or (length >= target and start < i < last - 1):
            start = emit(start, i + 1)
            i, length = start, 0
        else:
            i += 1


def _concat(sentences: list[list[int]]) -> list[int]:
    return [t for s in sentences for t in s]


def _random_segment(docs: list[Document], avoid: int, target: int, rng: np.random.Generator) -> list[int]:
    """Sentences from a random position of a random OTHER document, up to `target` tokens.
    (BERT retries 10 times to avoid the current document and may still return it.)"""
    other = int(rng.integers(len(docs) - 1))
    other += other >= avoid
    document = docs[other]
    tokens: list[int] = []
    for sentence in document[int(rng.integers(len(document))):]:
        tokens.extend(sentence)
        if len(tokens) >= target:
            break
    return tokens


def nsp_pairs(documents, max_tokens: int, generator, short_seq_prob: float = 0.1) -> list[Pair]:
    """BERT NSP pairs (tokens_a, tokens_b, is_random_next) with len(a) + len(b) <= max_tokens
    (pass max_seq_length - 3 for [CLS] A [SEP] B [SEP]). B is the true continuation with
    probability 1/2, else a span of another document; in document order, shuffle downstream."""
    docs = _usable_documents(documents, max_tokens, "NSP")
    if len(docs) < 2:
        raise LmforgeError("NSP needs at least 2 documents (random-next segments come from another document)")
    rng = numpy_rng(generator)
    pairs: list[Pair] = []
    for d, document in enumerate(docs):
        if len(document) < 2:  # could only make random-next pairs; still a source of random Bs
            continue
        target = _target_length(max_tokens, short_seq_prob, rng)

        def emit(start, end, d=d, document=document, target=target):
            chunk = document[start:end]
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
            tokens_a = _concat(chunk[:a_end])
            is_random = len(chunk) == 1 or rng.random() < 0.5
            if is_random:
                tokens_b = _random_segment(docs, d, target - len(tokens_a), rng)
                end = start + a_end  # the unused sentences start the next chunk, as in BERT,
                if end == len(document) - 1:  # unless only a lone last sentence would be left
                    end = len(document)
            else:
                tokens_b = _concat(chunk[a_end:])
            tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_tokens, rng)
            pairs.append((tokens_a, tokens_b, is_random))
            return end

        _chunks(document, target, emit)
    return pairs


def sop_pairs(documents, max_tokens: int, generator, short_seq_prob: float = 0.1) -> list[Pair]:
    """ALBERT SOP pairs (tokens_a, tokens_b, is_swapped) with len(a) + len(b) <= max_tokens: two
    consecutive segments of one document, swapped with probability 1/2.

    The pair is truncated before the coin flip, so a swapped pair is exactly an in-order pair
    reversed and only the order tells them apart. ALBERT's code turns a one-sentence chunk into a
    random-document pair (an NSP negative); here it is skipped, since SOP pairs must come from
    one document.
    """
    docs = _usable_documents(documents, max_tokens, "SOP")
    rng = numpy_rng(generator)
    pairs: list[Pair] = []
    for document in docs:
        target = _target_length(max_tokens, short_seq_prob, rng)

        def emit(start, end, document=document):
            chunk = document[start:end]
            if len(chunk) >= 2:
                a_end = int(rng.integers(1, len(chunk)))
                tokens_a, tokens_b = truncate_seq_pair(_concat(chunk[:a_end]), _concat(chunk[a_end:]),
                                                       max_tokens, rng)
                swapped = bool(rng.random() < 0.5)
                pairs.append((tokens_b, tokens_a, True) if swapped else (tokens_a, tokens_b, False))
            return end

        _chunks(document, target, emit)
    return pairs
