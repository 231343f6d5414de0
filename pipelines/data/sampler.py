"""Which examples each rank sees at each step: a pure function of (seed, step), so resuming
needs only the step number, and every process agrees without communication.

Written by hand rather than taken from accelerate's dataloader sharding because resume must
land on the exact example of the interrupted run, and a global micro-batch must hold the
same examples whatever the split between processes.
"""

from __future__ import annotations

import torch

from pipelines.errors import LmforgeError


def collate_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """A distinct, reproducible seed for each (step, micro-batch, rank); step -1 is evaluation."""
    return (seed * 1_000_003 + (step + 1) * 7919 + micro * 104_729 + rank * 15_485_863) % (2**63 - 1)


class GlobalBatchSampler:
    """Epoch-wise seeded permutations cut into global micro-batches of batch_size x world."""

    def __init__(self, n_examples: int, batch_size: int, world: int, seed: int):
        self.n, self.bs, self.world, self.seed = n_examples, batch_size, world, seed
        self.per_epoch = n_examples // (batch_size * world)
        if self.per_epoch == 0:
            raise LmforgeError(f"the training set has {n_examples} examples, fewer than one global batch "
                               f"({batch_size} x {world} processes): lower per_device_train_batch_size")
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
