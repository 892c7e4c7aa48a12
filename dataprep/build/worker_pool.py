"""The worker processes of the ``processes`` mode: spawned, begun before their set-up is known.

A child's start costs about 0.8 CPU s (an interpreter, the imports of the chunk work, the
tokenizer and its encoder). Begun when chunk work is dispatched, that start used to overlap
nothing: on 50k fine-tuning pairs the chunks were mostly worked here before the child was ready
(two workers ran 2.7 s, one worker 2.6). So a run begins its :class:`WorkerPool` as soon as it
knows it will use one (before it loads the tokenizer and chooses the encode engine): the
children import what the chunk work imports (``warm``) meanwhile, and learn what to build only
when :meth:`WorkerPool.set_up` is called. The set-up is pickled once into a file that every
task names, so a child builds it on its first task, and a child the pool starts again (after
one died) builds it too; nothing blocks a child that waits, so children still exit with their
parent as :mod:`multiprocessing.pool` children do.

Children are *spawned* (a fresh interpreter), never forked, and never import the parent's
``__main__`` (:func:`worker_context`): see :mod:`dataprep.build.engine` for why.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import multiprocessing.pool
import os
import pickle
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger("dataprep.engine")

# A child's state: the set-up it built (by the file it came from), or the error building it raised.
_STATE: dict[str, Any] = {}


class WorkerPool:
    """``size`` spawned worker processes, started on a thread when built.

    Args:
        size: the number of children.
        warm: module-level callables each child runs first, while the parent is still preparing
            (imports); what they raise is ignored (the set-up raises it again, where it is reported).
    """

    def __init__(self, size: int, warm: tuple[Callable[[], Any], ...] = ()):
        self.size = size
        self._folder = tempfile.mkdtemp(prefix="dataprep-workers-")
        self._setup: str | None = None
        starter = ThreadPoolExecutor(1, thread_name_prefix="dataprep-pool-start")
        # launching a child waits until it has read its start data (~0.3 s): not on the caller's thread
        self.starting: Future[mp.pool.Pool] = starter.submit(
            mp.pool.Pool, size, initializer=_init_worker, initargs=(warm,), context=worker_context())
        starter.shutdown(wait=False)

    def set_up(self, setup: Callable[..., Callable[[Any], Any]], setup_args: tuple[Any, ...]) -> None:
        """What every child builds before its first task: ``setup(*setup_args)`` (pickled once, here)."""
        path = os.path.join(self._folder, f"setup-{len(os.listdir(self._folder))}.pickle")
        with open(path + ".tmp", "wb") as fh:
            pickle.dump((setup, setup_args), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(path + ".tmp", path)
        self._setup = path

    def submit(self, item: Any) -> mp.pool.AsyncResult:
        """``fn(item)`` in a child (``fn`` as :meth:`set_up` said); the pool must have started."""
        return self.starting.result().apply_async(_call, (self._setup, item))

    def ping(self) -> mp.pool.AsyncResult:
        """Answered once a child has built its set-up."""
        return self.starting.result().apply_async(_ping, (self._setup,))

    def close(self) -> None:
        """Stop the children (waits for a pool still starting, to stop it) and remove the set-up file."""
        if self.starting.exception() is None:
            self.starting.result().terminate()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _init_worker(warm: tuple[Callable[[], Any], ...]) -> None:
    # One process per core already: the tokenizer's own thread pool would only oversubscribe.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    for fn in warm:
        try:
            fn()
        except Exception as exc:  # only a warm-up: the set-up meets the same problem and reports it
            log.debug("worker warm-up %s failed: %s", getattr(fn, "__name__", fn), exc)


def _built(setup: str) -> Callable[[Any], Any]:
    if _STATE.get("from") != setup:
        _STATE.clear()
        _STATE["from"] = setup
        try:
            with open(setup, "rb") as fh:
                build, args = pickle.load(fh)
            _STATE["fn"] = build(*args)
        except Exception as exc:  # raised with every chunk sent here
            _STATE["error"] = exc
    if "error" in _STATE:
        raise _STATE["error"]
    return _STATE["fn"]


def _call(setup: str, item: Any) -> Any:
    return _built(setup)(item)


def _ping(setup: str | None) -> None:
    """Run in a child: builds its set-up, if given yet (a failure to build is raised with its first chunk instead)."""
    if setup is None:
        return
    try:
        _built(setup)
    except Exception:
        pass


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
