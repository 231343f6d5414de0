"""What the training loop learns from its steps without waiting for the device.

Reading a value off a GPU (`.item()`, `float()`, `.tolist()`, a Python `if` on a tensor) waits for every
queued kernel: the host stops queueing work and the device idles until it does. So a step keeps its
loss terms, grad norm and finiteness on the device (`StepResult`), fused AdamW skips a non-finite
update on the device (`found_inf`, the mechanism torch's GradScaler uses), and `StepTally` folds the
steps between two reads into a few device tensors. The loop reads them (one sync) only at logging,
evaluation and checkpoint steps, the last step, and on a stop signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class StepResult:
    """One optimizer step's global-batch loss terms (weighted sum first) and grad norm, on the device."""

    names: list[str]
    values: torch.Tensor  # [loss, term_1, ..., term_n, grad_norm (nan when not measured)]
    finite: torch.Tensor  # bool scalar: the update was applied
    measured_grad: bool

    def logs(self, values: list[float] | None = None) -> dict:
        """{"loss", "loss/<term>" (several terms), "grad_norm"} as Python floats (a host sync unless given)."""
        v = self.values.tolist() if values is None else values
        logs = {f"loss/{n}": v[1 + i] for i, n in enumerate(self.names)} if len(self.names) > 1 else {}
        logs["loss"] = v[0]
        if self.measured_grad:
            logs["grad_norm"] = v[-1]
        return logs


def nonfinite(logs: dict, names: list[str], check_grad: bool = True) -> str | None:
    """'loss is nan (mlm nan, nsp 0.6931)' / 'gradient norm is inf (loss 3.2)' for a bad step, else None."""
    if not math.isfinite(logs["loss"]):
        terms = ", ".join(f"{n} {logs[f'loss/{n}']:.4g}" for n in names) if len(names) > 1 else ""
        return f"loss is {logs['loss']}" + (f" ({terms})" if terms else "")
    g = logs.get("grad_norm")
    if check_grad and g is not None and not math.isfinite(g):
        return f"gradient norm is {g} (loss {logs['loss']:.4g})"
    return None


@dataclass
class BadStep:
    step: int
    logs: dict
    why: str


@dataclass
class TallyRead:
    """Everything since the previous read: the last step's logs, the non-finite steps, and
    `too_many`: the first step at which more than max_skipped_steps in a row were non-finite."""

    last: dict
    bad_steps: int
    first_bad: BadStep | None
    too_many: BadStep | None
    in_a_row: int


class StepTally:
    """Device-side accumulators between two host reads (all updates are tensor ops, no sync)."""

    def __init__(self, device, max_in_a_row: int, check_grad: bool):
        self.device, self.max_in_a_row, self.check_grad = device, max_in_a_row, check_grad
        self.in_a_row = torch.zeros((), dtype=torch.int64, device=device)  # carried across reads
        self._reset()

    def _reset(self):
        z = lambda: torch.zeros((), dtype=torch.int64, device=self.device)  # noqa: E731
        self.bad = z()
        self.first_bad, self.too_many = z() - 1, z() - 1  # step numbers; -1: none yet
        self.first_vals = self.too_many_vals = None
        self.last: StepResult | None = None

    def add(self, step: int, result: StepResult) -> None:
        bad = ~result.finite
        self.bad += bad
        self.in_a_row = (self.in_a_row + 1) * bad
        if self.first_vals is None:
            self.first_vals = self.too_many_vals = torch.zeros_like(result.values)
        new_first = bad & (self.first_bad < 0)
        self.first_bad = torch.where(new_first, step, self.first_bad)
        self.first_vals = torch.where(new_first, result.values, self.first_vals)
        new_too_many = (self.in_a_row > self.max_in_a_row) & (self.too_many < 0)
        self.too_many = torch.where(new_too_many, step, self.too_many)
        self.too_many_vals = torch.where(new_too_many, result.values, self.too_many_vals)
        self.last = result

    def read(self) -> TallyRead:
        """The one host sync: a single copy of every accumulator, then a fresh window."""
        last = self.last
        counts = torch.stack([self.bad, self.first_bad, self.too_many, self.in_a_row])
        packed = torch.cat([t.double() for t in (last.values, self.first_vals, self.too_many_vals, counts)])
        v = packed.tolist()
        k = len(last.values)
        bad, first, too_many, in_a_row = (int(x) for x in v[3 * k:])

        def bad_step(step, vals):
            if step < 0:
                return None
            logs = last.logs(vals)
            return BadStep(step, logs, nonfinite(logs, last.names, self.check_grad) or "non-finite step")

        out = TallyRead(last.logs(v[:k]), bad, bad_step(first, v[k:2 * k]), bad_step(too_many, v[2 * k:3 * k]),
                        in_a_row)
        self._reset()
        return out
