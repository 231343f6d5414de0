"""Which examples each rank sees at each step: a pure function of (seed, step), so resuming
needs only the step number, and every process agrees without communication.

Written by hand rather than taken from accelerate's dataloader sharding because resume must
land on the exact example of the interrupted run, and a global batch must hold the same examples
whatever the split between processes, accumulation steps and per-device batch size.

The unit is the SLICE: per_device_batch consecutive examples of the epoch's permutation. Rank r's
micro-batch m of step s is slice number (s * accumulation + m) * world + r, so for a fixed
per-device batch a slice holds the same examples, and gets the same collate seed (slice_seed),
however the global batch is split between processes and accumulation steps: 2 processes x GA 1
and 1 process x GA 2 collate identical tensors (tests/engine/test_distributed.py).
"""

from __future__ import annotations

import torch

from pipelines.errors import LmforgeError


def collate_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """A distinct, reproducible seed for each (step, micro-batch, rank); step -1 is evaluation."""
    return (seed * 1_000_003 + (step + 1) * 7919 + micro * 104_729 + rank * 15_485_863) % (2**63 - 1)


def slice_seed(seed: int, global_micro: int, world: int, rank: int) -> int:
    """The collate seed of rank `rank`'s part of global micro-batch `global_micro` (step x
    accumulation + micro): a function of the slice number global_micro x world + rank alone, so the
    split of a global batch between processes and accumulation steps does not change the masks."""
    return collate_seed(seed, global_micro * world + rank, 0, 0)


class GlobalBatchSampler:
    """Epoch-wise seeded permutations cut into global micro-batches of batch_size x world.

    An epoch is a whole number of optimizer steps (global batches of batch_size x world x
    accumulation examples); the remainder of each permutation is dropped. So an epoch ends at a step
    boundary and uses the same examples for every split of the same global batch."""

    def __init__(self, n_examples: int, batch_size: int, world: int, seed: int, accumulation: int = 1):
        self.n, self.bs, self.world, self.seed = n_examples, batch_size, world, seed
        global_batch = batch_size * world * accumulation
        self.per_epoch = (n_examples // global_batch) * accumulation  # global micro-batches per epoch
        if self.per_epoch == 0:
            raise LmforgeError(f"the training set has {n_examples} examples, fewer than one global batch "
                               f"({batch_size} x {accumulation} accumulation steps x {world} processes): "
                               "lower per_device_train_batch_size")
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 7_919 + epoch)
            # int32 where it fits: half the memory of a permutation of a large corpus's examples
            dtype = torch.int32 if self.n < 2**31 else torch.int64
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g, dtype=dtype)
        return self._perm

    def indices(self, global_micro: int, rank: int) -> list[int]:
        epoch, offset = divmod(global_micro, self.per_epoch)
        start = offset * self.bs * self.world + rank * self.bs
        return self._permutation(epoch)[start:start + self.bs].tolist()

    @staticmethod
    def eval_batches(n: int, batch_size: int, rank: int, max_batches: int, world: int = 1) -> list[list[int]]:
        """Fixed, in-order eval batches (the same every evaluation, so the curve is comparable)."""
        idx = list(range(rank, n, world))
        batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
        return batches[:max_batches] if max_batches > 0 else batches
