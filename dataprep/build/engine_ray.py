"""``--engine ray``: reading and chunk work on Ray Data, on a local Ray instance or a cluster.

::

    Ray workers (any node)                                     driver (dataprep run)
    read task per input file: its chunks, one block each       consume results in input order:
      -> ChunkWorker actors: fn = setup(*args) once,    -->    ordered stage: dedup, split,
         fn(chunk): normalize, filter, tokenize ...            pack, write (input order)

The pipeline is ``read_datasource(ChunkSource) -> map_batches(ChunkWorker)``
(:mod:`dataprep.build.ray_chunks`): the chunks are the local engine's (a function of the inputs and
``output.chunk_records`` / ``chunk_bytes``, never of the cluster size), Ray Data keeps them in
input order (``preserve_order``), and the driver feeds the results to the same ordered stage,
so the shards are byte-identical to ``--engine local``, and so are the manifest's counts:
each file's records read and unreadable records travel with its blocks. Ray Data's streaming
backpressure bounds the blocks in flight (to ``STORE_CHUNKS_PER_WORKER`` chunks' worth of the
object store per worker), so memory stays flat however large the inputs.

The driver reads each block where it lies in its node's object store and unpickles the result
onto views of it (no copy of a token; :func:`~dataprep.build.ray_chunks.delivered`). With
``packing.segment_tokens`` the train split's segments are Ray tasks on the driver's node, given
the blocks' ObjectRefs (:class:`~dataprep.build.ray_chunks.RaySegments`): the driver's work is
per document only (dedup, split, counts), and the segments left when the input ends are finished
before Ray shuts down. The blocks of the segments in flight stay in the object store until their
task is done (at most twice the driver node's CPUs, plus the one being collected). Through Ray
Client (``ray://``) segments stay on the driver's threads: the cluster cannot reach the run's
folder. What the driver still spends is mostly Ray's: a few % of a core per second, and Ray
Data's handling of each block (a few ms), so larger chunks (``output.chunk_bytes``) let one driver
feed more workers; ``benchmarks/ray_segments.py --fit`` measures both and the ceiling they imply.

A worker that dies (node lost, OOM-killed) is restarted and its chunk re-run, up to
``MAX_RETRIES`` times; a chunk's result is a pure function of the chunk, so a retry changes
nothing. An error a worker raises on purpose (a bad record with ``on_error: raise``, an
unreadable file) is re-raised here as the original :class:`~dataprep.errors.DataprepError`.

Workers open the inputs themselves, so every node must reach them: a shared filesystem
mounted at the same path, or URLs (``s3://``, ``gs://``, ...; not ``memory://``, which exists
in one process only). The driver still resolves the inputs, hashes them for the manifest and
writes the output (staged locally and uploaded when it is a URL).

Ray is optional (``pip install 'dataprep[ray]'``) and imported only when this engine is chosen.
"""

from __future__ import annotations

import logging
import socket
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dataprep.build import segments
from dataprep.errors import ConfigError, DataprepError, EngineError

if TYPE_CHECKING:
    from dataprep.read.chunks import ChunkReader
    from dataprep.build.progress import Progress
    from dataprep.read import InputFile

log = logging.getLogger("dataprep.engine")

MAX_RETRIES = 3  # re-runs of a chunk whose worker process died
# Object store the run's blocks may fill before Ray Data's backpressure pauses the readers: this
# many chunks' worth per worker, STORE_MIN_BYTES at least. Ray Data's default budget (half the
# object store) let one reader run 55 chunks ahead of 2 workers on the 230 MB bench corpus; with
# 32 per worker it ran 20 ahead at the same speed; with 8 per worker (64 MiB) Ray Data's scheduler
# spun on the driver and the run took 10x as long.
STORE_CHUNKS_PER_WORKER = 32
STORE_MIN_BYTES = 256 << 20
INSTALL = "pip install 'dataprep[ray]'"


def import_ray():
    """The ``ray`` module (with Ray Data), or a :class:`ConfigError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the `data` extra)
    except ImportError as exc:
        raise ConfigError("--engine ray needs Ray Data, which is not installed", fix=f"{INSTALL}, or use --engine local") from exc
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
) -> Iterator[Any]:
    """:func:`dataprep.build.engine.run_chunks` on Ray Data: every chunk's result, in input order.

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
        ConfigError: Ray Data is not installed.
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
    return _results(ray, reader, worker, files, read_drops=read_drops, counts=counts, by_input=by_input, progress=progress,
                    max_retries=max_retries, started_here=started_here)


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


