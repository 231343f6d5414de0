"""One source of randomness for the data-side objectives: a numpy Generator drawn from the
torch.Generator the engine passes to `collate`.

The corruption code is vectorised numpy (argsort over random keys, Poisson draws), which
torch's generator cannot drive directly; seeding a numpy Generator from one draw of the torch
generator keeps every batch a pure function of the engine's (seed, step, rank) seed.
"""

from __future__ import annotations

import numpy as np
import torch


def numpy_rng(generator: torch.Generator | np.random.Generator) -> np.random.Generator:
    """A numpy Generator: `generator` itself, or one seeded by a 63-bit draw from the torch one
    (the draw advances the torch generator, so successive calls give independent streams)."""
    if isinstance(generator, np.random.Generator):
        return generator
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"expected a torch.Generator or numpy Generator, got {type(generator).__name__}")
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator).item())
    return np.random.default_rng(seed)
