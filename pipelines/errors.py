"""One exception type for every mistake a user can make (bad recipe, missing file, bad row).

The CLI catches it and prints its message as a single line with a non-zero exit; anything
else is a bug in lmforge and keeps its traceback.
"""


class LmforgeError(Exception):
    """A user-fixable problem. The message names the file / field / value at fault."""


class Preempted(Exception):
    """The run stopped on a signal (SIGTERM from SLURM or a cloud preemption, Ctrl-C) after saving a
    checkpoint. `code` is the exit status (128 + the signal: 143 for SIGTERM, 130 for SIGINT); the
    message, empty on all ranks but the main one, says where the checkpoint is and how to resume."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message)
        self.code = code


def warn(message: str) -> None:
    """One `lmforge: warning:` line on stderr, from the main process only (RANK is set by launchers)."""
    import os
    import sys

    if os.environ.get("RANK", "0") == "0":
        print(f"lmforge: warning: {message}", file=sys.stderr, flush=True)


def one_line(exc: BaseException | str, limit: int | None = 200) -> str:
    """A library's exception text as one line for an `lmforge: error:` message: whitespace and line
    breaks collapsed, cut at `limit` characters (None: whole)."""
    text = " ".join(str(exc).split())
    return text if limit is None else text[:limit]
