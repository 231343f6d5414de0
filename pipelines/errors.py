"""One exception type for every mistake a user can make (bad recipe, missing file, bad row).

The CLI catches it and prints its message as a single line with a non-zero exit; anything
else is a bug in lmforge and keeps its traceback.
"""


class LmforgeError(Exception):
    """A user-fixable problem. The message names the file / field / value at fault."""
