"""``--engine ray``: reading and chunk work on plain Ray actors, on a local Ray instance or a cluster.

::

    Ray actors (any node)                                       driver (dataprep run)
    FileReader: one input file at a time, a block per chunk     one loop (dataprep.build.ray_feed):
    ChunkWorker, one per CPU: fn = setup(*args) once,    -->    blocks to workers, results in input
      fn(chunk): normalize, filter, tokenize ...                order -> ordered stage: dedup, split,
                                                                pack, write (input order)

The chunks are the local engine's (a function of the inputs and ``output.chunk_records`` /
``chunk_bytes``, never of the cluster size), the driver's loop (:mod:`dataprep.build.ray_feed`)
takes the results in input order and feeds them to the same ordered stage, so the shards are
byte-identical to ``--engine local``, and so are the manifest's counts: each file's records read
and unreadable records travel with its blocks (:mod:`dataprep.build.ray_chunks`). The loop keeps
a bounded number of blocks and results in flight, so memory stays flat however large the inputs.
(Ray Data did this until #20: its executor cost the driver 5-10 ms of CPU a block.)

The driver reads each result where it lies in its node's object store and unpickles it onto
views of it (no copy of a token; :func:`~dataprep.build.ray_chunks.delivered`). With
``packing.segment_tokens`` the train split's segments are Ray tasks on the driver's node, given
the results' ObjectRefs (:class:`~dataprep.build.ray_chunks.RaySegments`): the driver's work is
per document only (dedup, split, counts), and the segments left when the input ends are finished
before Ray shuts down. The results of the segments in flight stay in the object store until their
task is done (at most twice the driver node's CPUs, plus the one being collected). Through Ray
Client (``ray://``) segments stay on the driver's threads: the cluster cannot reach the run's
folder. ``benchmarks/ray_segments.py --fit`` measures what the driver spends per token and per
second, and how many worker cores one driver feeds.

A worker or reader that dies (node lost, OOM-killed) is restarted and its calls re-run, up to
``MAX_RETRIES`` times; a chunk's result is a pure function of the chunk, and a reader reads its
file again to the same blocks, so a retry changes nothing. An error a worker raises on purpose (a
bad record with ``on_error: raise``, an unreadable file) is re-raised here as the original
:class:`~dataprep.errors.DataprepError`.

Workers open the inputs themselves, so every node must reach them: a shared filesystem
mounted at the same path, or URLs (``s3://``, ``gs://``, ...; not ``memory://``, which exists
in one process only). The driver still resolves the inputs, hashes them for the manifest and
writes the output (staged locally and uploaded when it is a URL).

Ray is optional (``pip install 'dataprep[ray]'``) and imported only when this engine is chosen.
"""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from dataprep.build.chunk_results import ChunkResults
from dataprep.errors import ConfigError, DataprepError, EngineError

if TYPE_CHECKING:
    from dataprep.read.chunks import ChunkReader
    from dataprep.build.progress import Progress
    from dataprep.read import InputFile

log = logging.getLogger("dataprep.engine")

MAX_RETRIES = 3  # re-runs of a chunk (or a read) whose worker process died
INSTALL = "pip install 'dataprep[ray]'"


