"""Where training runs: the device, its CPU threads, its training precision, and moving batches onto it."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from dataprep.errors import ConfigError


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when torch sees it, else CPU), ``cpu`` or ``cuda``.

    Raises:
        ConfigError: ``cuda`` asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no CUDA device", fix="--device cpu (or auto)")
    return torch.device(name)


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2 CPU quota: "QUOTA PERIOD", or "max PERIOD" for none


def available_cores(*, cpu_max: Path | None = None) -> int:
    """The cores this process may actually run on: its CPU affinity, capped by a cgroup CPU quota.

    ``os.cpu_count()`` counts the machine's cores, which is too many in a container given 2 of
    64 cores (``taskset``, ``docker --cpus``): torch would start a thread per core and they would
    wait on each other.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on macOS and Windows
        cores = os.cpu_count() or 1
    try:
        quota, period = (cpu_max or CPU_MAX).read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 file, or one we cannot read: the affinity stands
        pass
    return max(1, cores)


def use_threads(requested: int | None) -> int:
    """Set torch's CPU threads to ``requested``, or to :func:`available_cores`; returns the number set."""
    threads = requested or available_cores()
    torch.set_num_threads(threads)
    return threads


class Contention:
    """Automatic threads (no ``--threads``): train on whichever is faster, all the cores' threads or one.

    Threads that wait for each other collapse when other work takes a core: on the 2-core VM, demo-sft
    training on two threads fell from about 12 steps/s to 0.3 when other jobs started, and one thread
    was faster while they ran. So the first progress interval trains on every thread and the next on
    one, and training keeps the faster; later, an interval at under a third of the best rate moves it
    to one thread for good. Each interval's rate counts training time only.
    """

    def __init__(self, threads: int, *, auto: bool):
        self.threads, self.many, self.auto = threads, threads, auto and threads > 1
        self.best = 0.0
        self.first: float | None = None  # the rate on every thread, while one is tried
        self.tried = False

    def _use(self, threads: int) -> None:
        self.threads = threads
        torch.set_num_threads(threads)

    def update(self, tokens_per_s: float) -> str | None:
        """The rate of the interval just trained; returns a line to print when the choice is made or changes."""
        if not self.auto or tokens_per_s <= 0:
            return None
        if not self.tried:
            if self.first is None:  # the first interval on every thread: try one next
                self.first = tokens_per_s
                self._use(1)
                return None
            self.tried = True
            if tokens_per_s > self.first:
                self.auto = False
                return (f"1 thread trains faster than {self.many} here ({tokens_per_s:,.0f} vs {self.first:,.0f} tok/s): "
                        f"other work holds the cores; going on with 1 (--threads N chooses)")
            self._use(self.many)
            self.best = self.first
            return f"{self.many} threads train faster than 1 here ({self.first:,.0f} vs {tokens_per_s:,.0f} tok/s)"
        self.best = max(self.best, tokens_per_s)
        if tokens_per_s >= self.best / 3:
            return None
        self.auto = False
        self._use(1)
        return (f"training slowed to {tokens_per_s:,.0f} tok/s from {self.best:,.0f}: other work holds the cores, "
                f"so it goes on with 1 thread instead of {self.many} (--threads N chooses)")


def busy_hint(threads: int, *, cores: int | None = None, load: float | None = None) -> str | None:
    """A hint when other work already keeps the cores busy (1-minute load average), else None.

    torch's threads wait for each other at every operation, so one that is descheduled stalls the
    rest: on a 2-core machine with a load of 4, one thread trained demo-sft 5-9x faster than two.
    """
    cores = cores or available_cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on Windows
            return None
    if threads < 2 or load < cores:
        return None
    return (f"the machine is busy (load {load:.1f} on {cores} cores): threads that wait for each other may be slower "
            f"than one (--threads 1)")


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 autocast on CUDA (fp32 master weights, bf16 matmuls); CPU stays fp32 (bf16 is slower there)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch with its tensors on ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so a clock read afterwards counts it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
