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
  whenever the children are busy, so small runs do not wait for children to start).

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
children are told nothing of ``__main__`` (:class:`_CleanSpawn`): everything a worker runs is
a module-level function of an importable module (``dataprep`` or the caller's package), so it
never needs the main script. Start-up costs what spawn costs (the child imports only the modules
its work is defined in); shards are byte-identical, since nothing else changes.

:func:`run_chunks` picks the engine: on ``local`` this process reads the chunks and
:func:`ordered_map` dispatches them to a mode; ``ray`` (:mod:`dataprep.build.engine_ray`) reads and works
on them on Ray actors.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import multiprocessing.pool
import os
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from dataprep.build.read_ahead import READ_AHEAD, read_ahead
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
        engine: ``local`` (this process reads; ``mode`` works) or ``ray`` (Ray actors read and work).
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
        items: consumed lazily; at most ``window`` are in flight at once, and with more than one
            worker up to :data:`~dataprep.build.read_ahead.READ_AHEAD` more are read ahead on a thread
            (:func:`~dataprep.build.read_ahead.read_ahead`).
        workers: chunks worked on at once. 1 runs everything here, serially (any mode).
        window: chunks in flight (default ``2 * workers``).
        mode: ``threads`` (this process; for work that releases the GIL) or ``processes``
            (N - 1 spawned processes beside this one).

    Raises:
        ConfigError: an unknown mode.
    """
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} is not one of {list(MODES)}")
    if workers <= 1:
        return _serial(setup, setup_args, items)
    window = window or 2 * workers
    items = read_ahead(items, READ_AHEAD)
    if mode == "threads":
        return _threads(setup, setup_args, items, workers=workers, window=window)
    return _processes(setup, setup_args, items, workers=workers, window=window)


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
        _close(items)


def _processes(setup, setup_args, items, *, workers: int, window: int) -> Iterator[Any]:
    """``workers - 1`` spawned processes, and this one: while the children are busy (or still
    starting: a child's imports and set-up cost ~0.8 CPU s) the calling thread works the next chunk
    itself instead of waiting, so two workers never run slower than one (on 50k fine-tuning pairs
    two children took 3.1 s where this process alone took 2.2). Each child is kept two chunks deep,
    and at most ``window`` chunks are in flight, wherever they run; an error is raised in input
    order, wherever its chunk ran."""
    # spawn, not fork: the parent may hold tokenizer thread pools, which do not survive a fork;
    # and children that never import __main__ (see the module docstring). The pool starts on a
    # thread: launching a child waits until it has read its set-up (~0.3 s), chunks run here meanwhile
    starter = ThreadPoolExecutor(1, thread_name_prefix="dataprep-pool-start")
    starting = starter.submit(mp.pool.Pool, workers - 1, initializer=_init_worker, initargs=(setup, setup_args),
                              context=worker_context())
    starter.shutdown(wait=False)
    fn = None  # this process's own chunk function, built when it first takes a chunk
    feed = max(1, min(window - 1, 2 * (workers - 1)))  # chunks the children hold, at most
    ping = None  # answered once a child has set itself up: chunks go to the children from then on
    try:
        pending: deque[tuple[bool, Any]] = deque()  # (ran here, its outcome) or (False, AsyncResult)
        for item in items:
            pool = starting.result() if starting.done() else None
            if pool is not None and ping is None:
                ping = pool.apply_async(_ping)
            if ping is not None and ping.ready() and sum(1 for here, r in pending if not here and not r.ready()) < feed:
                pending.append((False, pool.apply_async(_call, (item,))))
            else:  # the children are full or not started: work this chunk here rather than wait
                if fn is None:
                    fn = setup(*setup_args)
                pending.append((True, _outcome(fn, item)))
            while pending and (pending[0][0] or pending[0][1].ready() or len(pending) >= window):
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())
    finally:
        failed = starting.exception()  # waits for a pool still starting, to stop it
        if failed is None:
            starting.result().terminate()
        elif sys.exc_info()[1] is not failed:  # not raised by the loop: the run went on without them
            log.warning("the worker processes could not start (%s); this process worked every chunk", failed)
        _close(items)


def _ping() -> None:
    """Run by a worker process once its initializer has run."""


def _outcome(fn: Callable[[Any], Any], item: Any) -> tuple[bool, Any]:
    """``fn(item)`` as ``(True, result)``, or ``(False, exception)``: raised when its turn comes."""
    with encode_serially():  # the children work beside this thread: no encoder pool on every core
        try:
            return True, fn(item)
        except Exception as exc:
            return False, exc


def _result(here: bool, outcome: Any) -> Any:
    if not here:
        return outcome.get()
    ok, value = outcome
    if not ok:
        raise value
    return value


def _close(items: Iterable[Any]) -> None:
    """Close a generator of items now (a read-ahead thread stops, its input files close)."""
    close = getattr(items, "close", None)
    if close is not None:
        close()


# --- worker processes that never import the parent's __main__ ---------------------------------

_LAUNCH = threading.Lock()  # spawn.get_preparation_data is swapped only while one child is launched


def worker_context() -> mp.context.BaseContext:
    """The start method of the ``processes`` mode: spawn, without ``__main__`` in the children.

    Where multiprocessing's spawn internals are not as expected (another platform, another
    Python), plain spawn: scripts there need the ``__main__`` guard, as multiprocessing documents.
    """
    if _CleanSpawn.available():
        return _CleanSpawn()
    return mp.get_context("spawn")


def _without_main(data: dict[str, Any]) -> dict[str, Any]:
    """Preparation data for a child, minus what makes it run the parent's main script again."""
    return {k: v for k, v in data.items() if k not in ("init_main_from_path", "init_main_from_name")}


@functools.lru_cache(maxsize=None)
def _clean_popen():
    from multiprocessing import popen_spawn_posix, spawn

    class Popen(popen_spawn_posix.Popen):
        """spawn's Popen whose child does not import the parent's ``__main__``."""

        def _launch(self, process_obj):
            with _LAUNCH:
                original = spawn.get_preparation_data
                spawn.get_preparation_data = lambda name: _without_main(original(name))
                try:
                    super()._launch(process_obj)
                finally:
                    spawn.get_preparation_data = original

    return Popen


class _CleanSpawnProcess(mp.context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj):
        return _clean_popen()(process_obj)


class _CleanSpawn(mp.context.SpawnContext):
    """A spawn context whose processes start without the parent's ``__main__``."""

    Process = _CleanSpawnProcess

    @staticmethod
    def available() -> bool:
        try:
            from multiprocessing import popen_spawn_posix, spawn
        except ImportError:  # Windows
            return False
        return hasattr(spawn, "get_preparation_data") and hasattr(popen_spawn_posix.Popen, "_launch")