def import_ray():
    """The ``ray`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--engine ray needs Ray, which is not installed", fix=f"{INSTALL}, or use --engine local") from exc
    return ray


def ray_run_chunks(
    reader: ChunkReader,
    worker: tuple[Callable[..., Callable[[Any], Any]], tuple[Any, ...]],
    files: list[InputFile],
    *,
    read_drops: Counter,
    counts: Counter,
    by_input: dict[int, Counter] | None = None,
    progress: Progress,
    workers: int,
    address: str | None = None,
    max_retries: int = MAX_RETRIES,
) -> ChunkResults:
    """:func:`dataprep.build.engine.run_chunks` on Ray actors: every chunk's result, in input order
    (:class:`~dataprep.build.chunk_results.ChunkResults`, which also offers the runner for the run's segments:
    Ray tasks, or None through Ray Client, where the driver's threads pack them).

    Args:
        reader: reads one input file's chunks (on a worker).
        worker: ``(setup, args)``: ``setup(*args)`` builds the chunk function once per worker.
        files: the resolved inputs, reachable from every node.
        read_drops: unreadable records by reason, summed as the results arrive.
        counts: ``records_read``, summed as the results arrive.
        progress: told what the workers read.
        workers: CPUs of the local Ray instance started when Ray is not running and no
            ``address`` is given; ignored on an existing cluster (all its CPUs work).
        address: the cluster to join (``auto``, ``HOST:6379``, ``ray://HOST:10001``).
        max_retries: re-runs of a chunk whose worker died.

    Raises:
        ConfigError: Ray is not installed.
        EngineError: the cluster cannot be reached, or a chunk failed for a reason other than
            its data (e.g. its worker died more than ``max_retries`` times).
        DataprepError: what reading or the chunk function raised (e.g. a bad record), unchanged.
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
    from dataprep.build import ray_chunks

    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        runner = _segment_runner(ray, ray_chunks, cpus=cpus, max_retries=max_retries)
    except BaseException:
        if started_here:
            ray.shutdown()
        raise
    return ChunkResults(_results(ray, reader, worker, files, read_drops=read_drops, counts=counts, by_input=by_input,
                              progress=progress, cpus=cpus, runner=runner, max_retries=max_retries,
                              started_here=started_here), runner)


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


def _results(ray, reader, worker, files, *, read_drops, counts, by_input, progress, cpus, runner, max_retries,
             started_here) -> Iterator[Any]:
    from dataprep.build import ray_chunks, ray_feed

    try:
        log.info("Ray engine: %d input file(s), %d chunk workers", len(files), cpus)
        feed = ray_feed.start(ray, reader, worker, files, cpus=cpus, max_retries=max_retries)
        try:
            for table, ref in feed:
                for row, block in enumerate(ray_chunks.delivered(table)):
                    _count(block, read_drops=read_drops, counts=counts, by_input=by_input, progress=progress)
                    if block.result is not None:
                        if runner is not None:
                            runner.register(block.result, ref, row)
                        yield block.result
            if runner is not None:  # every result is in the ordered stage: its last segments, while Ray runs
                runner.end_of_input()
        except Exception as err:
            original = _original(ray, err)
            if original is not None:
                raise original from None  # the same message as the local engine: file, line, fix
            failure = _failure(ray, err, max_retries)
            if failure is None:
                raise
            raise failure from err
        finally:
            if runner is not None:
                runner.close()
            feed.close()
    finally:
        if started_here:
            ray.shutdown()


def _count(block, *, read_drops: Counter, counts: Counter, by_input: dict[int, Counter] | None, progress: Progress) -> None:
    """What the readers read, summed here as the results arrive (a file's counts are whole with its last block)."""
    counts["records_read"] += block.records_read
    read_drops.update(block.read_drops)
    if by_input is not None:
        mine = by_input.setdefault(block.source, Counter())
        mine["records_read"] += block.records_read
        mine.update(block.read_drops)
    progress.read_elsewhere(block.source, block.records_read, position=block.position, file_done=block.file_done)


def _segment_runner(ray, ray_chunks, *, cpus: int, max_retries: int):
    """Segments as Ray tasks on the driver's node (:class:`~dataprep.build.ray_chunks.RaySegments`); None
    through Ray Client, whose driver runs on the cluster while the run's folder is here: segments then
    stay on this process's threads."""
    import ray.util.client

    if ray.util.client.ray.is_connected():
        log.info("Ray Client: segments (packing.segment_tokens) are packed on this process's threads: the "
                 "cluster cannot reach the run's folder")
        return None
    return ray_chunks.RaySegments(cpus, max_retries)


def _failure(ray, err: Exception, max_retries: int) -> EngineError | None:
    """The EngineError, with a fix, for a Ray failure that is not a worker's DataprepError."""
    if isinstance(err, (ray.exceptions.RayTaskError, ray.exceptions.UserCodeException)):
        return EngineError(
            f"a chunk failed on Ray: {err}\n  fix: run the same recipe with --engine local to see the error "
            "here, and report it with the traceback"
        )
    if isinstance(err, ray.exceptions.RayError):  # worker died more than max_retries times, node lost, ...
        return EngineError(
            f"a chunk failed on Ray after {max_retries} retries: {err}\n  fix: check the workers' memory "
            "(`ray status`, `ray logs`) or lower output.chunk_records / output.chunk_bytes"
        )
    return None


def _original(ray, err: BaseException) -> DataprepError | None:
    """The DataprepError a worker raised, inside Ray's wrappers (``cause``, ``__cause__``)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        exc = todo.pop(0)
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        # RayTaskError(InputError) is an InputError too, with Ray's traceback as its message
        if isinstance(exc, DataprepError) and not isinstance(exc, ray.exceptions.RayError):
            return exc
        todo += [getattr(exc, "cause", None), exc.__cause__, exc.__context__]
    return None
