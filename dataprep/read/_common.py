"""What every reader shares: opening files as UTF-8 bytes, bad-record policy, message helpers."""

from __future__ import annotations

import collections
import contextlib
import contextvars
import io
import json
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pyarrow as pa

from dataprep.errors import InputError

from ._compressed import BLOCK, open_decompressed
from ._encoding import misread_wide, read_head, suggest_fix
from ._transcode import Transcoded, unmark

if TYPE_CHECKING:
    from ._file import InputFile

logger = logging.getLogger("dataprep.read")

ON_ERROR = ("raise", "skip")
DROP_REASONS = (
    "invalid_utf8",
    "malformed_json",
    "not_an_object",
    "missing_field",
    "non_string_field",  # kind text
    "non_scalar_field",  # kind any
    "non_json_field",  # kind json: a columnar value with no JSON form (bytes, timestamp, NaN)
    "bad_messages",  # kind messages
    "non_text_content",  # kind messages: an image, audio, ... content part
    "bad_nesting",  # records: a place on the path that is missing or of the wrong type
    "bad_row",  # tsv / csv: wrong number of columns or malformed quoting
)
MAX_LOGGED = 10  # bad records logged one by one per file; the rest go into one summary line

SKIP = "or set `on_error: skip` to drop such records"


_COLLECTING: contextvars.ContextVar[list | None] = contextvars.ContextVar("dataprep_read_collecting", default=None)


@contextlib.contextmanager
def collecting(sink: list) -> Iterator[list]:
    """Check-only reading (``validate --recipe``): inside this block every reader run without a
    ``sink`` of its own (a task's chunk reader, as ``run`` builds it) counts each bad record and
    appends ``(file, location, reason, message, fix)`` to ``sink``, whatever its ``on_error``
    says, instead of raising or logging. Outside it nothing changes: ``run`` never enters it.

    The readers are generators: a block must hold the reading itself, not only the call that
    made the reader.
    """
    token = _COLLECTING.set(sink)
    try:
        yield sink
    finally:
        _COLLECTING.reset(token)


class BadRecords:
    """Raises on a bad record, or counts and logs it (``on_error: skip``), or, with a ``sink``
    (``validate --recipe``; also inside :func:`collecting`), counts it and appends
    ``(file, location, reason, message, fix)``."""

    def __init__(self, file: InputFile, on_error: str, drops: collections.Counter, sink: list | None = None):
        if sink is None and _COLLECTING.get() is not None:
            sink, on_error = _COLLECTING.get(), "skip"
        self.file, self.path, self.raise_ = file, file.location, on_error == "raise"
        self.drops, self.counts, self.logged = drops, collections.Counter(), 0
        self.sink = sink
        self.encoding_fix: str | None = None  # what to set, worked out from the file at its first bad text

    def invalid_text(self, location: str, exc: UnicodeDecodeError, data: bytes, scope: str) -> None:
        """Report a record whose bytes are not text in the input's encoding (``invalid_utf8``)."""
        self.report("invalid_utf8", location, self.text_message(exc, data, scope), f"{self.text_fix(data)}, {SKIP}")

    def text_message(self, exc: UnicodeDecodeError, data: bytes, scope: str) -> str:
        """What is wrong with ``data`` (a line, record or file as the reader got it, UTF-8 after transcoding)."""
        return text_message(exc, data, scope, self.file.encoding)

    def text_fix(self, data: bytes = b"") -> str:
        """The encoding to set (worked out once per file from its first bytes, else from ``data``)."""
        if self.encoding_fix is None:
            self.encoding_fix = encoding_fix(self.file, data)
        return self.encoding_fix

    def report(self, reason: str, location: str, message: str, fix: str) -> None:
        if self.sink is not None:
            self.drops[reason] += 1
            self.counts[reason] += 1
            self.sink.append((self.path, location, reason, message, fix))
            return
        if self.raise_:
            raise InputError(self.path, location, message, fix)
        self.drops[reason] += 1
        self.counts[reason] += 1
        if self.logged < MAX_LOGGED:
            self.logged += 1
            logger.warning("%s, %s: %s; skipped (on_error: skip)", self.path, location, message)

    def report_rows(self, reason: str, rows: np.ndarray, first: int, message: object, fix: str) -> None:
        """Report bad rows of a columnar batch; ``message`` is a string or ``row -> string``."""
        shown = rows if self.sink is not None else rows[: max(MAX_LOGGED - self.logged, 1 if self.raise_ else 0)]
        for row in map(int, shown):
            self.report(reason, f"row {first + row}", message(row) if callable(message) else message, fix)
        rest = len(rows) - len(shown)  # counted, not logged one by one
        if rest:
            self.drops[reason] += rest
            self.counts[reason] += rest

    def finish(self) -> None:
        if self.sink is not None:
            return
        total = sum(self.counts.values())
        if total > self.logged:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.counts.items()))
            logger.warning(
                "%s: skipped %d bad records in all (%s); only the first %d were logged",
                self.path,
                total,
                reasons,
                self.logged,
            )


