"""One driver loop feeds every chunk worker: plain Ray actors, a bounded number of chunks in flight.

::

    driver (one loop, one thread)                     actors
    ask each open file's reader for its next blocks   FileReader: block k of file i (num_cpus=0)
    hand each block, in input order, to the chunk     ChunkWorker: work(block), one per CPU
      worker with the fewest in flight
    ray.wait; yield the results in input order

A block is a few consecutive chunks of one file (:data:`BLOCK_BYTES` of text at most); the chunks
are the recipe's, so the output is the same whatever a block holds. Ray Data's streaming executor
did this on ``--engine ray`` until #20 and cost the driver 5-10 ms of CPU for each block, one chunk
each, so one driver fed ~10 worker cores at 4 MB chunks (``benchmarks/ray_segments.py --fit``).
Here a block costs the driver a few Ray calls (two actor calls submitted, a ``ray.wait`` or two,
two ``ray.get``: the read's small state, inline, and the result, read where it lies in the object
store), ~1.5 ms of CPU with Ray's own threads, shared by its chunks.

Memory stays flat however large the inputs: at most :data:`OPEN_FILES` files are read at once
(one per reader actor), each at most :data:`READS_AHEAD` blocks ahead of the workers; each chunk
worker holds at most :data:`PER_WORKER` blocks (one worked, the next one fetched meanwhile); and
at most :data:`RESULTS_PER_WORKER` blocks per worker are in flight or wait, finished, for an
earlier one to be taken (a chunk that holds a book). Results come out in input order, so the
shards are the local engine's, whatever the number of workers.

A worker or reader that dies is restarted and its calls re-run (``max_retries`` times); an error
they raise on purpose comes out of :meth:`Feed.__iter__` as Ray raises it (the engine unwraps it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dataprep.build import ray_chunks
from dataprep.read import file_size

if TYPE_CHECKING:
    from dataprep.read import InputFile
    from dataprep.read.chunks import ChunkReader

# Chunks sent in one block: at most this many bytes of text (chunk_bytes, 4 MiB by default: 8
# chunks), so that what the driver spends per block (a few Ray calls, ~1.5 ms of CPU) is shared;
# fewer when the inputs would not make BLOCKS_PER_WORKER blocks for every worker.
BLOCK_BYTES = 32 << 20
BLOCKS_PER_WORKER = 8
OPEN_FILES = 64  # files read at once, at most one per reader actor (and no more readers than CPUs)
READS_AHEAD = 2  # reads queued per open file: its reader never waits for the driver
PER_WORKER = 2  # blocks handed to one chunk worker at once
RESULTS_PER_WORKER = 3  # blocks in flight or finished but not yet taken, per chunk worker


@dataclass
class _File:
    """An input being read: its reader and its reads in order, each ``(block ref, state ref)``."""

    index: int
    file: InputFile
    reader: Any
    asked: int = 0  # reads submitted
    reads: deque = field(default_factory=deque)
    ended: bool = False  # its last block is known: no more reads


class Feed:
    """The chunks' results, in input order, from ``workers`` chunk actors fed through ``readers``.

    Args:
        ray: the ``ray`` module (initialized).
        files: the resolved inputs.
        workers: the :class:`~dataprep.build.ray_chunks.ChunkWorker` actors.
        readers: the :class:`~dataprep.build.ray_chunks.FileReader` actors; file ``i`` is read by
            ``readers[i % len(readers)]``, at most one file per reader at once.
        setup_args: the ObjectRef of the workers' setup arguments.
    """

    def __init__(self, ray, files: list[InputFile], workers: list[Any], readers: list[Any], setup_args: Any):
        self.ray, self.files, self.workers, self.readers = ray, files, workers, readers
        self.setup_args = [setup_args]  # an ObjectRef in a list: sent as a reference with every chunk
        self.next_file = 0
        self.open: deque[_File] = deque()  # files being read, in input order
        self.order: deque[Any] = deque()  # result refs in input order, until taken
        self.running: dict[Any, int] = {}  # result ref -> its worker, until known finished
        self.load = [0] * len(workers)  # chunks each worker holds (running)
        # A worker gets chunks once it has started: on a busy cluster some may wait for a CPU a long
        # time (or forever), and a chunk queued on one would hold up every result after it.
        self.starting = {worker.__ray_ready__.remote(): i for i, worker in enumerate(workers)}
        self.started: list[int] = []
        self.ready: set[Any] = set()  # read states known to have arrived
        self.peak = {"results": 0, "reads": 0, "per_worker": 0}  # the most ever held: memory stays flat

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """``(result table, its ObjectRef)`` for every block, in input order."""
        while True:
            self._open_files()
            blocked_on = self._dispatch()
            if self.order and self.order[0] not in self.running:  # the next result is finished: take it
                ref = self.order.popleft()
                yield self.ray.get(ref), ref
            elif self.order or self.open:
                self._wait(blocked_on)
            else:
                return

    def close(self) -> None:
        """Stop every actor (a run that ends early: its calls in flight are dropped)."""
        # Cancelled first: a call still queued on an actor killed under it would be "retried", and
        # Ray would print so on the console for each.
        for ref in [*self.order, *(state for f in self.open for _, state in f.reads)]:
            self.ray.cancel(ref)
        for actor in self.workers + self.readers:
            self.ray.kill(actor, no_restart=True)
        self.order.clear()
        self.running.clear()
        self.open.clear()

    def _open_files(self) -> None:
        while len(self.open) < len(self.readers) and self.next_file < len(self.files):
            index = self.next_file
            opened = _File(index, self.files[index], self.readers[index % len(self.readers)])
            self.open.append(opened)
            self.next_file += 1
            self._ask(opened)

    def _ask(self, opened: _File) -> None:
        while not opened.ended and len(opened.reads) < READS_AHEAD:
            opened.reads.append(opened.reader.read.remote(opened.index, opened.asked))
            opened.asked += 1
        self.peak["reads"] = max(self.peak["reads"], sum(len(f.reads) for f in self.open))

    def _dispatch(self) -> Any | None:
        """Hand the blocks that are read, in input order, to the least busy workers while they have
        room; the read state the next one waits for (None: it waits for a worker, or nothing)."""
        while self.open and self.started and len(self.order) < RESULTS_PER_WORKER * len(self.started):
            head = self.open[0]
            block, state = head.reads[0]
            worker = min(self.started, key=self.load.__getitem__)
            if self.load[worker] >= PER_WORKER:
                return None
            if state not in self.ready and not self.ray.wait([state], timeout=0, fetch_local=False)[0]:
                return state
            self.ready.discard(state)
            head.reads.popleft()
            said = self.ray.get(state)  # raises what the reader raised (an unreadable file)
            if said != ray_chunks.PAST:
                ref = self.workers[worker].work.remote(block, self.setup_args)
                self.order.append(ref)
                self.running[ref] = worker
                self.load[worker] += 1
                self.peak["per_worker"] = max(self.peak["per_worker"], self.load[worker])
                self.peak["results"] = max(self.peak["results"], len(self.order))
            if said == ray_chunks.MORE:
                self._ask(head)
            else:  # its last block (or none: a read queued after it): the next file's turn
                head.ended = True
                self.open.popleft()
                self._open_files()
        return None

    def _wait(self, state: Any | None) -> None:
        """Until a worker finishes a chunk or starts, or the read state the next block waits for arrives."""
        waiting = [*self.running, *self.starting] + ([state] if state is not None else [])
        done, _ = self.ray.wait(waiting, num_returns=1)
        for ref in done:
            if ref in self.running:
                self.load[self.running.pop(ref)] -= 1
            elif ref in self.starting:
                self.ray.get(ref)
                self.started.append(self.starting.pop(ref))
            else:
                self.ready.add(ref)


def chunks_per_block(chunk_bytes: int | None, input_bytes: int, workers: int) -> int:
    """Chunks in a block: as many as fill :data:`BLOCK_BYTES`, fewer when the inputs (``input_bytes``
    as stored: compressed inputs hold more text, and get smaller blocks than they could) would not
    give every worker :data:`BLOCKS_PER_WORKER` blocks. The chunks are the recipe's whatever this is."""
    if not chunk_bytes:
        return 1
    return max(1, min(BLOCK_BYTES // chunk_bytes, input_bytes // (workers * BLOCKS_PER_WORKER * chunk_bytes)))


def start(ray, reader: ChunkReader, worker: tuple[Callable[..., Any], tuple[Any, ...]], files: list[InputFile], *,
          cpus: int, max_retries: int) -> Feed:
    """Start ``cpus`` chunk workers (``setup(*args)`` once each) and the readers; the :class:`Feed`."""
    setup, setup_args = worker
    shared = ray.put(setup_args)  # the tokenizer and recipe are put in the object store once, not per actor
    chunk_actor = ray.remote(ray_chunks.ChunkWorker).options(num_cpus=1, max_restarts=-1, max_task_retries=max_retries)
    # Reading (decompress, parse) is light next to the chunk work: readers take no CPU slot of their
    # own, so every CPU holds a worker; spread, so one node's disk and network do not read everything.
    read_actor = ray.remote(ray_chunks.FileReader).options(num_cpus=0, max_restarts=-1, max_task_retries=max_retries,
                                                           scheduling_strategy="SPREAD")
    per_block = chunks_per_block(reader.max_bytes, sum(file_size(f) for f in files), cpus)
    workers = [chunk_actor.remote(setup) for _ in range(cpus)]
    readers = [read_actor.remote(reader, files, per_block) for _ in range(max(1, min(cpus, len(files), OPEN_FILES)))]
    return Feed(ray, files, workers, readers, shared)
