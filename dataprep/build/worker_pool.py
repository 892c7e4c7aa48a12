"""The worker processes of the ``processes`` mode: spawned, begun before their set-up is known.

A child's start costs about 0.8 CPU s (an interpreter, the imports of the chunk work, the
tokenizer and its encoder). Begun when chunk work is dispatched, that start used to overlap
nothing: on 50k fine-tuning pairs the chunks were mostly worked here before the child was ready
(two workers ran 2.7 s, one worker 2.6). So a run begins its :class:`WorkerPool` as soon as it
knows it will use one (before it loads the tokenizer and chooses the encode engine): the
children import what the chunk work imports (``warm``) meanwhile, and learn what to build only
when :meth:`WorkerPool.set_up` is called. The set-up is pickled once into a file that every
task names, and a child builds it on its first task; nothing blocks a child that waits.

The children are a :class:`concurrent.futures.ProcessPoolExecutor`'s, not a
:class:`multiprocessing.pool.Pool`'s: a child that dies while it works (killed by the kernel when
memory runs out) breaks the executor, and every chunk in flight raises; a Pool started a new child
and left the lost chunk's result to be waited for forever (a run that hung, silently).

Children are *spawned* (a fresh interpreter), never forked, and never import the parent's
``__main__`` (:func:`worker_context`): see :mod:`dataprep.build.engine` for why.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import pickle
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from dataprep.errors import EngineError
from dataprep.text.encode_parallel import encode_serially_in_this_process

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
        _sweep(tempfile.gettempdir())
        self._folder = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
        self._setup: str | None = None
        starter = ThreadPoolExecutor(1, thread_name_prefix="dataprep-pool-start")
        # launching a child waits until it has read its start data (~0.3 s): not on the caller's thread
        self.starting: Future[ProcessPoolExecutor] = starter.submit(_start, size, warm)
        starter.shutdown(wait=False)

    def set_up(self, setup: Callable[..., Callable[[Any], Any]], setup_args: tuple[Any, ...]) -> None:
        """What every child builds before its first task: ``setup(*setup_args)`` (pickled once, here)."""
        path = os.path.join(self._folder, f"setup-{len(os.listdir(self._folder))}.pickle")
        with open(path + ".tmp", "wb") as fh:
            pickle.dump((setup, setup_args), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(path + ".tmp", path)
        self._setup = path

    def submit(self, item: Any) -> Future:
        """``fn(item)`` in a child (``fn`` as :meth:`set_up` said), its result taken with
        :func:`result_of`; the pool must have started.

        Raises:
            EngineError: a child has died (the pool cannot be used any more).
        """
        return self._submit(_call, self._setup, item)

    def ping(self) -> Future:
        """Answered once a child has built its set-up (or once the pool is broken)."""
        return self._submit(_ping, self._setup)

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        try:
            return self.starting.result().submit(fn, *args)
        except BrokenProcessPool as exc:
            raise _lost(exc) from exc

    def close(self) -> None:
        """Stop the children, busy or not (waits for a pool still starting, to stop it), and remove
        the set-up file."""
        if self.starting.exception() is None:
            _stop(self.starting.result())
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_PREFIX = "dataprep-workers-"  # then the pid of the process whose pool it is


_STALE_SECONDS = 3600  # a set-up is read by the children within seconds of being written


def _sweep(root: str) -> None:
    """Remove the set-up folders of processes that are gone, an hour old or more (a run killed with
    SIGKILL cannot remove its own; the set-up holds the pickled tokenizer, 33 MB for Gemma 3). The
    age also spares a live run whose pid this process cannot see (another container sharing the
    temp folder)."""
    try:
        names = [n for n in os.listdir(root) if n.startswith(_PREFIX)]
    except OSError:
        return
    for name in names:
        pid, folder = name[len(_PREFIX):].split("-", 1)[0], os.path.join(root, name)
        try:
            old = time.time() - os.stat(folder).st_mtime >= _STALE_SECONDS
        except OSError:
            continue
        if pid.isdigit() and old and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    if os.name != "posix":  # Windows' os.kill(pid, 0) would end that process: never ask there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (PermissionError), or a platform without signals here
        return True
    return True


def _stop(executor: ProcessPoolExecutor) -> None:
    """Stop every child now: a failed run does not wait for a chunk still being worked."""
    if hasattr(executor, "terminate_workers"):  # Python 3.14
        executor.terminate_workers()
        return
    # before 3.14 no public call stops a busy child: the executor's own record of them
    children = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for child in children:
        if child.is_alive():
            child.terminate()


def result_of(future: Future) -> Any:
    """What a child's task returned, or raised.

    Raises:
        EngineError: the child died while it worked (or another did: the pool is broken).
    """
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise _lost(exc) from exc


def _lost(exc: BaseException) -> EngineError:
    return EngineError(
        f"a worker process died while it worked chunks ({exc}); on Linux the kernel kills the largest process "
        "when memory runs out (`dmesg` then says 'Out of memory: Killed process')",
        fix="free memory, or lower --workers or the recipe's output.chunk_bytes; a run with checkpoints continues "
            "with --resume")


def _start(size: int, warm: tuple[Callable[[], Any], ...]) -> ProcessPoolExecutor:
    """The executor, its ``size`` children launched (an executor launches a child per task while
    none is idle: one ping each)."""
    executor = ProcessPoolExecutor(size, mp_context=worker_context(), initializer=_init_worker, initargs=(warm,))
    for _ in range(size):
        executor.submit(_ping, None)
    return executor


def _init_worker(warm: tuple[Callable[[], Any], ...]) -> None:
    encode_serially_in_this_process()  # one process per core already
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