def _results(ray, reader, worker, files, *, read_drops, counts, by_input, progress, max_retries, started_here) -> Iterator[Any]:
    from dataprep.build import ray_chunks

    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        log.info("Ray engine: %d input file(s) read on Ray Data, %d chunk workers", len(files), cpus)
        dataset = _dataset(ray, ray_chunks, reader, worker, files, cpus=cpus, max_retries=max_retries)
        runner = _segment_runner(ray, ray_chunks, cpus=cpus, max_retries=max_retries)
        with _quiet_ray_data(), segments.engine_runner(runner):
            try:
                for bundle in dataset.iter_internal_ref_bundles():
                    for entry in bundle.blocks:
                        # In this node's object store (fetched first from another node's): read where it lies.
                        table = ray.get(entry.ref)
                        for row, block in enumerate(ray_chunks.delivered(table)):
                            counts["records_read"] += block.records_read
                            read_drops.update(block.read_drops)
                            if by_input is not None:
                                mine = by_input.setdefault(block.source, Counter())
                                mine["records_read"] += block.records_read
                                mine.update(block.read_drops)
                            progress.read_elsewhere(block.source, block.records_read, position=block.position,
                                                    file_done=block.file_done)
                            if block.result is not None:
                                if runner is not None:
                                    runner.register(block.result, entry.ref, row)
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
    finally:
        if started_here:
            ray.shutdown()


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


def _dataset(ray, ray_chunks, reader, worker, files, *, cpus: int, max_retries: int):
    """read (one task per file) -> map_batches (one actor per CPU), in input order."""
    setup, setup_args = worker
    with warnings.catch_warnings():
        # Ray 2.60 deprecates remote args that have no named replacement yet (the retry limits),
        # and some DataContext fields that copy() touches.
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ray.data.DataContext.get_current().copy()
        context.execution_options.preserve_order = True  # results in input order: the same shards
        context.enable_progress_bars = False  # dataprep shows its own (progress.py)
        context.print_on_execution_start = False
        context.raise_original_map_exception = True  # a worker's DataprepError itself, not a UserCodeException
        context.max_errored_blocks = 0  # a failed chunk fails the run; never a dataset with a hole
        # Every one-row block is complete as it is: with the default (128 MiB) Ray Data would
        # concatenate a read task's blocks (a small file's chunks: one worker's task) before passing them on.
        context.target_max_block_size = 1
        if reader.max_bytes is not None:  # else Ray Data's own budget
            store = max(STORE_MIN_BYTES, STORE_CHUNKS_PER_WORKER * cpus * reader.max_bytes)
            context.execution_options.resource_limits = ray.data.ExecutionResources.for_limits(object_store_memory=store)
        with ray.data.DataContext.current(context):
            # Reading (decompress, parse) is light next to the chunk work: it takes no CPU slot of
            # its own, so every CPU holds a worker; at most one file per worker is read at once.
            # override_num_blocks: one "block" per read task, so Ray Data never splits their output.
            dataset = ray.data.read_datasource(
                ray_chunks.ChunkSource(reader, files), num_cpus=0, concurrency=min(cpus, len(files)),
                override_num_blocks=len(files), ray_remote_args={"max_retries": max_retries},
            )
            # All actors start at once; min_size=1 because a small run may have fewer chunks than CPUs.
            pool = ray.data.ActorPoolStrategy(min_size=1, max_size=cpus, initial_size=cpus)
            return dataset.map_batches(
                ray_chunks.ChunkWorker, fn_constructor_args=(setup, setup_args), batch_size=None,
                batch_format="pyarrow", compute=pool, num_cpus=1, max_restarts=-1, max_task_retries=max_retries,
            )


@contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ray Data's console: warnings only, no tracebacks (a worker's error reaches the user as
    dataprep's own message; Ray Data's log file in the session folder keeps everything), and
    no notice that its progress bars are off (dataprep shows its own)."""
    handlers = [h for h in logging.getLogger("ray.data").handlers if h.get_name() == "console"]
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(logging.WARNING)
        handler.addFilter(_console)
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels):
            handler.setLevel(level)
            handler.removeFilter(_console)


def _console(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR and not record.getMessage().startswith("Progress bars disabled")


def _failure(ray, err: Exception, max_retries: int) -> EngineError | None:
    """The EngineError, with a fix, for a Ray failure that is not a worker's DataprepError."""
    if isinstance(err, (ray.exceptions.RayTaskError, ray.exceptions.UserCodeException)):
        return EngineError(
            f"a chunk failed on Ray Data: {err}\n  fix: run the same recipe with --engine local to see the error "
            "here, and report it with the traceback"
        )
    if isinstance(err, ray.exceptions.RayError):  # worker died more than max_retries times, node lost, ...
        return EngineError(
            f"a chunk failed on Ray Data after {max_retries} retries: {err}\n  fix: check the workers' memory "
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
