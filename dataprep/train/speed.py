"""How fast a run goes: progress lines while it trains, and training vs loader throughput after.

:class:`Progress` prints a line after the first step, then one every ``progress_every`` seconds of
wall time and at the last step: step, loss, learning rate, tokens/s, time elapsed and the ETA::

    step     1/600  loss 5.6158  lr 4.00e-05  1,204 tok/s  elapsed 0:00  ETA 2:51
    step    37/600  loss 2.4410  lr 1.48e-03  1,530 tok/s  elapsed 0:10  ETA 2:34

Tokens/s measure the machine (its cores, its load, the accelerator), not the data, so they
are in ``verify.json`` and in the printed summary but take no part in ``passed`` or the
verdict. The loader is expected to deliver at least ``loader_ratio`` times the tokens/s
training consumes; below that, training waits for data (add ``workers``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from time import monotonic
from typing import Any


class Progress:
    """When a run prints a progress line, and the line: elapsed time and ETA from the steps done so far.

    Args:
        start: the step this process starts from (0, or where ``--resume`` picked up).
        total: the run's last step.
        every: seconds of wall time between lines (0: a line every step).
        clock: seconds, monotonic (default :func:`time.monotonic`; a test passes a fake one).
    """

    def __init__(self, *, start: int, total: int, every: float, clock: Callable[[], float] | None = None):
        self.clock = clock or monotonic
        self.start, self.total, self.every = start, total, every
        self.began = self.clock()
        self.last: float | None = None  # when the last line was printed

    def due(self, step: int) -> float | None:
        """Seconds elapsed when a line is due after ``step`` (the first, every ``every`` s, the last), else None.

        Reads the clock once per call.
        """
        now = self.clock()
        if self.last is not None and step < self.total and now - self.last < self.every:
            return None
        self.last = now
        return now - self.began

    def eta(self, step: int, elapsed: float) -> float:
        """Seconds left: the mean wall time per step so far (evaluations and checkpoints included) x steps left."""
        done = step - self.start
        return elapsed / done * (self.total - step) if done > 0 else float("nan")

    def line(self, step: int, *, loss: float, lr: float, tokens_per_s: float, elapsed: float) -> str:
        """``step  S/N  loss L  lr R  T tok/s  elapsed M:SS  ETA M:SS``."""
        return (f"step {step:>5}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  {tokens_per_s:,.0f} tok/s  "
                f"elapsed {clock_time(elapsed)}  ETA {clock_time(self.eta(step, elapsed))}")


def clock_time(seconds: float) -> str:
    """``M:SS``, or ``H:MM:SS`` from an hour; ``?`` when unknown."""
    if seconds != seconds:  # NaN: no step done yet
        return "?"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def loader_tokens_per_s(batches: Any, *, seconds: float = 1.0) -> float:
    """Non-pad tokens/s the loader delivers alone (collated tensors, no model).

    The clock starts at the first batch, so starting worker processes is not counted.
    """
    tokens, start = 0, None
    for batch in batches:
        if start is None:
            start = time.perf_counter()
            continue
        tokens += batch["num_tokens"]
        if time.perf_counter() - start >= seconds:
            break
    return tokens / max(time.perf_counter() - start, 1e-9) if start is not None else 0.0


def throughput(train_tokens_per_s: float, loader_tokens_per_s: float, *, expected_ratio: float) -> dict[str, Any]:
    """``verify.json``'s ``throughput``: both rates, their ratio, and whether the loader keeps ahead (informational)."""
    ratio = loader_tokens_per_s / max(train_tokens_per_s, 1e-9)
    return {"train_tokens_per_s": train_tokens_per_s, "loader_tokens_per_s": loader_tokens_per_s, "ratio": ratio,
            "expected_ratio": expected_ratio, "loader_keeps_ahead": bool(loader_tokens_per_s >= expected_ratio * train_tokens_per_s),
            "informational": "measures this machine, not the data: not part of passed"}


def line(speed: dict[str, Any]) -> str:
    """The summary's speed line: the figures, marked ``info`` (never PASS or FAIL)."""
    return (f"speed     info  training {speed['train_tokens_per_s']:,.0f} tok/s, loader {speed['loader_tokens_per_s']:,.0f} "
            f"tok/s ({speed['ratio']:.0f}x, {speed['expected_ratio']:.0f}x expected; informational, not part of the verdict)")
