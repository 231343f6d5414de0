"""Where a built tokenizer goes: never over files lmforge did not write.

A folder lmforge wrote (it holds MARKER) with nothing but tokenizer files is replaced whole and
atomically. A folder holding anything else is refused before any training unless `overwrite`;
then only the tokenizer files in it are replaced, one by one, and every other file stays.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipelines.errors import LmforgeError

MARKER = ".lmforge-tokenizer"  # written into every folder build_tokenizer publishes
# the files a transformers tokenizer folder may hold (save_pretrained of any family)
TOKENIZER_FILES = frozenset({
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
    "chat_template.jinja", "chat_template.json", MARKER,
})


def foreign_entries(folder: Path) -> list[str]:
    """Names in `folder` that are not tokenizer files."""
    return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if p.name not in TOKENIZER_FILES)


def check_tokenizer_folder(folder: str | Path, overwrite: bool = False) -> None:
    """Refuse a non-empty `folder` that lmforge did not write, or that holds other files, unless `overwrite`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise LmforgeError(f"tokenizer output {folder} is a file, not a folder")
    if overwrite or not folder.is_dir() or not any(folder.iterdir()):
        return
    foreign = foreign_entries(folder)
    if (folder / MARKER).exists() and not foreign:
        return  # an earlier lmforge tokenizer: replaced whole
    what = f"holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}" if foreign \
        else "holds a tokenizer lmforge did not write"
    raise LmforgeError(f"tokenizer output {folder} is not empty and {what}: choose a new or empty folder, or pass "
                       "--overwrite to replace only the tokenizer files in it")


def publish_tokenizer(built: Path, folder: Path) -> None:
    """Move the finished tokenizer folder `built` to `folder` (checked by check_tokenizer_folder)."""
    (built / MARKER).write_text(json.dumps({"written_by": "lmforge"}) + "\n", encoding="utf-8")
    if not folder.is_dir() or not foreign_entries(folder):
        from pipelines.atomic import replace_folder

        replace_folder(built, folder)  # nothing but tokenizer files there: swap the folder atomically
        return
    for old in folder.iterdir():  # other files are there: swap the tokenizer files only
        if old.name in TOKENIZER_FILES and not (built / old.name).exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    for new in built.iterdir():
        os.replace(new, folder / new.name)
    built.rmdir()
