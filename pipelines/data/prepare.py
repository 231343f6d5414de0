"""`prepare`: tokenize a corpus once into memory-mapped shards, cached by fingerprint.

The cache key covers the source (local paths, sizes and mtimes, or the Hub dataset, config, split
and revision), the tokenizer (its serialized pipeline and vocabulary) and the settings that change
which text is read (text_column, max_documents); data.max_seq_length and the objective do not
change tokens, so every recipe over one corpus and tokenizer shares one shard set. A second run,
every other rank and every resume open the shards by memory map. The shards are written into a
hidden temp folder and renamed when complete, so an interrupted preparation is never taken for a
finished one (and is redone by the next run).
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np

from pipelines.config import DataSection, Recipe
from pipelines.data.shards import (
    FORMAT_VERSION,
    META,
    ShardSet,
    ShardWriter,
    publish,
    split_documents,
    token_dtype,
    write_meta,
)
from pipelines.data.sources import (
    cache_home,
    fingerprint,
    iter_documents,
    iter_file_documents,
    local_files,
    source_fingerprint,
)
from pipelines.data.tokenize import encode_documents, encode_texts, tokenizer_fingerprint, tokenizer_threads
from pipelines.errors import LmforgeError

BATCH_DOCUMENTS = 512
# Bump when the way text is read or tokenized changes: shards cached by an older lmforge are
# then prepared again instead of being reused with different tokens.
PREPARE_VERSION = 2


def shards_folder(data: DataSection, tokenizer) -> Path:
    root = Path(data.prepared_dir).expanduser() if data.prepared_dir else cache_home()
    key = fingerprint(FORMAT_VERSION, PREPARE_VERSION, source_fingerprint(data), tokenizer_fingerprint(tokenizer))
    return root / key


def _remove_stale(folder: Path):
    """Temp folders of preparations whose process is gone (killed mid-way)."""
    for tmp in folder.parent.glob(f".{folder.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(tmp, ignore_errors=True)


def batched(iterable, n: int):
    it = iter(iterable)
    while batch := list(islice(it, n)):
        yield batch


def source_streams(data: DataSection):
    """(shard prefix, documents) per source: one per local file (f00000, f00001, ... in sorted file
    order), or one for a Hub dataset. Per-file prefixes let a distributed preparation (datatrove,
    pipelines/data/datatrove_prepare.py) write the same shards as this one, each task its own files."""
    files = local_files(data)
    if files is None:
        yield "hub", iter_documents(data)
        return
    budget = data.max_documents
    for i, path in enumerate(files):
        docs = (d for d in iter_file_documents(path, data.text_column) if d)
        if budget is not None:
            docs = islice(docs, budget)
        counted = _Counted(docs)
        yield f"f{i:05d}", counted
        if budget is not None:
            budget -= counted.n
            if budget <= 0:
                return


class _Counted:
    def __init__(self, it):
        self.it, self.n = iter(it), 0

    def __iter__(self):
        for x in self.it:
            self.n += 1
            yield x


def write_shards(data: DataSection, tokenizer, folder: Path, shard_tokens: int = 2**28, log=print) -> dict:
    """Stream, tokenize and write the corpus into `folder` (temp folder + rename); returns meta."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    dtype = token_dtype(len(tokenizer))
    start, chars, shards = time.perf_counter(), 0, []
    with tokenizer_threads(), ThreadPoolExecutor(1) as pool:
        for prefix, documents in source_streams(data):
            writer = ShardWriter(tmp, dtype, shard_tokens, prefix=prefix)
            pending = None  # the Rust tokenizer encodes batch k+1 while numpy finishes batch k
            for docs in batched(documents, BATCH_DOCUMENTS):
                chars += sum(len(s) + 1 for d in docs for s in d)
                ahead = (docs, pool.submit(encode_texts, tokenizer, docs))
                if pending:
                    writer.add(encode_documents(tokenizer, pending[0], pending[1].result()))
                pending = ahead
            if pending:
                writer.add(encode_documents(tokenizer, pending[0], pending[1].result()))
            shards += writer.close()
    if not sum(s["tokens"] for s in shards):
        shutil.rmtree(tmp, ignore_errors=True)
        raise LmforgeError(f"data.corpus '{data.corpus}': no text found")
    seconds = time.perf_counter() - start
    write_meta(tmp, shards, dtype, {"source": source_fingerprint(data), "tokenizer": tokenizer_fingerprint(tokenizer),
                                    "vocab_size": len(tokenizer), "text_chars": chars, "seconds": round(seconds, 2)})
    publish(tmp, folder)
    meta = ShardSet.open(folder).meta
    log(f"prepared {meta['documents']:,} documents, {meta['tokens']:,} tokens in {len(shards)} shard(s) -> {folder} "
        f"({chars / 1e6 / max(seconds, 1e-9):.1f} MB/s)")
    return meta


def prepared_data(recipe: Recipe, tokenizer, log=print) -> ShardSet:
    """The recipe's corpus as shards for `tokenizer`: opened from the cache, prepared if missing."""
    folder = shards_folder(recipe.data, tokenizer)
    if not (folder / META).exists():
        write_shards(recipe.data, tokenizer, folder, log=log)
    return ShardSet.open(folder)


def prepared_split(recipe: Recipe, tokenizer) -> tuple[ShardSet, np.ndarray, np.ndarray]:
    """(shards, train document ids, eval document ids): whole documents held out for evaluation."""
    store = prepared_data(recipe, tokenizer)
    train, held = split_documents(store.n_documents, recipe.data.validation_fraction, recipe.training.seed)
    return store, train, held


def splits(recipe: Recipe, tokenizer, view) -> tuple:
    """(train, eval) example views of the recipe's prepared corpus, the one split every objective's
    prepare() makes: `view(store, document_ids, split)` builds each split's ExampleView from its
    documents (split is "train" or "eval"; whole documents are held out, data.validation_fraction)."""
    store, train_ids, eval_ids = prepared_split(recipe, tokenizer)
    return view(store, train_ids, "train"), view(store, eval_ids, "eval")


def documents_for(recipe: Recipe, tokenizer) -> tuple[list, list]:
    """(train, eval) documents as lists of sentences of ids: for tests and small corpora only."""
    store, train, held = prepared_split(recipe, tokenizer)

    def docs(ids):
        out = []
        for d in ids:
            b = store.sentence_bounds(int(d))
            out.append([store.tokens(int(s), int(e)).tolist() for s, e in zip(b[:-1], b[1:])])
        return out

    return docs(train), docs(held)
