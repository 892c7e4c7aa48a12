"""The inputs as they were when a run started: size and SHA-256 of each, taken before reading
and checked again after, so that an input rewritten, truncated or appended to during the run
fails it instead of leaving a dataset made of two versions of a file.

The check after reading hashes a local file again only when its size or modification time
(nanoseconds) moved: a writer that changes a file changes its time, so a second SHA-256 pass over
an untouched corpus (a sixteenth of a pretraining run's CPU) proves nothing more. A URL, or a
folder (a ``save_to_disk`` dataset), is hashed again as before.

The first hashing runs on threads of its own while the run starts (tokenizer, engine probe) and
reads: a run needs the digests only for its checkpoint identity and its manifest, and hashlib
releases the GIL, so the pass over the corpus no longer delays the first record. The stamps are
taken before it starts, so a file written while it was hashed still fails the check after reading.
A run that fails stops that hashing (:meth:`InputDigests.cancel`): its error is not held back until
every input is hashed (on a 6 GB input, 31 s before a tokenizer error could end the process)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from stat import S_ISDIR

from dataprep.errors import InputError
from dataprep.read import InputFile, file_sha256, file_size

HASH_THREADS = 4  # hashlib releases the GIL: a few files are hashed side by side


class InputDigests:
    """Each input's size and SHA-256, hashed on a thread begun when built (before any record is read)."""

    def __init__(self, files: list[InputFile]):
        self.files = files
        self.stamps = [_stamp(f) for f in files]  # before hashing: a change while hashing shows at the end
        self._stop = threading.Event()
        pool = ThreadPoolExecutor(1, thread_name_prefix="dataprep-input-digests")
        self._measured = pool.submit(_measure_stamped, files, self._stop)
        pool.shutdown(wait=False)

    def cancel(self) -> None:
        """Stop the hashing begun when built (a failed run needs no digests); it ends within one
        block of reading. The digests are not to be asked for after this."""
        self._stop.set()

    @property
    def sizes(self) -> list[int]:
        """Each input's size in bytes (waits for the hashing begun when built).

        Raises:
            InputError: an input could not be read.
        """
        return self._measured.result()[0]

    @property
    def digests(self) -> list[str]:
        """Each input's SHA-256 (waits for the hashing begun when built).

        Raises:
            InputError: an input could not be read.
        """
        return self._measured.result()[1]

    def check_unchanged(self) -> None:
        """Measure the inputs again (a local file whose size and time did not move is not hashed again).

        Raises:
            InputError: an input's size or content differs from the start of the run (the first one found).
        """
        hashed = self._measured.result()[2]  # the first hashing is done (its errors raised) before comparing with it
        for file, before, after in zip(self.files, self.stamps, hashed):
            if before != after:  # a digest of what was there when the run began cannot be trusted
                raise InputError(file.location, None, "the input changed while the run read it: it was written to while "
                                 "it was hashed, as the run began", _FIX_CHANGED)
        moved = [i for i, (f, stamp) in enumerate(zip(self.files, self.stamps)) if stamp is None or _stamp(f) != stamp]
        sizes, digests = _measure([self.files[i] for i in moved])
        for i, after, new in zip(moved, sizes, digests):
            file, before, old = self.files[i], self.sizes[i], self.digests[i]
            if before != after or old != new:
                what = f"its size went from {before:,} to {after:,} bytes" if before != after else "its content changed (SHA-256)"
                raise InputError(file.location, None, f"the input changed while the run read it: {what}", _FIX_CHANGED)


_FIX_CHANGED = "do not write to a run's inputs while it runs (copy them, or wait for the writer to finish), then run again"


def _stamp(file: InputFile) -> tuple[int, int] | None:
    """A local file's size and modification time in nanoseconds; None for a URL or a folder, or
    when it cannot be read (the hash then says what happened)."""
    if file.url:
        return None
    try:
        stat = Path(file.path).stat()
    except OSError:
        return None
    return None if S_ISDIR(stat.st_mode) else (stat.st_size, stat.st_mtime_ns)


def _measure_stamped(files: list[InputFile], stop: threading.Event) -> tuple[list[int], list[str], list[tuple[int, int] | None]]:
    """:func:`_measure`, and each file's stamp once it is hashed (one that moved since the run began
    was written to while it was hashed)."""
    sizes, digests = _measure(files, stop)
    return sizes, digests, [_stamp(f) for f in files]


def _measure(files: list[InputFile], stop: threading.Event | None = None) -> tuple[list[int], list[str]]:
    if not files:
        return [], []
    with ThreadPoolExecutor(min(HASH_THREADS, len(files))) as pool:
        digests = list(pool.map(lambda f: _digest(f, stop), files))
    return [file_size(f) for f in files], digests


def _digest(file: InputFile, stop: threading.Event | None = None) -> str:
    try:
        return file_sha256(file, stop=stop)
    except OSError as exc:
        raise InputError(file.location, None, f"cannot read the input: {exc.strerror or exc}",
                         "check that the file is there and readable (a moved or deleted input, a lost mount)") from exc
