"""Reading inputs never loses data silently (issue 14): damaged files, encodings, csv quoting, accounting.

Every test here fails on the behaviour it guards against: a two-frame .zst cut in its second
frame read as half the records, a UTF-16 file read as NUL-laden text, an unclosed csv quote
swallowing the rest of a file, a record read but neither yielded nor counted.
"""

from __future__ import annotations

import collections
import csv
import gzip
import io
import json
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataprep.errors import InputError, RecipeError
from dataprep.read import InputSpec, read_batches, resolve_inputs
from dataprep.recipe import recipe_from_dict

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
XQUAD = DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl"


def resolve_one(base: Path, path: str, **options):
    files = resolve_inputs([InputSpec(path, **options)], base_dir=base)
    assert len(files) == 1, files
    return files[0]


def read(file, *, on_error: str = "raise", drops=None, sink=None, batch_size: int = 64) -> list[tuple[str, int]]:
    """``(text, line)`` of every record read."""
    drops = collections.Counter() if drops is None else drops
    out = []
    for batch in read_batches(file, 0, batch_size=batch_size, on_error=on_error, drops=drops, sink=sink):
        out.extend(zip(batch.column("text").to_pylist(), batch.column("line").to_pylist()))
    return out


def zst_frames(data: bytes, cuts: list[int], *, checksum: bool = False) -> tuple[bytes, list[int]]:
    """``data`` as one zstd frame per piece between ``cuts``; also returns where each frame starts."""
    bounds = [0, *cuts, len(data)]
    frames = [zstandard.ZstdCompressor(write_checksum=checksum).compress(data[a:b]) for a, b in zip(bounds, bounds[1:])]
    starts = [sum(len(f) for f in frames[:i]) for i in range(len(frames))]
    return b"".join(frames), starts


def flip(data: bytes, at: int, count: int = 1) -> bytes:
    out = bytearray(data)
    for i in range(at, at + count):
        out[i] ^= 0x5A
    return bytes(out)


# --- 1. damaged compressed inputs are file errors, in both on_error modes ---------------

