"""Where chunk work runs: in this process (serially or on threads), in worker processes, or on Ray Data.

Results always come back in input order, so output never depends on the worker count or
the engine. Every local parallel mode keeps a bounded number of chunks in flight (``window``):
memory stays flat however large the corpus (``multiprocessing.Pool.imap`` would read ahead
without bound); Ray Data bounds its own with streaming backpressure.

Which local mode a task uses is the task's choice (:class:`~dataprep.tasks.base.Plan`):

- ``threads`` for pretraining. Its chunk work is normalize (pyarrow kernels), hashing and
  ``encode_batch_fast``, all of which release the GIL; chunks on threads share one Rust thread
  pool, so a chunk holding a 3 MB book no longer leaves the other cores idle while it finishes
  (a serial loop waits for the slowest document of every batch), and nothing is pickled.
- ``processes`` for fine-tuning, whose per-example templating and masking run Python code that
  holds the GIL: N spawned processes give N cores.

:func:`run_chunks` picks the engine: on ``local`` this process reads the chunks and
:func:`ordered_map` dispatches them to a mode; ``ray`` (:mod:`dataprep.build.engine_ray`) reads and works
on them on Ray Data.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from dataprep.errors import ConfigError

if TYPE_CHECKING:
    from dataprep.read.chunks import ChunkReader
    from dataprep.build.progress import Progress
    from dataprep.read import InputFile

T = TypeVar("T")
R = TypeVar("R")

ENGINES = ("local", "ray")
MODES = ("threads", "processes")

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
    try:
        _STATE["fn"] = setup(*args)
    except Exception as exc:  # an initializer that raises makes the pool respawn it forever:
        _STATE["error"] = exc  # keep the error and raise it with the first chunk instead


def _call(item: Any) -> Any:
    if "error" in _STATE:
        raise _STATE["error"]
    return _STATE["fn"](item)


def run_chunks(
    reader: ChunkReader,
    worker: tuple[Callable[..., Callable[[Any], R]], tuple[Any, ...]],
    files: list[InputFile],
    *,
    read_drops: Counter,
    counts: Counter,
    progress: Progress,
    workers: int,
    mode: str = "processes",
    engine: str = "local",
    address: str | None = None,
    by_input: dict[int, Counter] | None = None,
) -> Iterator[R]:
    """Read every input's chunks and yield ``fn(chunk)`` for each, in input order (``fn = setup(*args)``).

    Args:
        reader: reads one input file's chunks.
        worker: ``(setup, args)``; ``setup(*args)`` builds the chunk function once per worker.
        files: the resolved inputs.
        read_drops: unreadable records by reason, summed over all files (complete once the
            results are consumed).
        counts: ``records_read`` is incremented for every record read.
        progress: told what was read.
        workers: chunks worked on at once (``local``), or the CPUs of a local Ray instance.
        mode: the local engine's mode (:data:`MODES`).
        engine: ``local`` (this process reads; ``mode`` works) or ``ray`` (Ray Data reads and works).
        address: with ``ray``: the cluster to join (``ray://host:10001``, ``host:6379`` or ``auto``).
        by_input: file index -> that file's ``records_read`` and unreadable records by reason,
            set once the file has been read to its end (before its last result is yielded).

    Raises:
        ConfigError: an unknown engine or mode, ``address`` without ``engine="ray"``, or Ray
            requested but not installed.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is not one of {list(ENGINES)}")
    if engine == "ray":
        from dataprep.build.engine_ray import ray_run_chunks

        return ray_run_chunks(reader, worker, files, read_drops=read_drops, counts=counts, progress=progress,
                              workers=workers, address=address, by_input=by_input)
    if address is not None:
        raise ConfigError("--address names a Ray cluster, but the engine is local", fix="add --engine ray, or leave out --address")
    chunks = progress.track(reader.chunks(files, read_drops=read_drops, counts=counts, by_input=by_input))
    return ordered_map(*worker, chunks, workers=workers, mode=mode)


def ordered_map(
    setup: Callable[..., Callable[[T], R]],
    setup_args: tuple[Any, ...],
    items: Iterable[T],
    *,
    workers: int,
    window: int | None = None,
    mode: str = "processes",
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order, where ``fn = setup(*setup_args)``, on this machine.

    Args:
        setup: builds the per-worker function (runs once in each worker process, or once here
            for ``threads``). Must be a module-level callable so it pickles.
        setup_args: picklable arguments for ``setup``.
        items: consumed lazily; at most ``window`` are in flight at once.
        workers: chunks worked on at once. 1 runs everything here, serially (any mode).
        window: chunks in flight (default ``2 * workers``).
        mode: ``threads`` (this process; for work that releases the GIL) or ``processes``
            (N spawned processes).

    Raises:
        ConfigError: an unknown mode.
    """
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is not one of {list(MODES)}")
    if workers <= 1:
        return _serial(setup, setup_args, items)
    if mode == "threads":
        return _threads(setup, setup_args, items, workers=workers, window=window or 2 * workers)
    return _processes(setup, setup_args, items, workers=workers, window=window or 2 * workers)


def _serial(setup, setup_args, items) -> Iterator[Any]:
    fn = setup(*setup_args)
    for item in items:
        yield fn(item)


def _threads(setup, setup_args, items, *, workers: int, window: int) -> Iterator[Any]:
    fn = setup(*setup_args)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="dataprep-chunk")
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # an error (or the consumer stopping) cancels what has not started
        pool.shutdown(wait=True, cancel_futures=True)


def _processes(setup, setup_args, items, *, workers: int, window: int) -> Iterator[Any]:
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
