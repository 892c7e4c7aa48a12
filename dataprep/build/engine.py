"""Where chunk work runs: in this process (serially or on threads), in worker processes, or on Ray actors.

Results always come back in input order, so output never depends on the worker count or
the engine. Every local parallel mode keeps a bounded number of chunks in flight (``window``):
memory stays flat however large the corpus (``multiprocessing.Pool.imap`` would read ahead
without bound); the Ray engine bounds its own (:mod:`dataprep.build.ray_feed`).

Which local mode a task uses is the task's choice (:class:`~dataprep.tasks.base.Plan`):

- ``threads`` for pretraining. Its chunk work is normalize (pyarrow kernels), hashing and
  ``encode_batch_fast``, all of which release the GIL; chunks on threads share one Rust thread
  pool, so a chunk holding a 3 MB book no longer leaves the other cores idle while it finishes
  (a serial loop waits for the slowest document of every batch), and nothing is pickled.
- ``processes`` for fine-tuning, whose per-example templating and masking run Python code that
  holds the GIL: N - 1 spawned processes and this one give N cores (this one works a chunk
  whenever the children are busy, so small runs do not wait for children to start). A run begins
  the children before it loads the tokenizer (:mod:`dataprep.build.worker_pool`).

Worker processes are *spawned* (a fresh interpreter), never forked: the parent may hold the
tokenizer's Rust thread pool (``encode_batch`` ran here: the trained tokenizer, the reference
check), and a forked child inherits its locks but not its threads, so it can hang on the first
encode. ``forkserver`` would not help either, see below. What multiprocessing's ``spawn`` also
does is import the parent's ``__main__`` file again in every child (as ``__mp_main__``), so that
functions defined there can be unpickled; a script that calls ``dataprep.build`` without an
``if __name__ == "__main__":`` guard then runs again in each worker, whose own ``build`` fails
while the child is still starting, and the pool starts a new worker, forever (the issue's
hang). ``forkserver`` children are prepared the same way (``spawn.prepare``), whatever
``set_forkserver_preload`` says. So the workers here are started by a spawn context whose
children are told nothing of ``__main__`` (:func:`~dataprep.build.worker_pool.worker_context`): everything a worker runs is
a module-level function of an importable module (``dataprep`` or the caller's package), so it
never needs the main script. Start-up costs what spawn costs (the child imports only the modules
its work is defined in); shards are byte-identical, since nothing else changes.

:func:`run_chunks` picks the engine: on ``local`` this process reads the chunks and
:func:`ordered_map` dispatches them to a mode; ``ray`` (:mod:`dataprep.build.engine_ray`) reads and works
on them on Ray actors.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from dataprep.build.chunk_results import ChunkResults, close_iterator
from dataprep.build.read_ahead import READ_AHEAD, read_ahead
from dataprep.build.worker_pool import WorkerPool, result_of
from dataprep.errors import ConfigError
from dataprep.text.encode_parallel import encode_serially, encode_serially_on_this_thread

if TYPE_CHECKING:
    from dataprep.read.chunks import ChunkReader
    from dataprep.build.progress import Progress
    from dataprep.read import InputFile

log = logging.getLogger("dataprep.engine")

T = TypeVar("T")
R = TypeVar("R")

ENGINES = ("local", "ray")
MODES = ("threads", "processes")


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
    pool: WorkerPool | None = None,
) -> ChunkResults[R]:
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
        engine: ``local`` (this process reads; ``mode`` works) or ``ray`` (Ray actors read and work).
        address: with ``ray``: the cluster to join (``ray://host:10001``, ``host:6379`` or ``auto``).
        by_input: file index -> that file's ``records_read`` and unreadable records by reason,
            set once the file has been read to its end (before its last result is yielded).
        pool: the worker processes of the ``processes`` mode, begun early (:mod:`dataprep.build.worker_pool`).

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
    return ChunkResults(ordered_map(*worker, chunks, workers=workers, mode=mode, pool=pool))


def ordered_map(
    setup: Callable[..., Callable[[T], R]],
    setup_args: tuple[Any, ...],
    items: Iterable[T],
    *,
    workers: int,
    window: int | None = None,
    pool: WorkerPool | None = None,
    mode: str = "processes",
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order, where ``fn = setup(*setup_args)``, on this machine.

    Args:
        setup: builds the per-worker function (runs once in each worker process, or once here
            for ``threads``). Must be a module-level callable so it pickles.
        setup_args: picklable arguments for ``setup``.
        items: consumed lazily; at most ``window`` are in flight at once, and with more than one
            worker up to :data:`~dataprep.build.read_ahead.READ_AHEAD` more are read ahead on a thread
            (:func:`~dataprep.build.read_ahead.read_ahead`).
        workers: chunks worked on at once. 1 runs everything here, serially (any mode).
        window: chunks in flight (default ``2 * workers``; ``3 * workers`` for ``processes``).
        pool: ``workers - 1`` worker processes begun earlier, for ``processes`` (default: begun now).
        mode: ``threads`` (this process; for work that releases the GIL) or ``processes``
            (N - 1 spawned processes beside this one).

    Raises:
        ConfigError: an unknown mode.
    """
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is not one of {list(MODES)}")
    if workers <= 1:
        return _serial(setup, setup_args, items)
    items = read_ahead(items, READ_AHEAD)
    if mode == "threads":
        return _threads(setup, setup_args, items, workers=workers, window=window or 2 * workers)
    # the children hold 2 chunks each, and this process works on past a child's late chunk: with 2 *
    # workers it waited for one ~0.25 s of a 50k-pair run's 0.75 s (2 workers), with 3 * ~0.1 s
    return _processes(setup, setup_args, items, workers=workers, window=window or 3 * workers, pool=pool)


