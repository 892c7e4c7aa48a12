"""A generator's items produced on a thread of their own, a bounded number ahead of the consumer.

The local engine reads chunks (decompress, parse) this way when a run has more than one worker
(:func:`dataprep.build.engine.ordered_map`), so the calling thread only hands results to the
ordered stage and writes them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from queue import Empty, Full, Queue
from typing import TypeVar

from dataprep.build.chunk_results import close_iterator

T = TypeVar("T")

_DONE = object()  # the end of a read-ahead queue
READ_AHEAD = 2  # items read before the worker window has room for them (memory: window + this + 1 chunks)


def read_ahead(items: Iterable[T], depth: int) -> Iterator[T]:
    """``items``, produced on a thread of their own up to ``depth`` ahead of the consumer.

    Chunks are read (decompressed, parsed) on this thread while the caller's thread hands finished
    chunks to the ordered stage and writes them: on the bench corpus reading was half of the calling
    thread's work, which capped a run at 1.6 of 2 cores. The order and the items are the same; an
    error while producing them is raised here, after every item before it, as it would be without
    the thread. When the consumer stops early (an error, ``close()``), the producing thread stops at
    its next item and closes ``items`` itself, and this waits for it: no input stays open behind a run.
    """
    queue: Queue = Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        queue.put((item, None), timeout=0.05)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # raised in the consumer, in order
            queue.put((_DONE, exc))
            return
        finally:
            close_iterator(iterator)
        queue.put((_DONE, None))

    thread = threading.Thread(target=produce, name="dataprep-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # free a producer blocked on a full queue, then wait for it
            try:
                queue.get_nowait()
            except Empty:
                thread.join(0.05)
