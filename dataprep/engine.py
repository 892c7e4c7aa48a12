"""Where chunk work runs: in this process, or in a pool of worker processes.

Results always come back in input order, so output never depends on the worker count.
The pool keeps a bounded number of chunks in flight (``window``): memory stays flat no
matter how large the corpus is (``multiprocessing.Pool.imap`` would read ahead without bound).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Worker state, set once per process by the initializer (so the tokenizer is unpickled once).
_STATE: dict[str, Any] = {}


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _init_worker(setup: Callable[..., Any], args: tuple[Any, ...]) -> None:
    # One process per core already: the tokenizer's own thread pool would only oversubscribe.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _STATE["fn"] = setup(*args)


def _call(item: Any) -> Any:
    return _STATE["fn"](item)


def ordered_map(
    setup: Callable[..., Callable[[T], R]],
    setup_args: tuple[Any, ...],
    items: Iterable[T],
    *,
    workers: int,
    window: int | None = None,
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order, where ``fn = setup(*setup_args)``.

    Args:
        setup: builds the per-process function (runs once in each worker). Must be a
            module-level callable so it pickles.
        setup_args: picklable arguments for ``setup``.
        items: consumed lazily; at most ``window`` are in flight at once.
        workers: 1 runs everything here, in this process; N > 1 uses N spawned processes.
        window: chunks in flight (default ``2 * workers``).
    """
    if workers <= 1:
        fn = setup(*setup_args)
        for item in items:
            yield fn(item)
        return
    window = window or 2 * workers
    # spawn, not fork: the parent may hold tokenizer thread pools, which do not survive a fork.
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(setup, setup_args)) as pool:
        pending: deque[mp.pool.AsyncResult] = deque()
        for item in items:
            pending.append(pool.apply_async(_call, (item,)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
