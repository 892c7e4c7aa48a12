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
A miss then looks for a parse of the same bytes elsewhere (every tokenizer file by its digest): the
copy a dataset keeps of its tokenizer, which ``validate`` and the dataset reader load, is the
files its run parsed.
The warnings the parse logs (a role guessed from a well-known token name) are recorded on the miss
and logged again on every hit that asks for warnings, so a second load warns as the first did. A
load that requires a BOS or EOS the kept parse lacks parses again (and raises as the first would
have); ``add_bos``/``add_eos`` change nothing else, so the run, ``validate``'s check (neither)
and its recheck share one parse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

__all__ = ["KEEP", "Parsed", "cached_parse", "folder_stamp", "clear", "specials_matched"]

KEEP = 8  # entries kept (a parse is kept under its path and under its content): a run's tokenizer and a few others
_DIGESTED_BYTES = 2 << 20  # files up to this size are stamped by content as well
_TOKENIZER_FILES = {"tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model"}


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


def folder_stamp(path: Path, *, content: bool = False) -> tuple | None:
    """What the parse of ``path`` (a tokenizer file or folder) depends on in its folder; None when
    the folder cannot be listed (the parse then says why). ``content``: the files' bytes only (every
    tokenizer file and small file by its digest, any other large file, such as a model's weights
    beside it, by its size), not where they are or when they were written: a copy has the same."""
    folder = path if path.is_dir() else path.parent
    try:
        stamp = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_file():
                stat = entry.stat()
                small = stat.st_size <= _DIGESTED_BYTES or (content and entry.name in _TOKENIZER_FILES)
                digest = _digest(entry.path) if small else None
                stamp.append((entry.name, stat.st_size, digest) if content else (entry.name, stat.st_size, stat.st_mtime_ns, digest))
        where = path.name if path.is_file() else None
        return (where, tuple(stamp)) if content else (str(folder.resolve()), where, tuple(stamp))
    except OSError:
        return None


def _digest(path: str) -> str:
    with open(path, "rb") as f:  # sha1: a third of blake2b's time on Gemma 3's 33 MB (20 ms)
        return hashlib.file_digest(f, "sha1").hexdigest()


def cached_parse(path: Path, options: tuple, parse: Callable[[], Parsed], logger: logging.Logger, *, warn: bool,
                 fits: Callable[[Parsed], bool]) -> Parsed:
    """The parse of ``path`` with ``options`` (the spec's, that change it) kept under its key when
    ``fits`` it, its records logged again on ``logger`` when ``warn``; else one of the same files
    elsewhere (a dataset's copy of its tokenizer, another spelling of the path) that logged nothing to
    say again; else ``parse()``, kept with the records it logged on ``logger`` (from this thread). A
    parse made without its records (``warn`` False, or warnings off) is made again when a load needs
    them. A folder that cannot be listed, or a parse that raises, keeps nothing. The files are named
    in ``path``'s folder."""
    stamp = folder_stamp(path)
    if stamp is None:
        return parse()
    folder = path if path.is_dir() else path.parent
    kept = _cached(path, (str(path), stamp, *options), options, parse, logger, warn=warn, fits=fits)
    return dataclasses.replace(kept, files=tuple(folder / f.name for f in kept.files))


def _cached(path: Path, key: tuple, options: tuple, parse: Callable[[], Parsed], logger: logging.Logger, *, warn: bool,
            fits: Callable[[Parsed], bool]) -> Parsed:
    recording = warn and logger.isEnabledFor(logging.WARNING)
    found = _kept(key)
    if found is not None and fits(found) and (found.recorded or not recording):
        for record in found.records if warn else ():
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            logging.getLogger(record.name).log(record.levelno, record.msg, *args)
        return found
    content = folder_stamp(path, content=True)
    same = None if content is None else (content, *options)
    elsewhere = None if same is None else _kept(("content", *same))
    # its records name the other path: usable only where there are none, or none are logged
    if elsewhere is not None and fits(elsewhere) and ((elsewhere.recorded and not elsewhere.records) or not recording):
        parsed = dataclasses.replace(elsewhere, records=(), recorded=elsewhere.recorded and not elsewhere.records)
        _keep(key, parsed)
        return parsed
    recorder = _Recorder(threading.get_ident())
    logger.addHandler(recorder)
    try:
        parsed = parse()
    finally:
        logger.removeHandler(recorder)
    json = parsed.json if parsed.json is not None else parsed.tokenizer.to_str().encode("utf-8")
    parsed = Parsed(parsed.tokenizer, parsed.tokens, parsed.sources, parsed.files, json, tuple(recorder.records), recording)
    _keep(key, parsed)
    if same is not None:
        _keep(("content", *same), parsed)
    return parsed


def _kept(key: tuple | str, store: OrderedDict | None = None) -> Any:
    store = _PARSES if store is None else store
    with _LOCK:
        found = store.get(key)
        if found is not None:
            store.move_to_end(key)
        return found


def _keep(key: tuple | str, value: Any, store: OrderedDict | None = None, limit: int = KEEP) -> None:
    store = _PARSES if store is None else store
    with _LOCK:
        store[key] = value
        while len(store) > limit:
            store.popitem(last=False)


def clear() -> None:
    """Forget every kept parse and copy."""
    with _LOCK:
        _PARSES.clear()
        _COPIES.clear()


# Copies that match special tokens in text, by tokenizer fingerprint (specials_matched).
_COPIES: OrderedDict[str, Tokenizer] = OrderedDict()
COPIES_KEEP = 2  # a copy is large (Gemma 3's, ~240 MB)


def specials_matched(tokenizer, *, keep: bool = True) -> Tokenizer:
    """The ``tokenizers.Tokenizer`` of ``tokenizer`` (a :class:`~dataprep.text.tokenizer.LoadedTokenizer`)
    as templates are encoded: special tokens in the text matched as tokens. Its own when it matches them
    already (``split_special_tokens`` off); else a copy with ``encode_special_tokens`` off, made once per
    tokenizer JSON in a process and never handed to a run. The shared one's flag is never flipped, not even
    for one encode: loads of the same files share it, and another thread's run would encode with the
    flipped flag meanwhile (special-token text in its documents becoming special ids, silently). A copy
    costs a parse (Gemma 3: ~1 s and ~240 MB while it lives); ``keep=False`` (a run that needs it once)
    uses a kept one if there is one but keeps none it makes."""
    if not tokenizer.split_special_tokens:
        return tokenizer.tokenizer
    found = _kept(tokenizer.fingerprint, _COPIES)
    if found is not None:
        return found
    copy = tokenizer.copy()
    copy.encode_special_tokens = False
    if keep:
        _keep(tokenizer.fingerprint, copy, _COPIES, COPIES_KEEP)
    return copy


class _Recorder(logging.Handler):
    """Keeps the records one thread logs (another thread's loads log on the same logger)."""

    def __init__(self, thread: int):
        super().__init__(logging.NOTSET)
        self.thread = thread
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.records.append(record)
