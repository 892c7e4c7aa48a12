"""txt readers: one document per file, per line, or per blank-line-separated paragraph.

Pieces are ``([texts], lines)``: one column, the 1-based line where each document starts.
Text is what :func:`open_binary` gives: the file decoded with its ``encoding`` (UTF-8
bytes either way), so lines are the file's own lines in any codec. A UTF-8 byte-order
mark (``EF BB BF``) is text like any other here: with ``encoding: utf-8`` (the default)
it is kept, as U+FEFF at the start of the first line, paragraph or file (a txt reader
does not guess that a leading character is not part of the text); ``encoding: utf-8-sig``
(or ``auto``, which picks it for such a file) drops it. A line that is not valid text in
the codec is ``invalid_utf8``; in paragraph mode its whole paragraph is dropped, once.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._common import BadRecords, open_binary
from ._file import InputFile

Piece = tuple[list[list[str]], list[int]]


def read_txt(file: InputFile, bad: BadRecords, batch_size: int) -> Iterator[Piece]:
    return _TXT_READERS[file.spec.txt_unit](file, bad, batch_size)


def _read_txt_file(file: InputFile, bad: BadRecords, batch_size: int) -> Iterator[Piece]:
    with open_binary(file) as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad.invalid_text(f"line {line}", exc, data, "file")
        return
    yield [[text]], [1]


def _read_txt_lines(file: InputFile, bad: BadRecords, batch_size: int) -> Iterator[Piece]:
    texts: list[str] = []
    lines: list[int] = []
    with open_binary(file) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.invalid_text(f"line {lineno}", exc, raw, "line")
                continue
            if text.isspace():
                continue
            texts.append(text[:-1] if text[-1] == "\n" else text)
            lines.append(lineno)
            if len(texts) == batch_size:
                yield [texts], lines
                texts, lines = [], []
    if texts:
        yield [texts], lines


def _read_txt_paragraphs(file: InputFile, bad: BadRecords, batch_size: int) -> Iterator[Piece]:
    texts: list[str] = []
    lines: list[int] = []
    parts: list[str] = []
    start = 0  # line where the current paragraph starts; 0 between paragraphs
    broken = False  # the current paragraph has invalid UTF-8 (already reported)
    with open_binary(file) as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if not broken:
                    bad.invalid_text(f"line {lineno}", exc, raw, "line")
                start, broken = start or lineno, True
                continue
            if not text.isspace():
                start = start or lineno
                parts.append(text[:-1] if text[-1] == "\n" else text)
                continue
            if start and not broken:
                texts.append("\n".join(parts))
                lines.append(start)
                if len(texts) == batch_size:
                    yield [texts], lines
                    texts, lines = [], []
            parts, start, broken = [], 0, False
    if start and not broken:
        texts.append("\n".join(parts))
        lines.append(start)
    if texts:
        yield [texts], lines


_TXT_READERS = {"file": _read_txt_file, "line": _read_txt_lines, "paragraph": _read_txt_paragraphs}
