"""``--engine ray``: the chunk work as Ray tasks, on a local Ray instance or a cluster.

::

    driver (dataprep run)                         Ray workers (any node)
    read chunks, in input order  --chunk k-->     fn = setup(*args)  (once per worker process)
    ordered stage: dedup, split, <--result k--    fn(chunk k): normalize, filter, tokenize ...
    pack, write (input order)

Only the per-chunk work moves: the chunks are the same as the local engine's (a function of the
inputs and ``output.chunk_records``, never of the cluster size), and the driver consumes the
results in input order through the same ordered stage, so the shards are byte-identical to
``--engine local``. At most ``window`` chunks are in flight, so the driver's memory stays flat.

A task whose worker dies (node lost, OOM-killed) is re-run by Ray (``max_retries``); a chunk's
result is a pure function of the chunk, so a retry changes nothing. An error the task itself
raises (a bad record with ``on_error: raise``) is re-raised here as the original
:class:`~dataprep.errors.DataprepError`.

The driver reads every input and writes the output; workers receive chunks through Ray's object
store and never open a path. So inputs need not be on the workers' disks, and a multi-node
cluster needs only dataprep (same version) installed on every node.

Ray is optional (``pip install 'dataprep[ray]'``) and imported only when this engine is chosen.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import ConfigError, DataprepError

log = logging.getLogger("dataprep.engine")

MAX_RETRIES = 3  # re-runs of a chunk whose worker process died
INSTALL = "pip install 'dataprep[ray]'"

# Per worker process: the chunk function of the run being served, built once (key -> fn).
_WORKER: dict[str, Callable[[Any], Any]] = {}


class EngineError(DataprepError):
    """The Ray engine could not start or finish the chunk work."""


def import_ray():
    """The ``ray`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--engine ray needs Ray, which is not installed: {INSTALL}") from exc
    return ray


def _run_chunk(key: str, boxed_setup: list[Any], item: Any) -> Any:
    """The Ray task: build (once per worker process) and apply the run's chunk function."""
    fn = _WORKER.get(key)
    if fn is None:
        import ray

        # One task per core already: the tokenizer's own thread pool would only oversubscribe.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        setup, args = ray.get(boxed_setup[0])  # boxed, so Ray does not fetch it for every task
        _WORKER.clear()  # a long-lived worker keeps only the current run's tokenizer
        fn = _WORKER[key] = setup(*args)
    return fn(item)


def ray_ordered_map(
    setup: Callable[..., Callable[[Any], Any]],
    setup_args: tuple[Any, ...],
    items: Iterable[Any],
    *,
    workers: int,
    window: int | None = None,
    address: str | None = None,
    max_retries: int = MAX_RETRIES,
) -> Iterator[Any]:
    """:func:`dataprep.engine.ordered_map` on Ray: ``fn(item)`` for each item, in input order.

    Args:
        setup: builds the chunk function, once per Ray worker process.
        setup_args: its arguments (stored once in the object store).
        items: consumed lazily in this process (the driver).
        workers: CPUs of the local Ray instance started when Ray is not running and no
            ``address`` is given; ignored on an existing cluster.
        window: chunks in flight (default: twice the cluster's CPUs).
        address: the cluster to join (``auto``, ``HOST:6379``, ``ray://HOST:10001``).
        max_retries: re-runs of a chunk whose worker died.

    Raises:
        ConfigError: Ray is not installed.
        EngineError: the cluster cannot be reached, or a chunk failed for a reason other than
            its data (e.g. its worker died more than ``max_retries`` times).
        DataprepError: what the chunk function raised (e.g. a bad record), unchanged.
    """
    ray = import_ray()
    started_here = False
    if not ray.is_initialized():
        if address is not None:
            _check_reachable(address)
        try:
            if address is None:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise EngineError(f"cannot start or join {where}: {exc}; check `ray status` on the head node") from exc
        started_here = True
    return _ordered(ray, setup, setup_args, items, window=window, max_retries=max_retries, started_here=started_here)


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes (Ray retries an unreachable head for ~2 min), on a bad HOST:PORT."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise EngineError(
            f"cannot reach the Ray cluster at {address} ({exc}); start it with `ray start --head` on the head "
            "node and pass HEAD_IP:6379 (or ray://HEAD_IP:10001 from outside the cluster), or leave out --address "
            "for a local Ray instance"
        ) from exc


def _ordered(ray, setup, setup_args, items, *, window, max_retries, started_here) -> Iterator[Any]:
    pending: deque = deque()
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        window = window or max(2, 2 * cpus)
        log.info("Ray engine: %d CPUs in the cluster, %d chunks in flight", cpus, window)
        task = ray.remote(num_cpus=1, max_retries=max_retries)(_run_chunk)
        key = uuid.uuid4().hex
        boxed = [ray.put((setup, setup_args))]
        for item in items:
            pending.append(task.remote(key, boxed, item))
            if len(pending) >= window:
                yield _get(ray, pending.popleft(), max_retries)
        while pending:
            yield _get(ray, pending.popleft(), max_retries)
    finally:  # an error, or the consumer stopping: drop the chunks still queued
        for ref in pending:
            ray.cancel(ref)
        if started_here:
            ray.shutdown()


def _get(ray, ref, max_retries: int) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, DataprepError):
            raise cause from None  # the same message as the local engine: file, line, fix
        raise EngineError(f"a chunk task failed on Ray: {err}") from err
    except ray.exceptions.RayError as err:  # worker died more than max_retries times, node lost, ...
        raise EngineError(
            f"a chunk task failed on Ray after {max_retries} retries: {err}; check the workers' memory "
            "(`ray status`, `ray logs`) or lower output.chunk_records"
        ) from err
