"""Whether an encode call may use the encoder's own thread pool (gigatoken's ``parallel``).

A batch handed to gigatoken's pool runs on every core. That is right for one caller, and wrong
where several encode side by side: the local engine's chunk threads, this process working chunks
beside its worker processes (:mod:`dataprep.build.engine`), a worker process or Ray actor. There
each caller encodes on its own thread: on 2 cores, two chunk threads each using gigatoken's pool
took ~15% more CPU for the same ids (the pool's threads spin while they wait). Output is identical
either way.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

_THREAD = threading.local()


def encode_serially_on_this_thread() -> None:
    """Mark the calling thread as one of several that encode side by side (a chunk thread)."""
    _THREAD.serial = True


def encode_serially_in_this_process() -> None:
    """Mark this process as one of several worker processes (dataprep's, or a Ray actor's): one per
    core already, so neither tokenizers' Rust pool nor gigatoken's (:func:`parallel_here`) runs."""
    os.environ[_TOKENIZERS_ENV] = "false"


@contextlib.contextmanager
def encode_serially() -> Iterator[None]:
    """Either engine encodes on the calling thread for the ``with`` block: ``TOKENIZERS_PARALLELISM``
    is ``false`` (restored after), which ``tokenizers`` reads at every call and :func:`parallel_here`
    for gigatoken.

    Process-wide: for a thread that encodes beside worker processes which hold the other cores
    (this process's own chunks in the ``processes`` mode, whose other threads read, hash and write
    but never encode). Fine-tuning pairs with the ``tokenizers`` engine and two workers: 6.0-6.4 s
    with its Rust pool on every core beside the child, 5.4-5.5 s without."""
    before = os.environ.get(_TOKENIZERS_ENV)
    os.environ[_TOKENIZERS_ENV] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_TOKENIZERS_ENV, None)
        else:
            os.environ[_TOKENIZERS_ENV] = before


_TOKENIZERS_ENV = "TOKENIZERS_PARALLELISM"


def parallel_here() -> bool | None:
    """gigatoken's ``parallel`` for an encode on this thread: False on a thread marked by
    :func:`encode_serially_on_this_thread`, or in a process that already is one of several workers
    (dataprep's worker processes and Ray actors set ``TOKENIZERS_PARALLELISM=false`` for tokenizers'
    pool; gigatoken detects multiprocessing children itself, not Ray actors); None elsewhere:
    gigatoken's own choice, its pool on every core."""
    if getattr(_THREAD, "serial", False):
        return False
    return False if os.environ.get(_TOKENIZERS_ENV, "").strip().lower() in ("false", "0", "off", "no") else None
