"""Example sequences read on demand, and example indexes cached next to the shards.

An objective's training set is an ExampleView: a length and a function from index to example
dict, reading the memory-mapped shards only when the example is collated (in a DataLoader worker).
Indexes that take a pass over the corpus to build (NSP/SOP pairs, ELECTRA segments, BART sentence
runs) are saved once as .npy under <shards>/index/ and memory-mapped by every later run and rank.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np


class ExampleView:
    """A read-only sequence of `n` examples; view[i] = fn(i), view[a:b] = a list."""

    def __init__(self, n: int, fn):
        self.n, self.fn = n, fn

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.fn(k) for k in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.fn(i)

    def __iter__(self):
        return (self.fn(k) for k in range(self.n))


def _key(params: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(params):
        value = params[name]
        h.update(name.encode())
        h.update(np.ascontiguousarray(value).tobytes() if isinstance(value, np.ndarray)
                 else json.dumps(value, default=str).encode())
    return h.hexdigest()[:16]


def cached_index(store, name: str, params: dict, build) -> np.ndarray:
    """build() once per (shards, name, params); memory-mapped from <shards>/index/ afterwards.
    In-memory stores (no folder) just build."""
    if store.folder is None:
        return build()
    path = Path(store.folder) / "index" / f"{name}-{_key(params)}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    index = build()
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, index)
    os.replace(tmp, path)  # a reader never sees half an index
    return np.load(path, mmap_mode="r")


class RowBuffer:
    """Rows of ints appended one at a time into preallocated int64 chunks: an index builder's
    memory is 8 bytes a field, not a Python tuple per row (about 30x more)."""

    def __init__(self, width: int, chunk: int = 1 << 16):
        self.width, self.chunk = width, chunk
        self._full: list[np.ndarray] = []
        self._cur = np.empty((chunk, width), np.int64)
        self._n = 0

    def append(self, row):
        if self._n == self.chunk:
            self._full.append(self._cur)
            self._cur, self._n = np.empty((self.chunk, self.width), np.int64), 0
        self._cur[self._n] = row
        self._n += 1

    def __len__(self) -> int:
        return len(self._full) * self.chunk + self._n

    def array(self) -> np.ndarray:
        return np.concatenate([*self._full, self._cur[:self._n]]) if self._full else self._cur[:self._n].copy()
