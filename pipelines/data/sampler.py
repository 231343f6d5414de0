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

Length grouping (training.group_by_length, as HF Trainer's LengthGroupedSampler) reorders EXAMPLES
within each epoch's permutation before it is cut into slices: megabatches of 50 global batches, each
sorted by length, cut into global batches, whose order is shuffled (the longest first). The
megabatch is a whole number of global batches and the order depends only on (seed, epoch, lengths,
global batch size), so every property above still holds; the slices of one global batch just hold
examples of similar lengths, and less padding is collated (tests/finetuning/test_grouped_batching.py).
"""

from __future__ import annotations

from collections.abc import Sequence

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


# global batches per megabatch in length grouping: HF's LengthGroupedSampler's megabatch_mult
MEGABATCH_GLOBAL_BATCHES = 50


class GlobalBatchSampler:
    """Epoch-wise seeded permutations cut into global micro-batches of batch_size x world.

    An epoch is a whole number of optimizer steps (global batches of batch_size x world x
    accumulation examples); the remainder of each permutation is dropped. So an epoch ends at a step
    boundary and uses the same examples for every split of the same global batch.

    `lengths` (one per example): group examples of similar lengths into the same batches (module
    docstring); the examples of each epoch are the same as without it, only their order changes."""

    def __init__(self, n_examples: int, batch_size: int, world: int, seed: int, accumulation: int = 1,
                 lengths: Sequence[int] | None = None):
        self.n, self.bs, self.world, self.seed = n_examples, batch_size, world, seed
        global_batch = batch_size * world * accumulation
        self.per_epoch = (n_examples // global_batch) * accumulation  # global micro-batches per epoch
        if self.per_epoch == 0:
            raise LmforgeError(f"the training set has {n_examples} examples, fewer than one global batch "
                               f"({batch_size} x {accumulation} accumulation steps x {world} processes): "
                               "lower per_device_train_batch_size")
        self.lengths = self.megabatch = None
        if lengths is not None:
            if len(lengths) != n_examples:
                raise ValueError(f"{len(lengths)} lengths for {n_examples} examples")
            self.lengths = torch.as_tensor(lengths, dtype=torch.int64)
            # a whole number of global batches: no global batch straddles two megabatches, whatever the split
            self.megabatch = MEGABATCH_GLOBAL_BATCHES * global_batch
            self.global_batch = global_batch
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 7_919 + epoch)
            # int32 where it fits: half the memory of a permutation of a large corpus's examples
            dtype = torch.int32 if self.n < 2**31 else torch.int64
            perm = torch.randperm(self.n, generator=g, dtype=dtype)
            self._epoch, self._perm = epoch, perm if self.lengths is None else self._grouped(perm, g)
        return self._perm

    def _grouped(self, perm: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The epoch's used examples (the permutation without its dropped remainder) in megabatches,
        each sorted by length descending (stable: ties keep the permutation's order), cut into global
        batches whose ORDER is then shuffled: without that, 50 steps in a row would run from the
        longest sentences to the shortest (HF's sampler does so), a length curriculum that cost SST-2
        up to 3 points in a 63-step fine-tune. The global batch holding the epoch's longest example
        goes first, so an out-of-memory shows at the first step.
        Written by hand: HF's LengthGroupedSampler cuts megabatches of one process's batch, so the
        examples of a global batch would change with the split between processes."""
        used = perm[: self.per_epoch * self.bs * self.world]
        lengths = self.lengths[used.long()]
        mega = torch.arange(len(used)) // self.megabatch
        longest = lengths.max()
        # one stable sort by (megabatch, length descending)
        order = torch.sort(mega * (longest + 1) + (longest - lengths), stable=True).indices
        batches = used[order].reshape(-1, self.global_batch)
        shuffled = torch.randperm(len(batches), generator=g)
        longest_batch = int(lengths[order].argmax()) // self.global_batch
        shuffled = torch.cat([torch.tensor([longest_batch]), shuffled[shuffled != longest_batch]])
        return batches[shuffled].reshape(-1)

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
