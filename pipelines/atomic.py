"""Atomic publishing: a file or folder that exists under its final name is complete.

Everything is first written under a hidden temp sibling (same folder, so the same filesystem and
an atomic rename) and renamed into place on success. A failure removes the temp and leaves what
was there before untouched; only a successful write replaces it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_sibling(path: str | Path, tag: str | None = None) -> Path:
    """The hidden temp name next to `path`: .<name>.tmp<tag>; the tag defaults to the process id
    (concurrent writers do not collide); ranks that write one folder together pass a shared tag."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid() if tag is None else tag}")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; it replaces `path` when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(value):
    """`value` with NaN and infinities as None: json.dumps would write bare NaN / Infinity, which
    is not JSON (strict parsers, jq and JavaScript reject the file)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: str | Path, obj, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(json_safe(obj), indent=indent))


def replace_folder(tmp: Path, final: Path) -> None:
    """Put the finished folder `tmp` in place of `final`. The old folder is moved aside first and
    deleted only once the new one is in place, so `final` is never missing nor half-written."""
    old = None
    if final.exists():
        old = temp_sibling(final, f"old{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_folder(final: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder to fill; it replaces `final` when the block ends without an error
    and is removed when it does not."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a crashed run with a recycled pid
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