LINES = b"".join(b'{"text": "record %d \\u2713"}\n' % i for i in range(400))
FRAMES, STARTS = zst_frames(LINES, [len(LINES) // 2])
ONE_FRAME = zstandard.ZstdCompressor(write_checksum=True).compress(LINES)
GZ = gzip.compress(LINES)
TWO_MEMBERS = gzip.compress(LINES[:5000]) + gzip.compress(LINES[5000:])

ZSTD_FIX, GZIP_FIX = "`zstd -t FILE`", "`gzip -t FILE`"
DAMAGED = [
    # (id, extension, bytes, message start, fix piece)
    ("zst-cut-in-frame-2", "zst", FRAMES[: STARTS[1] + (len(FRAMES) - STARTS[1]) // 2],
     "truncated: the zstd stream ends inside a frame (frame 2)", ZSTD_FIX),
    ("zst-cut-in-header-of-frame-2", "zst", FRAMES[: STARTS[1] + 3],
     "truncated: the zstd stream ends inside a frame (frame 2)", ZSTD_FIX),
    ("zst-one-frame-cut", "zst", ONE_FRAME[: len(ONE_FRAME) // 2],
     "truncated: the zstd stream ends inside a frame (frame 1)", ZSTD_FIX),
    ("zst-one-frame-cut-before-checksum", "zst", ONE_FRAME[:-4],
     "truncated: the zstd stream ends inside a frame (frame 1)", ZSTD_FIX),
    ("zst-flipped-block", "zst", flip(ONE_FRAME, 20, 8), "corrupt zstd data in frame 1: ", ZSTD_FIX),
    ("zst-flipped-checksum", "zst", flip(ONE_FRAME, len(ONE_FRAME) - 2),
     "corrupt zstd data in frame 1: zstd decompressor error: Restored data doesn't match checksum", ZSTD_FIX),
    ("zst-garbage-after-frame-1", "zst", FRAMES[: STARTS[1]] + b"garbage!" * 4,
     "corrupt zstd data in frame 2: zstd decompressor error: Unknown frame descriptor", ZSTD_FIX),
    ("zst-empty", "zst", b"", "empty: a compressed file holds at least one zstd frame or member", ZSTD_FIX),
    ("gz-cut", "gz", GZ[: len(GZ) // 2], "truncated: the gzip stream ends inside a member", GZIP_FIX),
    ("gz-cut-in-trailer", "gz", GZ[:-3], "truncated: the gzip stream ends inside a member", GZIP_FIX),
    ("gz-cut-in-member-2", "gz", TWO_MEMBERS[:-40], "truncated: the gzip stream ends inside a member", GZIP_FIX),
    ("gz-flipped-deflate", "gz", flip(GZ, 40, 16), "corrupt gzip data: ", GZIP_FIX),
    ("gz-flipped-crc", "gz", flip(GZ, len(GZ) - 6), "corrupt gzip data: CRC check failed", GZIP_FIX),
    ("gz-empty", "gz", b"", "empty: a compressed file holds at least one gzip frame or member", GZIP_FIX),
]


@pytest.mark.parametrize(("ext", "data", "message", "fix"), [c[1:] for c in DAMAGED], ids=[c[0] for c in DAMAGED])
@pytest.mark.parametrize("url", [False, True], ids=["path", "file-url"])
def test_damaged_container_is_a_file_error_in_both_modes(tmp_path, ext, data, message, fix, url):
    path = tmp_path / f"d.jsonl.{ext}"
    path.write_bytes(data)
    file = resolve_one(tmp_path, path.as_uri() if url else path.name)
    for on_error in ("raise", "skip"):
        drops: collections.Counter = collections.Counter()
        sink: list = []
        with pytest.raises(InputError) as err:
            read(file, on_error=on_error, drops=drops, sink=sink if on_error == "skip" else None)
        assert err.value.path == (path.as_uri() if url else str(path))
        assert err.value.location is None
        assert err.value.reason_message.startswith(message), err.value.reason_message
        assert fix in err.value.fix and "download or copy it again" in err.value.fix
        assert not drops and not sink  # the container's damage is not a bad record
    with pytest.raises(InputError) as err:  # `encoding: auto` reads the file's first bytes when inputs are resolved
        resolve_one(tmp_path, path.as_uri() if url else path.name, encoding="auto")
    assert err.value.reason_message.startswith(message)


def test_whole_compressed_files_read_every_record(tmp_path):
    """The frame-by-frame reader against the cases it must accept: many frames, a skippable frame, members."""
    expected = [(f"record {i} ✓", i + 1) for i in range(400)]
    skippable = struct.pack("<II", 0x184D2A50, 5) + b"12345"
    many, _ = zst_frames(LINES, [1, 100, 5000, 5001, len(LINES) - 1], checksum=True)
    cases = {
        "a.jsonl.zst": FRAMES,
        "b.jsonl.zst": many,
        "c.jsonl.zst": skippable + FRAMES + skippable,
        "d.jsonl.zst": zst_frames(b"", [])[0] + FRAMES,  # an empty frame first
        "e.jsonl.gz": TWO_MEMBERS,
        "f.jsonl.gz": GZ + b"\0" * 16,  # zero padding after the last member, as tape tools write
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert read(resolve_one(tmp_path, name)) == expected, name
        assert read(resolve_one(tmp_path, (tmp_path / name).as_uri())) == expected, name


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("d.txt", {"txt_unit": "line"}),
        ("d.txt", {"txt_unit": "paragraph"}),
        ("d.txt", {"txt_unit": "file"}),
        ("d.jsonl", {}),
        ("d.json", {}),
        ("d.csv", {}),
        ("d.tsv", {}),
    ],
)
@pytest.mark.parametrize("ext", ["zst", "gz"])
def test_every_text_reader_stops_at_a_cut_container(tmp_path, name, options, ext):
    texts = [f"line {i}" for i in range(300)]
    if name.endswith(".jsonl"):
        body = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    elif name.endswith(".json"):
        body = json.dumps([{"text": t} for t in texts])
    elif name.endswith(".csv"):
        body = "text,n\n" + "".join(f"{t},1\n" for t in texts)
    elif name.endswith(".tsv"):
        body = "text\tn\n" + "".join(f"{t}\t1\n" for t in texts)
    else:
        body = "".join(t + "\n\n" for t in texts)
    raw = body.encode()
    data = zst_frames(raw, [len(raw) // 2])[0] if ext == "zst" else gzip.compress(raw)
    (tmp_path / f"{name}.{ext}").write_bytes(data[: len(data) - len(data) // 4])
    file = resolve_one(tmp_path, f"{name}.{ext}", **options)
    for on_error in ("raise", "skip"):
        drops: collections.Counter = collections.Counter()
        with pytest.raises(InputError, match="truncated: the (zstd|gzip) stream ends inside a"):
            read(file, on_error=on_error, drops=drops)
        assert not drops


# --- parquet and arrow ------------------------------------------------------------------

TABLE = pa.table({"text": [f"doc {i}" for i in range(1000)]})


def arrow_stream(table: pa.Table, chunk: int) -> tuple[bytes, list[int]]:
    """An Arrow IPC stream, and the offsets where each batch ends."""
    sink = pa.BufferOutputStream()
    ends = []
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=chunk):
            writer.write_batch(batch)
            ends.append(sink.tell())
    return sink.getvalue().to_pybytes(), ends


def arrow_file(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=100)
    return sink.getvalue().to_pybytes()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=100)
    return sink.getvalue().to_pybytes()


STREAM, BATCH_ENDS = arrow_stream(TABLE, 100)
COLUMNAR_DAMAGE = [
    ("parquet-cut", "d.parquet", parquet_bytes(TABLE)[:-100], "not a complete parquet file (truncated or corrupt): "),
    ("parquet-footer-only", "d.parquet", parquet_bytes(TABLE)[-500:], "not a complete parquet file (truncated or corrupt): "),
    ("arrow-file-cut", "d.arrow", arrow_file(TABLE)[:-10], "not a complete Arrow IPC file (truncated or corrupt: no footer)"),
    ("arrow-stream-cut-between-batches", "d.arrow", STREAM[: BATCH_ENDS[4]],
     f"truncated: the Arrow IPC stream ends after {BATCH_ENDS[4]} bytes without its end-of-stream marker"),
    ("arrow-stream-without-eos", "d.arrow", STREAM[:-8],
     f"truncated: the Arrow IPC stream ends after {len(STREAM) - 8} bytes without its end-of-stream marker"),
    ("arrow-stream-cut-in-batch", "d.arrow", STREAM[: BATCH_ENDS[4] + 50], "truncated or corrupt Arrow IPC stream: "),
]


@pytest.mark.parametrize(("name", "data", "message"), [c[1:] for c in COLUMNAR_DAMAGE], ids=[c[0] for c in COLUMNAR_DAMAGE])
def test_truncated_parquet_and_arrow_are_file_errors(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    for spec in (name, (tmp_path / name).as_uri()):
        file = resolve_one(tmp_path, spec)
        for on_error in ("raise", "skip"):
            drops: collections.Counter = collections.Counter()
            with pytest.raises(InputError) as err:
                read(file, on_error=on_error, drops=drops)
            assert err.value.path == (spec if "://" in spec else str(tmp_path / name))
            assert err.value.reason_message.startswith(message), err.value.reason_message
            assert "download, copy or write it again" in err.value.fix
            assert not drops


def test_whole_arrow_stream_and_file_read_every_row(tmp_path):
    (tmp_path / "s.arrow").write_bytes(STREAM)
    (tmp_path / "f.arrow").write_bytes(arrow_file(TABLE))
    (tmp_path / "p.parquet").write_bytes(parquet_bytes(TABLE))
    expected = [(f"doc {i}", i) for i in range(1000)]
    for name in ("s.arrow", "f.arrow", "p.parquet"):
        assert read(resolve_one(tmp_path, name), batch_size=300) == expected


def test_hf_dataset_with_a_cut_shard_names_the_shard(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "data-00000-of-00002.arrow").write_bytes(STREAM)
    (folder / "data-00001-of-00002.arrow").write_bytes(STREAM[: BATCH_ENDS[2]])
    state = {"_data_files": [{"filename": "data-00000-of-00002.arrow"}, {"filename": "data-00001-of-00002.arrow"}]}
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(InputError) as err:
        read(resolve_one(tmp_path, "ds"), on_error="skip")
    assert err.value.path == str(folder / "data-00001-of-00002.arrow")
    assert err.value.reason_message.startswith("truncated: the Arrow IPC stream ends")


# --- 2. encodings -------------------------------------------------------------------------


def xquad(ids: list[str]) -> list[str]:
    """Real paragraphs (XQuAD, shared data) by id, e.g. ``de/0/0``."""
    by_id = {}
    with open(XQUAD, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            by_id[record["id"]] = record["text"]
    return [by_id[i] for i in ids]


# German paragraphs (ä, ö, ü, ß, é) that Latin-1 holds, and English ones with curly quotes
# and dashes (’ “ ” –), which are cp1252 bytes 0x80-0x9F: Latin-1 reads those as control characters.
GERMAN = xquad(["de/0/0", "de/0/1", "de/0/2", "de/0/3", "de/0/4", "de/1/2", "de/1/4"])
ENGLISH_QUOTES = xquad(["en/1/1", "en/8/3", "en/44/0", "en/44/1"])
RUSSIAN = xquad(["ru/0/1", "ru/0/2"])


def jsonl_bytes(texts: list[str], codec: str) -> bytes:
    return "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts).encode(codec)


def test_real_text_in_a_legacy_codec_fails_with_the_codec_to_set_then_reads_exactly(tmp_path):
    assert all(any(c in t for c in "’“”") for t in ENGLISH_QUOTES[:3]) and all(not t.isascii() for t in GERMAN)
    cases = [  # (text, codec it is written in, codec the message must suggest, codecs that read it exactly)
        (GERMAN, "latin-1", "cp1252", ["latin-1", "cp1252", "auto"]),  # cp1252 reads every Latin-1 letter the same
        (ENGLISH_QUOTES, "cp1252", "cp1252", ["cp1252", "windows-1252", "auto"]),
    ]
    for texts, codec, suggested, readers in cases:
        (tmp_path / "d.jsonl").write_bytes(jsonl_bytes(texts, codec))
        with pytest.raises(InputError) as err:
            read(resolve_one(tmp_path, "d.jsonl"))
        assert err.value.location == "line 1"
        assert err.value.reason_message.startswith("invalid UTF-8 at byte ")
        assert err.value.fix.startswith(f"the file looks like {suggested}: set `encoding: {suggested}` on this input")
        assert "latin1" not in err.value.fix and "iconv" not in err.value.fix
        drops: collections.Counter = collections.Counter()
        assert read(resolve_one(tmp_path, "d.jsonl"), on_error="skip", drops=drops) == []
        assert drops == {"invalid_utf8": len(texts)}
        for name in readers:
            file = resolve_one(tmp_path, "d.jsonl", encoding=name)
            assert read(file) == [(t, i + 1) for i, t in enumerate(texts)], (codec, name)
        assert resolve_one(tmp_path, "d.jsonl", encoding="auto").encoding == "cp1252"
    # Latin-1 is not the fix for a cp1252 file: its quotes would become C1 control characters
    assert read(resolve_one(tmp_path, "d.jsonl", encoding="latin-1"))[0][0] != ENGLISH_QUOTES[0]


@pytest.mark.parametrize(
    ("codec", "suggested", "evidence", "wrong_order"),
    [
        ("utf-16", "utf-16", "it starts with the UTF-16 byte-order mark FF FE", "utf-16-be"),
        ("utf-16-le", "utf-16-le", "in its first 4096 bytes, the second byte of each pair is mostly zero", "utf-16-be"),
        ("utf-16-be", "utf-16-be", "in its first 4096 bytes, the first byte of each pair is mostly zero", "utf-16"),
        ("utf-32", "utf-32", "it starts with the UTF-32 byte-order mark FF FE 00 00", "utf-16"),
    ],
)
def test_utf16_and_utf32_read_as_another_codec_are_a_file_error_naming_the_codec(tmp_path, codec, suggested, evidence, wrong_order):
    texts = GERMAN + RUSSIAN
    (tmp_path / "d.jsonl").write_bytes(jsonl_bytes(texts, codec))
    for on_error in ("raise", "skip"):
        for encoding in ("utf-8", "latin-1", "cp1252", wrong_order):
            drops: collections.Counter = collections.Counter()
            with pytest.raises(InputError) as err:
                read(resolve_one(tmp_path, "d.jsonl", encoding=encoding), on_error=on_error, drops=drops)
            assert err.value.location is None and not drops
            assert err.value.reason_message.startswith(f"the file looks like {suggested} ({evidence}")
            assert err.value.fix == f"set `encoding: {suggested}` on this input (or `encoding: auto`)"
    for encoding in (suggested, "auto"):
        file = resolve_one(tmp_path, "d.jsonl", encoding=encoding)
        assert file.encoding == suggested
        assert read(file) == [(t, i + 1) for i, t in enumerate(texts)]


TEXTS = ["first “line”", "zweite Zeile: ä ö ü ß", "", "  ", "dritte", "last – one"]  # "" and "  " are blank lines

FORMATS = {  # name -> (options, body for TEXTS, expected (text, line))
    "d.txt": ({"txt_unit": "line"}, "\n".join(TEXTS) + "\n",
              [("first “line”", 1), ("zweite Zeile: ä ö ü ß", 2), ("dritte", 5), ("last – one", 6)]),
    "p.txt": ({"txt_unit": "paragraph"}, "\n".join(TEXTS) + "\n",
              [("first “line”\nzweite Zeile: ä ö ü ß", 1), ("dritte\nlast – one", 5)]),
    "f.txt": ({"txt_unit": "file"}, "\r\n".join(TEXTS), [("\r\n".join(TEXTS), 1)]),
    "d.jsonl": ({}, "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" if t.strip() else t + "\r\n" for t in TEXTS),
                [("first “line”", 1), ("zweite Zeile: ä ö ü ß", 2), ("dritte", 5), ("last – one", 6)]),
    "d.json": ({}, json.dumps([{"text": t} for t in TEXTS], ensure_ascii=False, indent=1),
               [(t, i) for i, t in enumerate(TEXTS)]),
    "d.csv": ({}, 'text,n\r\n"first “line”\r\nzweite, Zeile: ä ö ü ß",1\r\n\r\ndritte,2\r\n"last – one",3\r\n',
              [("first “line”\r\nzweite, Zeile: ä ö ü ß", 2), ("dritte", 5), ("last – one", 6)]),
    "d.tsv": ({}, "text\tn\n" + "".join(f"{t}\t{i}\n" if t.strip() else "\n" for i, t in enumerate(TEXTS)),
              [("first “line”", 2), ("zweite Zeile: ä ö ü ß", 3), ("dritte", 6), ("last – one", 7)]),
}


@pytest.mark.parametrize("codec", ["utf-8", "utf-8-sig", "cp1252", "utf-16", "utf-16-be", "utf-32", "auto"])
@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
@pytest.mark.parametrize("name", list(FORMATS))
def test_every_text_reader_decodes_with_the_encoding_and_keeps_line_numbers(tmp_path, name, codec, compression):
    options, body, expected = FORMATS[name]
    written = {"utf-8-sig": "utf-8-sig", "auto": "utf-16", "utf-8": "utf-8"}.get(codec, codec)
    data = body.encode(written)
    if compression == "gzip":
        data, suffix = gzip.compress(data), ".gz"
    elif compression == "zstd":
        data, suffix = zst_frames(data, [len(data) // 3, len(data) // 2])[0], ".zst"  # frames cut inside characters
    else:
        suffix = ""
    (tmp_path / (name + suffix)).write_bytes(data)
    file = resolve_one(tmp_path, name + suffix, encoding=codec, **options)
    assert file.encoding == ("utf-16" if codec == "auto" else codec)
    assert read(file, batch_size=2) == expected


def test_auto_records_the_detected_codec_per_file(tmp_path):
    files = {
        "ascii.jsonl": b'{"text": "plain"}\n',
        "utf8.jsonl": jsonl_bytes(GERMAN, "utf-8"),
        "bom.jsonl": jsonl_bytes(GERMAN, "utf-8-sig"),
        "latin1.jsonl": jsonl_bytes(GERMAN, "latin-1"),
        "cp1252.jsonl.gz": gzip.compress(jsonl_bytes(ENGLISH_QUOTES, "cp1252")),
        "russian.jsonl": jsonl_bytes(RUSSIAN * 3, "cp1251"),
        "utf16.jsonl.zst": zst_frames(jsonl_bytes(RUSSIAN, "utf-16"), [])[0],
        "empty.jsonl": b"",
        "d.parquet": parquet_bytes(TABLE),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    got = {f.path.name: f.encoding for f in resolve_inputs([InputSpec(".", encoding="auto")], base_dir=tmp_path)}
    assert got == {
        "ascii.jsonl": "utf-8",
        "utf8.jsonl": "utf-8",
        "bom.jsonl": "utf-8-sig",
        "latin1.jsonl": "cp1252",
        "cp1252.jsonl.gz": "cp1252",
        "russian.jsonl": "cp1251",
        "utf16.jsonl.zst": "utf-16",
        "empty.jsonl": "utf-8",
        "d.parquet": "utf-8",  # Arrow strings are UTF-8
    }
    assert read(resolve_one(tmp_path, "russian.jsonl", encoding="auto")) == [(t, i + 1) for i, t in enumerate(RUSSIAN * 3)]


def test_encoding_names(tmp_path):
    (tmp_path / "d.txt").write_bytes(b"x")
    (tmp_path / "d.parquet").write_bytes(parquet_bytes(TABLE))
    names = {"utf-8": "utf-8", "UTF8": "utf-8", "latin-1": "iso8859-1", "latin1": "iso8859-1", "windows-1252": "cp1252",
             "utf_16": "utf-16", "UTF-32": "utf-32", "utf-8-sig": "utf-8-sig", "gb18030": "gb18030", "koi8-r": "koi8-r"}
    for name, canonical in names.items():
        assert resolve_one(tmp_path, "d.txt", encoding=name).encoding == canonical
    assert resolve_one(tmp_path, "d.txt").encoding == "utf-8"
    for bad in ("klingon", "base64", "rot13", ""):
        with pytest.raises(InputError, match=f"unknown text encoding {bad!r}") as err:
            resolve_one(tmp_path, "d.txt", encoding=bad)
        assert "utf-8, utf-8-sig, latin-1, cp1252, utf-16, utf-32" in err.value.fix
    with pytest.raises(InputError, match="`encoding: cp1252` applies to text files; .* is parquet, whose strings are UTF-8"):
        resolve_one(tmp_path, "d.parquet", encoding="cp1252")
    assert resolve_one(tmp_path, "d.parquet", encoding="utf8").encoding == "utf-8"


def test_recipe_schema_takes_encoding_and_leaves_old_recipes_as_they_were(tmp_path):
    base = {"task": "pretrain", "tokenizer": {"path": "tok.json"}}
    recipe = recipe_from_dict({**base, "inputs": [{"path": "a.txt", "encoding": "cp1252"}, {"path": "b.txt"}]}, base_dir=tmp_path)
    assert [spec.encoding for spec in recipe.inputs] == ["cp1252", "utf-8"]
    assert "encoding" not in recipe.resolved["inputs"][1]  # no default written: recipe hashes stay as they were
    with pytest.raises(RecipeError, match="encoding"):
        recipe_from_dict({**base, "inputs": [{"path": "a.txt", "encoding": 8}]}, base_dir=tmp_path)


def test_bytes_the_codec_rejects_are_bad_records_on_their_line(tmp_path):
    # cp1252 has no character at 0x81; a lone surrogate is not UTF-16; the last character is cut
    cp1252 = "“a”\n".encode("cp1252") + b"b\x81c\n" + "–d\n".encode("cp1252")
    utf16 = "a\nb".encode("utf-16-le") + b"\x00\xd8" + "c\nd\n".encode("utf-16-le") + b"e"
    cases = [
        (cp1252, "cp1252", [("“a”", 1), ("–d", 3)], "line 2", "bytes that are not valid cp1252 after 1 characters of the line (b'\\x81')"),
        (utf16, "utf-16-le", [("a", 1), ("d", 3)], "line 2", "bytes that are not valid utf-16-le after 1 characters of the line (b'\\x00\\xd8')"),
    ]
    for data, codec, good, location, message in cases:
        (tmp_path / "d.txt").write_bytes(data)
        file = resolve_one(tmp_path, "d.txt", txt_unit="line", encoding=codec)
        with pytest.raises(InputError) as err:
            read(file)
        assert (err.value.location, err.value.reason_message) == (location, message)
        assert "`encoding:" in err.value.fix and "`on_error: skip`" in err.value.fix
        sink: list = []
        drops: collections.Counter = collections.Counter()
        assert read(file, on_error="skip", drops=drops, sink=sink) == good
        where = [(entry[1], entry[2]) for entry in sink]
        assert where == [(location, "invalid_utf8")] + ([("line 4", "invalid_utf8")] if codec == "utf-16-le" else [])
        assert sum(drops.values()) == len(sink)


def test_utf8_bom_kept_in_txt_dropped_elsewhere_and_by_utf8_sig(tmp_path):
    (tmp_path / "d.txt").write_bytes(b"\xef\xbb\xbfhello\nworld\n")
    (tmp_path / "d.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "hello"}\n')
    assert read(resolve_one(tmp_path, "d.txt", txt_unit="line")) == [("\ufeffhello", 1), ("world", 2)]
    assert read(resolve_one(tmp_path, "d.txt", txt_unit="line", encoding="utf-8-sig")) == [("hello", 1), ("world", 2)]
    assert read(resolve_one(tmp_path, "d.txt", encoding="auto")) == [("hello\nworld\n", 1)]
    for codec in ("utf-8", "utf-8-sig", "auto"):
        assert read(resolve_one(tmp_path, "d.jsonl", encoding=codec)) == [("hello", 1)]


# --- 4. csv quoting -----------------------------------------------------------------------


def test_unterminated_csv_quote_is_a_file_error_at_the_line_it_opened(tmp_path):
    content = b'text,n\nok,1\n"open,2\nnext,3\n\nlast,4\n'
    (tmp_path / "d.csv").write_bytes(content)
    file = resolve_one(tmp_path, "d.csv")
    for on_error in ("raise", "skip"):
        drops: collections.Counter = collections.Counter()
        with pytest.raises(InputError) as err:
            read(file, on_error=on_error, drops=drops)
        assert (err.value.path, err.value.location) == (str(tmp_path / "d.csv"), "line 3")
        assert err.value.reason_message == (
            "unterminated quoted value: the quote opened on this line is never closed"
            " (lines 3-6, to the end of the file, would be one value)"
        )
        assert err.value.fix.startswith('close the quote on line 3 (a quote inside a quoted value is written twice: "")')
        assert not drops


def test_csv_quote_that_breaks_lines_later_is_a_file_error_at_the_line_it_opened(tmp_path):
    (tmp_path / "d.csv").write_bytes(b'text,n\nok,1\n"5 inch screen,2\nnext,3\nsays "hi",4\nlast,5\n')
    with pytest.raises(InputError) as err:
        read(resolve_one(tmp_path, "d.csv"), on_error="skip")
    assert err.value.location == "line 3"
    assert err.value.reason_message == (
        "the quoted value opened on this line runs over lines 3-5 and breaks there"
        " (malformed csv row: ',' expected after '\"')"
    )


def test_csv_broken_quoting_within_a_line_is_a_bad_row_and_every_line_is_accounted_for(tmp_path):
    content = (
        b'text,n\n'  # 1 header
        b'"two\nlines",1\n'  # 2-3 one record
        b'"bad"quote,2\n'  # 4 bad_row (the quote closes on its line, then junk)
        b'\n'  # 5 blank
        b'ok,3\n'  # 6
        b'a,b,c\n'  # 7 bad_row (3 columns)
        b'"open at the end,4'  # 8 bad_row: the quote never closes, but only this line is in it
    )
    (tmp_path / "d.csv").write_bytes(content)
    sink: list = []
    drops: collections.Counter = collections.Counter()
    assert read(resolve_one(tmp_path, "d.csv"), on_error="skip", drops=drops, sink=sink) == [("two\nlines", 2), ("ok", 6)]
    assert [(entry[1], entry[2]) for entry in sink] == [("line 4", "bad_row"), ("line 7", "bad_row"), ("line 8", "bad_row")]
    assert drops == {"bad_row": 3}
    assert sink[2][3] == "malformed csv row: unexpected end of data"


# --- 5. property: every record planted is read back exactly or counted where it is -----------
#
# A file is planted from drawn items, each a good record or a bad one of a kind the format can
# hold, with blank lines between; the plan says what must come back: every good record's exact
# text at its line (row, record number), every bad one in the sink with its reason at its
# place, and records yielded + drops == records planted.

TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\ufeff"), max_size=12)
# NUL is left out: text that is mostly NUL bytes looks like UTF-16 on purpose (see _encoding).
# U+FEFF is left out: at the very start of a file it is a byte-order mark, which readers drop.
KINDS = {
    "line": ("good", "invalid_utf8", "blank"),
    "paragraph": ("good", "invalid_utf8"),
    "jsonl": ("good", "invalid_utf8", "malformed_json", "not_an_object", "missing_field", "non_string_field", "blank"),
    "json": ("good", "not_an_object", "missing_field", "non_string_field"),
    "csv": ("good", "bad_row", "bad_quote", "invalid_utf8", "blank"),
    "tsv": ("good", "bad_row", "invalid_utf8", "blank"),
    "parquet": ("good", "non_string_field", "invalid_utf8"),
    "arrow": ("good", "non_string_field", "invalid_utf8"),
}
BLANKS = ["", "  ", "\t", " \r"]
# a lone continuation byte, a bad continuation, a surrogate, a code point past U+10FFFF (not FF FE:
# a file that starts with it is UTF-16 by its byte-order mark, a file error when read as UTF-8)
INVALID_UTF8 = [b"\x80", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]


class Plan:
    """What a planted file holds: its lines (or rows) and the records that must come back."""

    def __init__(self):
        self.lines: list[bytes] = []
        self.good: list[tuple[str, int]] = []
        self.bad: list[tuple[str, str]] = []  # (location, reason)

    @property
    def next_line(self) -> int:
        return len(self.lines) + 1

    def add(self, kind: str, raw: bytes, text: str | None = None) -> None:
        line = self.next_line
        if kind == "good":
            self.good.append((text, line))
        elif kind != "blank":
            self.bad.append((f"line {line}", _REASON.get(kind, kind)))
        self.lines.extend(raw.split(b"\n"))


_REASON = {"bad_quote": "bad_row"}


def one_line(text: str) -> str:
    return text.replace("\n", " ")


def visible(text: str) -> str:
    """A line that is not blank: readers skip lines of whitespace only."""
    text = one_line(text)
    return text if text and not text.isspace() else "x" + text


def plant_lines(items) -> Plan:
    plan = Plan()
    for kind, text, k in items:
        if kind == "good":
            plan.add(kind, visible(text).encode(), visible(text))
        elif kind == "invalid_utf8":
            plan.add(kind, one_line(text).encode() + INVALID_UTF8[k] + b"end")
        else:
            plan.add(kind, BLANKS[k].encode())
    return plan


def plant_paragraphs(items) -> Plan:
    plan = Plan()
    for kind, text, k in items:
        for _ in range(1 + k % 2):
            plan.lines.append(BLANKS[k].encode())
        lines = [visible(text[i:]) for i in range(1 + k % 3)]
        start = plan.next_line
        if kind == "good":
            plan.good.append(("\n".join(lines), start))
            plan.lines.extend(line.encode() for line in lines)
        else:  # the paragraph is dropped once, at its first bad line
            bad = [line.encode() for line in lines]
            bad[k % len(bad)] += b"\x80"
            plan.bad.append((f"line {start + k % len(bad)}", "invalid_utf8"))
            plan.lines.extend(bad)
    return plan


def plant_jsonl(items) -> Plan:
    plan = Plan()
    for kind, text, k in items:
        ascii_ = bool(k % 2)
        if kind == "good":
            plan.add(kind, json.dumps({"id": k, "text": text}, ensure_ascii=ascii_).encode(), text)
        elif kind == "invalid_utf8":
            plan.add(kind, json.dumps({"text": text}, ensure_ascii=ascii_).encode()[:-2] + b'\xc3("}')
        elif kind == "malformed_json":
            plan.add(kind, ['{"text": ' + json.dumps(text), "{text: 1}", "[1,", '{"text": "a"} x'][k].encode())
        elif kind == "not_an_object":
            plan.add(kind, json.dumps([[text], text, 5, None][k]).encode())
        elif kind == "missing_field":
            plan.add(kind, json.dumps({"body": text}).encode())
        elif kind == "non_string_field":
            plan.add(kind, json.dumps({"text": [k, None, [text], {"t": text}][k]}).encode())
        else:
            plan.add(kind, BLANKS[k].encode())
    return plan


def plant_json(items) -> tuple[list, Plan]:
    plan, records = Plan(), []
    for index, (kind, text, k) in enumerate(items):
        where = f"record {index}"
        if kind == "good":
            records.append({"text": text, "n": k})
            plan.good.append((text, index))
        else:
            bad = {
                "not_an_object": [text, 1, None, [text]][k],
                "missing_field": {"body": text},
                "non_string_field": {"text": [k, None, True, {"t": text}][k]},
            }
            records.append(bad[kind])
            plan.bad.append((where, kind))
    return records, plan


def csv_row(values: list[str], end: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)  # "\r\n": values holding "\r" are quoted too
    return (out.getvalue()[:-2] + end).encode()


def plant_delimited(items, fmt: str, end: str) -> Plan:
    plan = Plan()
    cr = b"\r" if end == "\r\n" else b""  # before the "\n" each line ends with (a value's own line breaks stay)
    plan.lines.append((b"text\tn" if fmt == "tsv" else b"text,n") + cr)
    for kind, text, k in items:
        flat = "".join(c for c in text if c not in "\t\n\r\",")
        if kind == "good" and fmt == "csv":
            plan.add(kind, csv_row([text, str(k)], "") + cr, text)
        elif kind == "good":
            plan.add(kind, f"{flat}\t{k}".encode() + cr, flat)
        elif kind == "bad_row" and fmt == "csv":
            plan.add(kind, (csv_row([text, str(k), "extra"][: 1 + 2 * (k % 2)], "") if k % 2 or flat else b"x,1,2") + cr)
        elif kind == "bad_row":
            plan.add(kind, [f"x{flat}", f"{flat}\t1\t2"][k % 2].encode() + cr)
        elif kind == "bad_quote":
            plan.add(kind, f'"{flat}"x,{k}'.encode() + cr)  # the quote closes on its line, then junk
        elif kind == "invalid_utf8":
            plan.add(kind, flat.encode() + (b"\xe9\t1" if fmt == "tsv" else b"\xe9,1") + cr)
        else:  # in tsv "\t" is a row of two empty values
            plan.add(kind, BLANKS[k].replace("\t", " " if fmt == "tsv" else "\t").encode() + cr)
    return plan


def plant_columnar(items) -> tuple[pa.Table, Plan]:
    plan, values = Plan(), []
    for row, (kind, text, k) in enumerate(items):
        if kind == "good":
            values.append(text.encode())
            plan.good.append((text, row))
        else:
            values.append(None if kind == "non_string_field" else text.encode() + b"\xff")
            plan.bad.append((f"row {row}", kind))
    return pa.table({"text": pa.array(values, pa.binary()).view(pa.string())}), plan


def compress(data: bytes, compression: str | None, k: int) -> bytes:
    if compression == "gzip":
        return gzip.compress(data)
    if compression == "zstd":  # frames cut anywhere, inside lines and characters too
        return zst_frames(data, sorted({(k * 7919 * i) % (len(data) + 1) for i in range(1, 1 + k % 4)}))[0]
    return data


PROPERTY_CASES = [(unit, c) for unit in ("line", "paragraph", "jsonl", "json", "csv", "tsv") for c in (None, "gzip", "zstd")]
PROPERTY_CASES += [("parquet", None), ("arrow", None)]


@pytest.mark.parametrize(("kind", "compression"), PROPERTY_CASES, ids=[f"{u}-{c}" for u, c in PROPERTY_CASES])
@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_record_is_read_exactly_or_counted_at_its_place(tmp_path_factory, kind, compression, data):
    items = data.draw(st.lists(st.tuples(st.sampled_from(KINDS[kind]), TEXT, st.integers(0, 3)), max_size=25))
    k = data.draw(st.integers(0, 3))
    folder = tmp_path_factory.mktemp("planted")
    options: dict = {}
    if kind in ("line", "paragraph"):
        plan = plant_lines(items) if kind == "line" else plant_paragraphs(items)
        name, options = "d.txt", {"txt_unit": kind}
    elif kind == "jsonl":
        plan, name = plant_jsonl(items), "d.jsonl"
    elif kind == "json":
        records, plan = plant_json(items)
        name = "d.json"
        plan.lines = [json.dumps(records, ensure_ascii=bool(k % 2), indent=k or None).encode()]
    elif kind in ("csv", "tsv"):
        plan, name = plant_delimited(items, kind, ["\n", "\r\n"][k % 2]), f"d.{kind}"
    else:
        table, plan = plant_columnar(items)
        name = f"d.{kind}"
        if kind == "parquet":
            pq.write_table(table, folder / name, row_group_size=max(1, k * 3))
        else:
            (folder / name).write_bytes(arrow_stream(table, max(1, k * 4))[0] if k % 2 else arrow_file(table))
    if kind not in ("parquet", "arrow"):
        raw = b"\n".join(plan.lines) + (b"\n" if k % 2 or not plan.lines else b"")
        name += {"gzip": ".gz", "zstd": ".zst"}.get(compression, "")
        (folder / name).write_bytes(compress(raw, compression, k + len(items)))
    file = resolve_one(folder, name, **options)
    drops: collections.Counter = collections.Counter()
    sink: list = []
    got = read(file, on_error="skip", drops=drops, sink=sink, batch_size=1 + k * 5)
    assert got == plan.good
    found = [(entry[1], entry[2]) for entry in sink]
    if kind in ("parquet", "arrow"):  # a batch's bad rows are reported by reason, each reason in row order
        found.sort(key=lambda entry: int(entry[0].split()[1]))
    assert found == plan.bad
    assert all(entry[0] == str(folder / name) and entry[3] and entry[4] for entry in sink)
    assert drops == collections.Counter(reason for _, reason in plan.bad)
    assert len(got) + sum(drops.values()) == sum(kind != "blank" for kind, _, _ in items)  # records planted
    logged: collections.Counter = collections.Counter()  # no sink: the first bad records logged, the rest counted
    assert read(file, on_error="skip", drops=logged, batch_size=1 + k * 5) == plan.good
    assert logged == drops


def test_messages_name_the_files_own_lines_in_utf16(tmp_path):
    (tmp_path / "d.jsonl").write_bytes('{"text": "a"}\n\n{"text": "b"\n{"text": "ü"}\n'.encode("utf-16"))
    (tmp_path / "d.csv").write_bytes('text,n\n"x\ny",1\nbad\n"z",2\n'.encode("utf-16"))
    with pytest.raises(InputError) as err:
        read(resolve_one(tmp_path, "d.jsonl", encoding="utf-16"))
    assert (err.value.location, err.value.reason_message) == ("line 3", "malformed JSON: Expecting ',' delimiter (column 13)")  # just after the line's last character
    with pytest.raises(InputError) as err:
        read(resolve_one(tmp_path, "d.csv", encoding="utf-16"))
    assert (err.value.location, err.value.reason_message) == ("line 4", "row has 1 column, expected 2 (text, n)")
    assert read(resolve_one(tmp_path, "d.csv", encoding="auto"), on_error="skip") == [("x\ny", 2), ("z", 5)]


# --- 6. check-only reading (validate --recipe): the same readers hand every bad record over --------


def test_collecting_hands_over_what_the_readers_reject_and_changes_nothing_outside(tmp_path, caplog):
    from dataprep.read import collecting

    (tmp_path / "d.jsonl").write_bytes(b'{"text": "a"}\n{"text": 1}\n\xff\n{"text": "b"}\n[]\n')
    file = resolve_one(tmp_path, "d.jsonl")
    expected_rows = [("a", 1), ("b", 4)]
    for on_error in ("raise", "skip"):  # a reader built as run builds it (no sink of its own), in either mode
        found: list = []
        drops: collections.Counter = collections.Counter()
        with caplog.at_level("WARNING", logger="dataprep.read"), collecting(found):
            assert read(file, on_error=on_error, drops=drops) == expected_rows
        assert [(f[1], f[2]) for f in found] == [("line 2", "non_string_field"), ("line 3", "invalid_utf8"), ("line 5", "not_an_object")]
        assert all(f[0] == str(tmp_path / "d.jsonl") and f[3] and f[4] for f in found)
        assert drops == {"non_string_field": 1, "invalid_utf8": 1, "not_an_object": 1}
        assert not caplog.records  # handed over, not logged
    with pytest.raises(InputError) as err:  # outside the block: run's behaviour, unchanged
        read(file, on_error="raise")
    assert (err.value.location, err.value.reason_message) == ("line 2", "field 'text' is int, expected a string")
    drops = collections.Counter()
    assert read(file, on_error="skip", drops=drops) == expected_rows and len(caplog.records) == 3
    own: list = []  # a reader given its own sink keeps it inside the block
    with collecting(found := []):
        read(file, on_error="skip", sink=own)
    assert len(own) == 3 and found == []
    (tmp_path / "cut.jsonl.gz").write_bytes(GZ[: len(GZ) // 2])  # a damaged file is still a file error
    with pytest.raises(InputError, match="truncated"), collecting([]):
        read(resolve_one(tmp_path, "cut.jsonl.gz"))
