"""Training vs loader throughput: reported, never a check.

Tokens/s measure the machine (its cores, its load, the accelerator), not the data, so they
are in ``verify.json`` and in the printed summary but take no part in ``passed`` or the
verdict. The loader is expected to deliver at least ``loader_ratio`` times the tokens/s
training consumes; below that, training waits for data (add ``workers``).
"""

from __future__ import annotations

import time
from typing import Any


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
