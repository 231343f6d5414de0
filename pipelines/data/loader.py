"""Collated micro-batches ahead of the training step, in DataLoader worker processes.

Every micro-batch is a pure function of (seed, step, micro-batch, rank): the sampler
(pipelines/data/sampler.py) picks its examples and the collator's generator is seeded from its
slice number (global micro-batch x world + rank: sampler.slice_seed). So the loader can run in
any number of workers, prefetch in any order and resume at any step, and the batches stay
identical: a run with 0 workers and one with 2 see the same tensors, and a resumed run sees exactly
what the interrupted one would have.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from pipelines.data.sampler import GlobalBatchSampler, slice_seed


class MicroBatches(Dataset):
    """Item g = the collated micro-batch number g (= step * accumulation + micro) of this rank."""

    def __init__(self, task, examples, sampler: GlobalBatchSampler, seed: int, accumulation: int, rank: int):
        self.task, self.examples, self.sampler = task, examples, sampler
        self.seed, self.accumulation, self.rank = seed, accumulation, rank

    def __len__(self) -> int:  # the loader is driven by an explicit range of micro-batch numbers
        return 2**62

    def __getitem__(self, g: int) -> dict:
        gen = torch.Generator().manual_seed(slice_seed(self.seed, g, self.sampler.world, self.rank))
        idx = self.sampler.indices(g, self.rank)
        return self.task.collate([self.examples[i] for i in idx], gen)


def micro_batch_loader(task, examples, sampler: GlobalBatchSampler, seed: int, accumulation: int, rank: int,
                       first_step: int, last_step: int, workers: int = 0, prefetch: int = 4,
                       pin_memory: bool = False, worker_init_fn=None) -> DataLoader:
    """Micro-batches of steps [first_step, last_step) in order; `workers` processes collate ahead,
    each starting with `worker_init_fn` (the engine's: ignore SIGTERM / SIGINT, which the training
    process handles; pipelines/engine/preemption.py)."""
    dataset = MicroBatches(task, examples, sampler, seed, accumulation, rank)
    order = range(first_step * accumulation, last_step * accumulation)
    extra = ({"prefetch_factor": prefetch, "persistent_workers": False, "worker_init_fn": worker_init_fn}
             if workers > 0 else {})
    # its own generator: starting an iterator draws the workers' base seed, which without one comes
    # from torch's global generator, the one that drives dropout: after a resume restored that
    # generator, the draw would shift every later dropout mask (the resume would not be exact)
    return DataLoader(dataset, batch_size=None, sampler=order, num_workers=workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed), **extra)
