"""The inputs as they were when a run started: size and SHA-256 of each, taken before reading
and checked again after, so that an input rewritten, truncated or appended to during the run
fails it instead of leaving a dataset made of two versions of a file."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from dataprep.errors import InputError
from dataprep.read import InputFile, file_sha256, file_size

HASH_THREADS = 4  # hashlib releases the GIL: a few files are hashed side by side


class InputDigests:
    """Each input's size and SHA-256, taken when built (before any record is read)."""

    def __init__(self, files: list[InputFile]):
        self.files = files
        self.sizes, self.digests = _measure(files)

    def check_unchanged(self) -> None:
        """Measure the inputs again.

        Raises:
            InputError: an input's size or content differs from the start of the run (the first one found).
        """
        sizes, digests = _measure(self.files)
        for file, before, after, old, new in zip(self.files, self.sizes, sizes, self.digests, digests):
            if before != after or old != new:
                what = f"its size went from {before:,} to {after:,} bytes" if before != after else "its content changed (SHA-256)"
                raise InputError(
                    file.location, None, f"the input changed while the run read it: {what}",
                    "do not write to a run's inputs while it runs (copy them, or wait for the writer to finish), then run again",
                )


def _measure(files: list[InputFile]) -> tuple[list[int], list[str]]:
    if not files:
        return [], []
    with ThreadPoolExecutor(min(HASH_THREADS, len(files))) as pool:
        digests = list(pool.map(_digest, files))
    return [file_size(f) for f in files], digests


def _digest(file: InputFile) -> str:
    try:
        return file_sha256(file)
    except OSError as exc:
        raise InputError(file.location, None, f"cannot read the input: {exc.strerror or exc}",
                         "check that the file is there and readable (a moved or deleted input, a lost mount)") from exc
