"""SIGTERM (SLURM time limits, cloud preemption) and SIGINT (Ctrl-C) during training: finish the
step, save a checkpoint, exit with 128 + the signal.

The handler only records the signal; the loop asks at each step boundary. Under DDP the ranks
agree (a gather of one number per rank), so they all save at the same step even when the signal
reached them at different moments; DeepSpeed needs every rank in the save anyway. A second Ctrl-C
quits at once (KeyboardInterrupt), without a checkpoint.
"""

from __future__ import annotations

import os
import signal
import threading

import torch

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager: while inside, SIGTERM / SIGINT set `received` instead of killing."""

    def __init__(self, verbose: bool = True):
        self.received: int | None = None
        self.verbose = verbose
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal.signal works only there
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return  # a repeated SIGTERM: the save is under way
        self.received = signum
        if self.verbose:  # os.write: print() from a signal handler can hit a reentrant buffer write
            extra = " (Ctrl-C again to quit without saving)" if signum == signal.SIGINT else ""
            os.write(2, f"lmforge: {signal.Signals(signum).name} received: saving a checkpoint after this "
                        f"step{extra}\n".encode())

    def requested(self, accelerator) -> int:
        """The signal to stop for (0: none), the same on every rank."""
        mine = self.received or 0
        if accelerator.num_processes > 1:
            mine = int(accelerator.gather(torch.tensor([mine], device=accelerator.device)).max())
        return mine


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """DataLoader worker_init_fn: SLURM and Ctrl-C signal the whole process group; a worker that
    died of it would make the training process fail (worker exited unexpectedly) before it saves.
    The workers end with the training process."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
