"""`prepare`: tokenize a corpus once into memory-mapped shards, cached by fingerprint.

The cache key covers the source (local paths, sizes and mtimes, or the Hub dataset, config, split
and revision), the tokenizer (its serialized pipeline and vocabulary) and the settings that change
which text is read (text_column, max_documents); data.max_seq_length, data.num_proc and the
objective do not change tokens, so every recipe over one corpus and tokenizer shares one shard set. A second run,
every other rank and every resume open the shards by memory map. The shards are written into a
hidden temp folder and renamed when complete, so an interrupted preparation is never taken for a
finished one (and is redone by the next run).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
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
from pipelines.data.tokenize import (
    encode_documents,
    encode_in_worker,
    encode_texts,
    start_worker,
    tokenizer_fingerprint,
    tokenizer_threads,
)
from pipelines.errors import LmforgeError

BATCH_DOCUMENTS = 512
# data.num_proc > 1: the first this-many characters are encoded in this process, the worker processes
# start only past them. Starting the workers (about a second) costs more than they save on a corpus
# this small (the default corpus, tests, max_documents runs); the shards are the same either way.
POOL_AFTER_CHARS = 8_000_000
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


def encode_processes(data: DataSection) -> int:
    """data.num_proc resolved: -1 = one process per core."""
    if data.num_proc == -1:
        return os.cpu_count() or 1
    if data.num_proc < 1:
        raise LmforgeError(f"data.num_proc: {data.num_proc} is out of range (must be -1 for one process per core, "
                           "or a positive count)")
    return data.num_proc


class Encoder:
    """(tag, documents) batches -> (tag, EncodedDocuments), in the order given. In this process the
    Rust tokenizer encodes batch k+1 in a thread (it releases the GIL) while numpy finishes batch k;
    with num_proc > 1, past POOL_AFTER_CHARS, num_proc worker processes encode, at most 2 x num_proc
    batches in flight (memory stays bounded however far the writer lags). Whoever encodes, a batch
    gives the same arrays, so the shards are the same bytes."""

    def __init__(self, tokenizer, num_proc: int):
        self.tokenizer, self.num_proc, self.chars = tokenizer, num_proc, 0
        self._thread = ThreadPoolExecutor(1)
        self._pool = None

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc):
        self._thread.shutdown()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def __call__(self, batches):
        batches = iter(batches)
        yield from self._here(batches)
        yield from self._in_workers(batches)  # what _here left, if anything

    def _count(self, docs: list) -> list:
        self.chars += sum(len(s) + 1 for d in docs for s in d)
        return docs

    def _here(self, batches):
        pending = None
        for tag, docs in batches:
            ahead = (tag, self._count(docs), self._thread.submit(encode_texts, self.tokenizer, docs))
            if pending:
                yield pending[0], encode_documents(self.tokenizer, pending[1], pending[2].result())
            pending = ahead
            if self.num_proc > 1 and self.chars >= POOL_AFTER_CHARS:
                break
        if pending:
            yield pending[0], encode_documents(self.tokenizer, pending[1], pending[2].result())

    def _in_workers(self, batches):
        window = deque()
        for tag, docs in batches:
            window.append((tag, self._workers().submit(encode_in_worker, self._count(docs))))
            if len(window) >= 2 * self.num_proc:
                tag, done = window.popleft()
                yield tag, done.result()
        for tag, done in window:
            yield tag, done.result()

    def _workers(self) -> ProcessPoolExecutor:
        """The worker processes, started on first use: forkserver (spawn where there is none), never a
        fork of this process and its threads; each rebuilds the tokenizer from its serialized form."""
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if context.get_start_method() == "forkserver":
                context.set_forkserver_preload(["pipelines.data.tokenize"])
            self._pool = ProcessPoolExecutor(self.num_proc, mp_context=context, initializer=start_worker,
                                             initargs=(self.tokenizer.backend_tokenizer.to_str(),))
        return self._pool


def source_batches(data: DataSection):
    """(shard prefix, up to BATCH_DOCUMENTS documents) over every source stream, in order."""
    for prefix, documents in source_streams(data):
        for docs in batched(documents, BATCH_DOCUMENTS):
            yield prefix, docs


def write_shards(data: DataSection, tokenizer, folder: Path, shard_tokens: int = 2**28, log=print) -> dict:
    """Stream, tokenize (data.num_proc processes) and write the corpus into `folder` (temp folder +
    rename); returns meta. Documents are written in the source's order, whoever encoded them."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()  # from the start: a preparation killed at any point leaves its temp folder, never the final one
    dtype = token_dtype(len(tokenizer))
    start, shards, writer = time.perf_counter(), [], None
    with tokenizer_threads(), Encoder(tokenizer, encode_processes(data)) as encode:
        for prefix, batch in encode(source_batches(data)):
            if writer is None or writer.prefix != prefix:  # the next source file: its own shards
                shards += writer.close() if writer else []
                writer = ShardWriter(tmp, dtype, shard_tokens, prefix=prefix)
            writer.add(batch)
        shards += writer.close() if writer else []
    chars = encode.chars
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