def open_binary(file: InputFile) -> BinaryIO:
    """The file's text as UTF-8 bytes (local or a URL, decompressed, transcoded from ``file.encoding``).

    A utf-8 file's bytes pass through untouched (a byte-order mark included: readers decide).
    A file that is plainly UTF-16 or UTF-32 (a byte-order mark, or the zero bytes of ASCII
    text in it) read as another codec, or as the other byte order, is a file error, in both
    ``on_error`` modes: its every line would otherwise be read as text with NULs in it (or
    as CJK), not reported. So a file that starts with ``FF FE`` is UTF-16, not a UTF-8
    file whose first bytes are bad.

    Raises:
        InputError: The file is damaged (see :mod:`._compressed`), or UTF-16/32 read as another codec.
    """
    fh = open_decompressed(file)
    codec = file.encoding
    wide = misread_wide(fh.peek(_WIDE)[:_WIDE], codec)
    if wide is not None:
        fh.close()
        message = f"the file looks like {wide[0]} ({wide[1]}), but it is read as {codec}"
        raise InputError(file.location, None, message, f"set `encoding: {wide[0]}` on this input (or `encoding: auto`)")
    if codec == "utf-8":
        return fh
    return io.BufferedReader(Transcoded(fh, codec), buffer_size=BLOCK)


_WIDE = 4096  # bytes looked at for UTF-16/32


BLOCK_LINES = 4 << 20  # bytes of whole lines a block reader takes at a time (more for a longer line); a
# batch sliced from a block keeps it in memory while its chunk is in flight: 4 MB blocks keep that small


def read_blocks(fh: BinaryIO, size: int | None = None) -> Iterator[bytes]:
    """Consecutive blocks of whole lines (split at ``\\n`` only, as iterating ``fh`` does), each
    about ``size`` bytes; the last line may lack its line break. When a read fails (a damaged
    file), the whole lines read before the failure come first and then the error, as a
    line-by-line reader would have met them. ``size``: :data:`BLOCK_LINES` unless given."""
    size = size or BLOCK_LINES
    rest, eof = b"", False
    while not eof:
        pieces, held, piece = [rest], len(rest), b""
        try:
            while True:
                piece = fh.read1(BLOCK)
                if not piece:
                    eof = True
                    break
                pieces.append(piece)
                held += len(piece)
                if held >= size and b"\n" in piece:
                    break
        except Exception:
            data = b"".join(pieces)
            if cut := data.rfind(b"\n") + 1:
                yield data[:cut]
            raise
        if eof:
            rest = b""
        else:  # the block ends at the last line break of its last piece
            cut = piece.rfind(b"\n") + 1
            pieces[-1], rest = piece[:cut], piece[cut:]
        block = b"".join(pieces)
        if block:
            yield block


