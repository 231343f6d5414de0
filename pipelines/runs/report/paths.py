"""How the report names a folder or a model path: never as an absolute path of the machine, since a
report is shared and the machine's folders are not."""

from __future__ import annotations

from pathlib import Path


def run_label(path: Path, root: Path) -> str:
    """A folder under the runs folder, relative to it (the runs folder itself: its name)."""
    rel = path.relative_to(root).as_posix()
    return root.resolve().name if rel == "." else rel


def shown_path(value: str, root: Path) -> str:
    """A model or folder as a page shows it: relative to the runs folder when inside it, else its last two
    parts; a Hub id or a relative path as it is."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        return value
    path, root = path.resolve(), root.resolve()
    if path == root or root in path.parents:
        return run_label(path, root)
    return "…/" + "/".join([p for p in path.parts if p != path.anchor][-2:])
