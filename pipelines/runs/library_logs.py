"""The libraries' own chatter goes to the run's log file, not the terminal: transformers' load reports
(a fine-tuning head is always "MISSING" from a pretrained checkpoint), weight loading and saving
progress bars, accelerate's and DeepSpeed's notices. The terminal keeps lmforge's lines, the
training progress bar, and errors. `output_dir/lmforge.log` keeps the rest, warnings included.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

LOG_FILE = "lmforge.log"
LIBRARY_LOGGERS = ("transformers", "accelerate", "DeepSpeed", "datasets", "huggingface_hub", "peft")
_ATTACHED: dict[str, logging.Handler] = {}


def quiet_accelerator_probe() -> None:
    """DeepSpeed warns "Setting accelerator to CPU" whenever it finds no GPU; saying so is enough."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def capture_library_logs(out_dir: Path) -> Path:
    """Library records of level WARNING and above to out_dir/lmforge.log; only errors on the terminal;
    no weight-loading progress bars. Safe to call again (one file handler per process)."""
    import transformers

    transformers.utils.logging.disable_default_handler()  # its own stderr handler
    transformers.utils.logging.disable_progress_bar()
    path = Path(out_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    old = _ATTACHED.pop("file", None)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setLevel(logging.WARNING)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    console = _ATTACHED.setdefault("console", logging.StreamHandler())
    console.setLevel(logging.ERROR)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if old is not None:
            logger.removeHandler(old)
            old.close()
        for handler in (file_handler, console):
            if handler not in logger.handlers:
                logger.addHandler(handler)  # propagation stays as each library set it
    _ATTACHED["file"] = file_handler
    return path