class Rows:
    """Records in the order they came, handed on in pieces of exactly ``batch_size`` (the JSONL reader):
    a block's records as Arrow arrays (:meth:`add_arrays`), a line's as values appended to
    :attr:`columns` and :attr:`lines` (the caller takes a piece when :meth:`room` is reached)."""

    def __init__(self, width: int, batch_size: int):
        self.width, self.batch_size = width, batch_size
        self.columns: list[list[str]] = [[] for _ in range(width)]
        self.lines: list[int] = []
        self.held: list[tuple[pa.Array, np.ndarray]] = []  # arrays before the lists, in order
        self.count = 0  # their records

    def __len__(self) -> int:
        return self.count + len(self.lines)

    def room(self) -> int:
        """Records the lists may take before the piece is full."""
        return self.batch_size - self.count

    def add_arrays(self, values: list[pa.Array], lines: np.ndarray) -> Iterator[tuple]:
        """Add a block's records (one array a column); yield each piece they fill."""
        self._hold_lists()
        start, count = 0, len(lines)
        while count - start >= self.batch_size - self.count:
            n = self.batch_size - self.count
            self.held.append(([v.slice(start, n) for v in values], lines[start : start + n]))
            self.count, start = self.batch_size, start + n
            yield self.take()
        if start < count:
            self.held.append(([v.slice(start) for v in values], lines[start:]))
            self.count += count - start

    def _hold_lists(self) -> None:
        if self.lines:
            self.held.append(([pa.array(column, pa.large_string()) for column in self.columns],
                              np.array(self.lines, dtype=np.int64)))
            self.count += len(self.lines)
            self.columns, self.lines = [[] for _ in range(self.width)], []

    def take(self) -> tuple:
        """The records held, as lists when every one came from a line, else as Arrow arrays."""
        if not self.held:
            piece = self.columns, self.lines
            self.columns, self.lines = [[] for _ in range(self.width)], []
            return piece
        self._hold_lists()
        if len(self.held) == 1:  # a slice of one block: no copy
            values, lines = self.held[0][0], pa.array(self.held[0][1])
        else:
            values = [pa.concat_arrays(list(column)) for column in zip(*(v for v, _ in self.held))]
            lines = pa.array(np.concatenate([n for _, n in self.held]))
        self.held, self.count = [], 0
        return list(values), lines


def lone_surrogate(text: str) -> str | None:
    """The first half of a surrogate pair that stands alone in ``text``, as its escape (``\\udXXX``):
    JSON's ``\\u`` escapes can make one, no UTF-8 can hold it. None when there is none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"\\u{ord(text[exc.start]):04x}"
    return None


def load_json_file(path) -> dict:
    """An HF dataset's metadata file (state.json, dataset_dict.json)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fix = "save the dataset again with `save_to_disk`"
        raise InputError(str(path), None, f"cannot read dataset metadata: {exc}", fix) from exc


def utf8_message(exc: UnicodeDecodeError, data: bytes, scope: str) -> str:
    return f"invalid UTF-8 at byte {exc.start} of the {scope} ({exc.reason}: {data[exc.start:exc.end]!r})"


def text_message(exc: UnicodeDecodeError, data: bytes, scope: str, codec: str) -> str:
    """:func:`utf8_message`, or for a transcoded file the bytes its codec rejected, as they are in the file."""
    original = None if codec == "utf-8" else unmark(data, exc.start)
    if original is None:
        return utf8_message(exc, data, scope)
    before = len(data[: exc.start].decode("utf-8", "replace"))
    return f"bytes that are not valid {codec} after {before} characters of the {scope} ({original!r})"


def encoding_fix(file: InputFile, data: bytes = b"") -> str:
    """What to set when ``file`` holds bytes its codec rejects (``data``: the record, as read)."""
    try:
        head = read_head(file)
    except (InputError, OSError):  # a damaged file: its own error comes when the reader gets there
        head = b""
    return suggest_fix(head, data if file.encoding == "utf-8" else b"", file.encoding)


def json_message(exc: Exception, line: str | None = None) -> str:
    """The parser's complaint; for one jsonl ``line``, its column within that line (the end of
    the line when the JSON stops there, not column 1 after the line break)."""
    if isinstance(exc, json.JSONDecodeError):
        column = exc.colno if line is None else min(exc.pos, len(line.rstrip("\r\n"))) + 1
        return f"malformed JSON: {exc.msg} (column {column})"
    return f"malformed JSON: {exc}" if isinstance(exc, ValueError) else "malformed JSON: nested too deeply"


def json_type(value: object) -> str:
    return "null" if value is None else type(value).__name__


def names_list(names: Sequence[str], limit: int = 20) -> str:
    if not names:
        return "none"
    shown = ", ".join(str(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"