def _serial(setup, setup_args, items) -> Iterator[Any]:
    fn = setup(*setup_args)
    for item in items:
        yield fn(item)


def _threads(setup, setup_args, items, *, workers: int, window: int) -> Iterator[Any]:
    fn = setup(*setup_args)
    # each chunk thread encodes on itself: the threads are the parallelism (encode_parallel)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="dataprep-chunk", initializer=encode_serially_on_this_thread)
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
        close_iterator(items)


def _processes(setup, setup_args, items, *, workers: int, window: int, pool: WorkerPool | None) -> Iterator[Any]:
    """``workers - 1`` spawned processes (``pool``, or a pool begun now), and this one: while the
    children are busy (or still starting: a child's imports and set-up cost ~0.8 CPU s) the calling
    thread works the next chunk itself instead of waiting, so two workers never run slower than one.
    Each child is kept two chunks deep, and at most ``window`` chunks are in flight, wherever they
    run; an error is raised in input order, wherever its chunk ran."""
    own = pool is None
    if pool is None:
        pool = WorkerPool(workers - 1)
    elif pool.size != workers - 1:
        raise ValueError(f"a pool of {pool.size} worker processes for {workers} workers")
    pool.set_up(setup, setup_args)
    fn = None  # this process's own chunk function, built when it first takes a chunk
    feed = max(1, min(window - 1, 2 * (workers - 1)))  # chunks the children hold, at most
    ping = None  # answered once a child has set itself up: chunks go to the children from then on
    try:
        pending: deque[tuple[bool, Any]] = deque()  # (ran here, its outcome) or (False, a child's Future)
        for item in items:
            if ping is None and pool.starting.done():
                ping = pool.ping()  # raises the pool's start failure: this run waits for it
            if ping is not None and ping.done() and sum(1 for here, r in pending if not here and not r.done()) < feed:
                pending.append((False, pool.submit(item)))
            else:  # the children are full or not started: work this chunk here rather than wait
                if fn is None:
                    fn = setup(*setup_args)
                pending.append((True, _outcome(fn, item)))
            while pending and (pending[0][0] or pending[0][1].done() or len(pending) >= window):
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())
    finally:
        failed = pool.starting.exception()  # waits for a pool still starting
        if failed is not None and sys.exc_info()[1] is not failed:  # not raised by the loop: the run went on without them
            log.warning("the worker processes could not start (%s); this process worked every chunk", failed)
        if own:
            pool.close()
        close_iterator(items)


def _outcome(fn: Callable[[Any], Any], item: Any) -> tuple[bool, Any]:
    """``fn(item)`` as ``(True, result)``, or ``(False, exception)``: raised when its turn comes."""
    with encode_serially():  # the children work beside this thread: no encoder pool on every core
        try:
            return True, fn(item)
        except Exception as exc:
            return False, exc


def _result(here: bool, outcome: Any) -> Any:
    if not here:
        return result_of(outcome)
    ok, value = outcome
    if not ok:
        raise value
    return value
