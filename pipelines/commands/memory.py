"""Process memory settings applied when a command starts.

glibc gives every thread that allocates its own malloc arena (up to 8 per core) and keeps freed
memory in each: with torch's OpenMP threads, the tokenizer's thread pool and the training loop, a
pretrain's peak RSS varied between 1.2 and 1.65 GB from one run to the next with the same code
and data (docs/BENCHMARKS.md). Two arenas made it 1.29-1.31 GB on both a 52 MB and a 502 MB corpus
An explicit MALLOC_ARENA_MAX in the environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # mallopt parameter number, glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """mallopt(M_ARENA_MAX, arenas) on glibc; False (nothing done) elsewhere or when the user set it."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
