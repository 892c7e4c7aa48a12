"""Parsed tokenizers kept per process, so that loading the same files again costs a stat per file.

A run loads its recipe's tokenizer several times (the run itself, the check at its start, the
dataset reader; ``validate`` twice), and each parse of a large vocabulary costs seconds (Gemma 3:
1.7 s, plus 0.5 s for the JSON its fingerprint hashes). :func:`cached_parse` keeps the last
:data:`KEEP` parses: the ``tokenizers.Tokenizer`` after its roles were resolved, its JSON, the
roles and the files read. It keeps the parse, not the
:class:`~dataprep.text.tokenizer.LoadedTokenizer`, which holds per-run state (the encode engine
it chose); every load makes a new one around the shared ``Tokenizer``. Sharing it is sound because
nothing changes a loaded ``Tokenizer`` (see that class's docstring): one with more tokens is a copy.

The key is everything the parse reads: the path, the spec's options that change it, and a
stamp of the tokenizer's folder (every file's name, size and mtime, and the content digest of the
small ones, whose rewrites may keep size and mtime): a changed, added or removed file is a miss.
The warnings the parse logs (a role guessed from a well-known token name) are recorded on the miss
and logged again on every hit that asks for warnings, so a second load warns as the first did. A
load that requires a BOS or EOS the kept parse lacks parses again (and raises as the first would
have); ``add_bos``/``add_eos`` change nothing else, so the run, ``validate``'s check (neither)
and its recheck share one parse.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

__all__ = ["KEEP", "Parsed", "cached_parse", "folder_stamp", "clear"]

KEEP = 4  # parses kept: a run's tokenizer and a few others (a Gemma 3 parse holds ~100 MB)
_DIGESTED_BYTES = 2 << 20  # files up to this size are stamped by content as well


@dataclass(frozen=True)
class Parsed:
    """One parse: the tokenizer after its roles were resolved, and what a LoadedTokenizer needs besides."""

    tokenizer: Tokenizer
    tokens: dict[str, str | None]
    sources: dict[str, str]
    files: tuple[Path, ...]
    json: bytes | None = None  # ``tokenizer.to_str()`` as UTF-8; None where not cached
    records: tuple[logging.LogRecord, ...] = ()
    recorded: bool = False  # ``records`` holds what the parse logged (else it was made quietly)


_PARSES: OrderedDict[tuple, Parsed] = OrderedDict()
_LOCK = threading.Lock()


def folder_stamp(path: Path) -> tuple | None:
    """What the parse of ``path`` (a tokenizer file or folder) depends on in its folder; None when
    the folder cannot be listed (the parse then says why)."""
    folder = path if path.is_dir() else path.parent
    try:
        stamp = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_file():
                stat = entry.stat()
                digest = _digest(entry.path) if stat.st_size <= _DIGESTED_BYTES else None
                stamp.append((entry.name, stat.st_size, stat.st_mtime_ns, digest))
        return (str(folder.resolve()), tuple(stamp))
    except OSError:
        return None


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.blake2b(f.read(), digest_size=16).hexdigest()


def cached_parse(key: tuple | None, parse: Callable[[], Parsed], logger: logging.Logger, *, warn: bool,
                 fits: Callable[[Parsed], bool]) -> Parsed:
    """The parse kept under ``key`` when ``fits`` it, its records logged again on ``logger`` when
    ``warn``; else ``parse()``, kept with the records it logged on ``logger`` (from this thread).
    A parse made without its records (``warn`` False, or warnings off) is made again when a load
    needs them. ``key`` None: parse, keep nothing. A parse that raises keeps nothing."""
    if key is None:
        return parse()
    recording = warn and logger.isEnabledFor(logging.WARNING)
    with _LOCK:
        found = _PARSES.get(key)
        if found is not None:
            _PARSES.move_to_end(key)
    if found is not None and fits(found) and (found.recorded or not recording):
        for record in found.records if warn else ():
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            logging.getLogger(record.name).log(record.levelno, record.msg, *args)
        return found
    recorder = _Recorder(threading.get_ident())
    logger.addHandler(recorder)
    try:
        parsed = parse()
    finally:
        logger.removeHandler(recorder)
    json = parsed.json if parsed.json is not None else parsed.tokenizer.to_str().encode("utf-8")
    parsed = Parsed(parsed.tokenizer, parsed.tokens, parsed.sources, parsed.files, json, tuple(recorder.records), recording)
    with _LOCK:
        _PARSES[key] = parsed
        while len(_PARSES) > KEEP:
            _PARSES.popitem(last=False)
    return parsed


def clear() -> None:
    """Forget every kept parse."""
    with _LOCK:
        _PARSES.clear()


class _Recorder(logging.Handler):
    """Keeps the records one thread logs (another thread's loads log on the same logger)."""

    def __init__(self, thread: int):
        super().__init__(logging.NOTSET)
        self.thread = thread
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.records.append(record)
