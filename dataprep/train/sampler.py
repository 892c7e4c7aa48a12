"""The order of a split's rows: seeded epoch permutations, split across ranks, resumable at any step.

Re-exported by :mod:`dataprep.train.loader`, which chains it with the rows and a collator.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from dataprep.errors import ConfigError


class StepSampler(Sampler[list[int]]):
    """Row indices of batch ``start_step``, ``start_step + 1``, ...: a seeded, resumable order,
    split across ranks.

    Epoch ``e`` is a permutation drawn from ``(seed, e)``. Global batch ``k`` is slice ``k mod
    steps_per_epoch`` of epoch ``k // steps_per_epoch``, ``batch_size * world_size`` rows long;
    rank ``r`` takes its ``r``-th ``batch_size`` rows. Every batch is a pure function of
    ``(seed, k, rank, world_size)``, so a run restarted at step ``k`` sees exactly the batches it
    would have seen, and the ranks' batches are disjoint. Two ranks, batch_size 2, 10 rows::

        epoch 0 permutation   7 2 | 9 0 || 4 1 | 8 5 || 3 6      steps_per_epoch = 10 // 4 = 2
        rank 0                7 2         4 1                    dropped_per_epoch = 2 (3 and 6,
        rank 1                      9 0         8 5              drawn again in epoch 1)

    When shuffling, the last ``num_rows % (batch_size * world_size)`` rows of each epoch's
    permutation (``dropped_per_epoch``, listed by :meth:`dropped`) are left out of that epoch, so
    every rank gets ``batch_size`` rows at every step; each epoch leaves out different rows. In file
    order (evaluation) every row is taken exactly once: the last global batch is cut short, so a rank
    may get a short batch or none at its last step.

    Args:
        num_rows: rows in the split.
        batch_size: rows per batch, per rank.
        seed: seed of the permutations (the same on every rank).
        start_step: the first batch to yield.
        num_steps: how many batches to yield (None: forever; one pass when not shuffling).
        shuffle: False keeps file order (evaluation).
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: how many ranks share the split.

    Raises:
        ConfigError: fewer rows than ``batch_size * world_size`` when shuffling, or a bad rank.
    """

    def __init__(self, num_rows: int, *, batch_size: int, seed: int = 0, start_step: int = 0,
                 num_steps: int | None = None, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in 0..{world_size - 1} (world_size {world_size})")
        span = batch_size * world_size
        if batch_size < 1 or (shuffle and num_rows < span):
            ranks = f" on each of {world_size} ranks" if world_size > 1 else ""
            raise ConfigError(f"batch_size {batch_size}{ranks} does not fit a split of {num_rows} rows; lower the batch size")
        self.num_rows, self.batch_size, self.seed = num_rows, batch_size, seed
        self.start_step, self.num_steps, self.shuffle = start_step, num_steps, shuffle
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = num_rows // span if shuffle else -(-num_rows // span)
        self.dropped_per_epoch = num_rows - self.steps_per_epoch * span if shuffle else 0
        if not shuffle and num_steps is None:
            self.num_steps = self.steps_per_epoch  # file order: one pass, the last batch may be short
        self._epoch, self._order = -1, np.arange(num_rows)

    def _permutation(self, epoch: int) -> np.ndarray:
        if self.shuffle and epoch != self._epoch:
            self._epoch, self._order = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)
        return self._order

    def indices(self, step: int) -> np.ndarray:
        """The row indices of this rank's batch ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        start = (k * self.world_size + self.rank) * self.batch_size
        return self._permutation(epoch)[start : start + self.batch_size]

    def dropped(self, epoch: int) -> np.ndarray:
        """The rows no rank sees in ``epoch`` (``dropped_per_epoch`` of them; none in file order)."""
        return self._permutation(epoch)[self.num_rows - self.dropped_per_epoch :].copy()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.num_steps is None or step < self.start_step + self.num_steps:
            yield self.indices(step).tolist()
            step += 1

    def __len__(self) -> int:
        return self.num_steps if self.num_steps is not None else self.steps_per_epoch
