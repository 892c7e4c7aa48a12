"""Tests for dataprep.read: every format and compression, provenance, batching, bad records, real data."""

from __future__ import annotations

import collections
import gzip
import json
import logging
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep import columns
from dataprep.errors import ConfigError, InputError
from dataprep.read import SCHEMA, InputFile, InputSpec, iter_field, read_batches, resolve_inputs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPORA = DATA / "corpora"


# --- helpers -------------------------------------------------------------------------


def resolve_one(base: Path, path: str, **options) -> InputFile:
    files = resolve_inputs([InputSpec(path, **options)], base_dir=base)
    assert len(files) == 1, files
    return files[0]


def read(
    file: InputFile, *, source: int = 0, batch_size: int = 1000, on_error: str = "raise", drops=None
) -> list[pa.RecordBatch]:
    drops = collections.Counter() if drops is None else drops
    return list(read_batches(file, source, batch_size=batch_size, on_error=on_error, drops=drops))


def rows(batches: list[pa.RecordBatch]) -> list[tuple[str, int, int]]:
    for batch in batches:
        assert batch.schema == SCHEMA
    table = pa.Table.from_batches(batches, schema=SCHEMA)
    return list(zip(*(table.column(name).to_pylist() for name in (columns.TEXT, columns.SOURCE, columns.LINE))))


def texts(batches: list[pa.RecordBatch]) -> list[str]:
    return [text for text, _, _ in rows(batches)]


def write_jsonl(path: Path, records: list, compression: str | None = None) -> Path:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    if compression == "gzip":
        data = gzip.compress(data)
    elif compression == "zstd":  # two frames, as parallel compressors write them
        half = len(data) // 2
        data = zstandard.ZstdCompressor().compress(data[:half]) + zstandard.ZstdCompressor().compress(data[half:])
    path.write_bytes(data)
    return path


def read_bad(tmp_path: Path, name: str, content: bytes, *, on_error: str, **options):
    """Read a file holding bad records; returns (rows, drops) or raises."""
    (tmp_path / name).write_bytes(content)
    drops: collections.Counter = collections.Counter()
    got = rows(read(resolve_one(tmp_path, name, **options), on_error=on_error, drops=drops))
    return got, drops


# --- formats and compression ---------------------------------------------------------


def test_txt_file_mode_is_one_untouched_document(tmp_path):
    (tmp_path / "doc.txt").write_bytes(b"  Title\r\n\nbody line\n\n\n")
    file = resolve_one(tmp_path, "doc.txt")
    assert (file.format, file.compression) == ("txt", None)
    assert rows(read(file, source=4)) == [("  Title\r\n\nbody line\n\n\n", 4, 1)]


def test_txt_line_mode_keeps_cr_and_skips_blank_lines(tmp_path):
    (tmp_path / "a.text").write_bytes(b"first\n\nthird\r\n \t\n  fifth  \nlast")
    got = rows(read(resolve_one(tmp_path, "a.text", txt_unit="line"), source=2))
    assert got == [("first", 2, 1), ("third\r", 2, 3), ("  fifth  ", 2, 5), ("last", 2, 6)]


def test_txt_paragraph_mode_joins_lines_and_reports_start_line(tmp_path):
    (tmp_path / "a.md").write_bytes(b"\n\np1 a\np1 b\r\n\n \n\t\np2\n\n\np3 a\n  p3 b")
    got = rows(read(resolve_one(tmp_path, "a.md", txt_unit="paragraph")))
    assert got == [("p1 a\np1 b\r", 0, 3), ("p2", 0, 8), ("p3 a\n  p3 b", 0, 11)]


def test_txt_empty_file(tmp_path):
    (tmp_path / "e.txt").write_bytes(b"")
    assert rows(read(resolve_one(tmp_path, "e.txt"))) == [("", 0, 1)]
    assert read(resolve_one(tmp_path, "e.txt", txt_unit="line")) == []
    assert read(resolve_one(tmp_path, "e.txt", txt_unit="paragraph")) == []


def test_txt_gzip_line_mode(tmp_path):
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress("α\nβ\n".encode()))
    file = resolve_one(tmp_path, "a.txt.gz", txt_unit="line")
    assert (file.format, file.compression) == ("txt", "gzip")
    assert rows(read(file)) == [("α", 0, 1), ("β", 0, 2)]


RECORDS = [{"id": i, "text": f"doc {i} ✓\r\n  spaced  "} for i in range(7)]


@pytest.mark.parametrize(
    ("name", "compression"),
    [("d.jsonl", None), ("d.ndjson", None), ("d.jsonl.gz", "gzip"), ("d.jsonl.zst", "zstd")],
)
def test_jsonl_plain_and_compressed(tmp_path, name, compression):
    write_jsonl(tmp_path / name, RECORDS, compression)
    file = resolve_one(tmp_path, name)
    assert (file.format, file.compression) == ("jsonl", compression)
    assert rows(read(file, source=1, batch_size=3)) == [(r["text"], 1, i + 1) for i, r in enumerate(RECORDS)]


def test_jsonl_blank_lines_and_bom_are_not_records(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "a"}\n\n   \r\n{"text": "b"}\n\n')
    assert rows(read(resolve_one(tmp_path, "d.jsonl"))) == [("a", 0, 1), ("b", 0, 4)]


def test_json_array_uses_record_index(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(RECORDS[:3]))
    file = resolve_one(tmp_path, "d.json")
    assert file.format == "json"
    assert rows(read(file, source=5)) == [(r["text"], 5, i) for i, r in enumerate(RECORDS[:3])]


def test_json_array_zstd(tmp_path):
    (tmp_path / "d.json.zst").write_bytes(zstandard.ZstdCompressor().compress(json.dumps(RECORDS).encode()))
    file = resolve_one(tmp_path, "d.json.zst")
    assert (file.format, file.compression) == ("json", "zstd")
    assert texts(read(file)) == [r["text"] for r in RECORDS]


def test_dotted_field_in_jsonl(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"meta": {"body": "x"}}, {"meta": {"body": "y", "n": 1}}])
    assert texts(read(resolve_one(tmp_path, "d.jsonl", text_field="meta.body"))) == ["x", "y"]


def test_iter_field():
    record = {"text": "t", "meta": {"body": None, "deep": {"x": 1}}, "list": [1]}
    assert iter_field(record, "text") == (True, "t")
    assert iter_field(record, "meta.body") == (True, None)
    assert iter_field(record, "meta.deep.x") == (True, 1)
    assert iter_field(record, "meta.nope") == (False, None)
    assert iter_field(record, "text.x") == (False, None)
    assert iter_field(record, "list.0") == (True, 1)  # a number steps into a list
    assert iter_field(record, "list.1") == (False, None)
    assert iter_field(record, "list.x") == (False, None)
    assert iter_field({"d": {"0": "key"}}, "d.0") == (True, "key")  # a key that is a number


def test_parquet_row_groups_nested_field_and_row_index(tmp_path):
    table = pa.table(
        {
            "id": list(range(10)),
            "text": [f"t{i}" for i in range(10)],
            "meta": [{"body": f"b{i}", "n": i} for i in range(10)],
        }
    )
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=3)
    file = resolve_one(tmp_path, "d.parquet")
    assert file.format == "parquet"
    assert rows(read(file, source=2, batch_size=4)) == [(f"t{i}", 2, i) for i in range(10)]
    assert [b.num_rows for b in read(file, batch_size=4)] == [4, 4, 2]
    nested = resolve_one(tmp_path, "d.parquet", text_field="meta.body")
    assert texts(read(nested)) == [f"b{i}" for i in range(10)]


def test_parquet_dictionary_and_string_view_columns(tmp_path):
    table = pa.table({"text": pa.array(["a", "b", "a"]).dictionary_encode()})
    pq.write_table(table, tmp_path / "d.parquet")
    assert texts(read(resolve_one(tmp_path, "d.parquet"))) == ["a", "b", "a"]
    with pa.OSFile(str(tmp_path / "v.arrow"), "wb") as sink:
        view = pa.table({"text": pa.array(["x", "y"], pa.string_view())})
        with pa.ipc.new_file(sink, view.schema) as writer:
            writer.write_table(view)
    assert texts(read(resolve_one(tmp_path, "v.arrow"))) == ["x", "y"]


@pytest.mark.parametrize("ipc", ["file", "stream"])
def test_arrow_ipc_file_and_stream(tmp_path, ipc):
    table = pa.table({"text": [f"t{i}" for i in range(5)]})
    with pa.OSFile(str(tmp_path / "d.arrow"), "wb") as sink:
        new = pa.ipc.new_file if ipc == "file" else pa.ipc.new_stream
        with new(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=2):
                writer.write_batch(batch)
    file = resolve_one(tmp_path, "d.arrow")
    assert file.format == "arrow"
    assert rows(read(file, batch_size=3)) == [(f"t{i}", 0, i) for i in range(5)]


def test_hf_dataset_rows_continue_across_shards(tmp_path):
    datasets = pytest.importorskip("datasets")
    texts_in = [f"doc {i}" for i in range(7)]
    data = datasets.Dataset.from_dict({"text": texts_in, "meta": [{"body": t.upper()} for t in texts_in]})
    data.save_to_disk(str(tmp_path / "ds"), num_shards=3)
    file = resolve_one(tmp_path, "ds")
    assert (file.path, file.format, file.compression) == (tmp_path / "ds", "arrow", None)
    assert rows(read(file, source=1, batch_size=2)) == [(t, 1, i) for i, t in enumerate(texts_in)]
    assert texts(read(resolve_one(tmp_path, "ds", text_field="meta.body"))) == [t.upper() for t in texts_in]


def test_hf_dataset_dict_reads_every_split_in_its_order(tmp_path):
    datasets = pytest.importorskip("datasets")
    splits = {"validation": ["v0", "v1"], "train": ["t0", "t1", "t2"]}
    datasets.DatasetDict({k: datasets.Dataset.from_dict({"text": v}) for k, v in splits.items()}).save_to_disk(
        str(tmp_path / "dd")
    )
    (tmp_path / "z.txt").write_text("last")
    files = resolve_inputs([InputSpec(".")], base_dir=tmp_path)  # a folder walk finds the dataset as a whole
    assert [(f.path.relative_to(tmp_path).as_posix(), f.format) for f in files] == [
        ("dd/validation", "arrow"),
        ("dd/train", "arrow"),
        ("z.txt", "txt"),
    ]
    assert [rows(read(f, source=i)) for i, f in enumerate(files[:2])] == [
        [("v0", 0, 0), ("v1", 0, 1)],
        [("t0", 1, 0), ("t1", 1, 1), ("t2", 1, 2)],
    ]


# --- resolving: folders, globs, sorting, de-duplication, errors ------------------------


@pytest.fixture
def tree(tmp_path):
    for name in [
        "b/2.jsonl",
        "b/10.jsonl",
        "a.txt",
        "c/d/e.json",
        "b/.hidden.jsonl",
        "b/x.jsonl.tmp",
        "b/y.jsonl.incomplete",
        ".git/config.txt",
        "out.incomplete/part.jsonl",
        "b/z.jsonl.gz",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    return tmp_path


def names(files: list[InputFile], base: Path) -> list[str]:
    return [f.path.relative_to(base).as_posix() for f in files]


def test_folder_is_walked_recursively_sorted_and_skips_hidden_and_temp(tree):
    files = resolve_inputs([InputSpec(str(tree))], base_dir=Path("/nonexistent"))
    assert names(files, tree) == ["a.txt", "b/10.jsonl", "b/2.jsonl", "b/z.jsonl.gz", "c/d/e.json"]
    assert [f.format for f in files] == ["txt", "jsonl", "jsonl", "jsonl", "json"]


def test_glob_with_double_star_sorted(tree):
    files = resolve_inputs([InputSpec("**/*.json*")], base_dir=tree)
    assert names(files, tree) == ["b/10.jsonl", "b/2.jsonl", "b/z.jsonl.gz", "c/d/e.json"]


def test_inputs_keep_recipe_order_and_a_file_matched_twice_is_read_once(tree):
    specs = [
        InputSpec("c"),
        InputSpec("b/*.jsonl"),
        InputSpec("b", format="jsonl"),
        InputSpec("a.txt"),
        InputSpec("./c/d/e.json"),
    ]
    files = resolve_inputs(specs, base_dir=tree)
    assert names(files, tree) == ["c/d/e.json", "b/10.jsonl", "b/2.jsonl", "b/z.jsonl.gz", "a.txt"]
    assert files[1].spec is specs[1] and files[3].spec is specs[2]  # first match wins


def test_glob_matching_folders_expands_them(tree):
    assert names(resolve_inputs([InputSpec("[bc]")], base_dir=tree), tree) == [
        "b/10.jsonl",
        "b/2.jsonl",
        "b/z.jsonl.gz",
        "c/d/e.json",
    ]


def test_glob_under_a_base_dir_with_glob_characters(tmp_path):
    base = tmp_path / "we[ir]d*"
    base.mkdir()
    write_jsonl(base / "a.jsonl", [{"text": "x"}])
    files = resolve_inputs([InputSpec("*.jsonl")], base_dir=base)
    assert [f.path for f in files] == [base / "a.jsonl"]
    assert texts(read(files[0])) == ["x"]


def test_a_path_named_exactly_is_read_even_with_a_temp_name(tree):
    assert names(resolve_inputs([InputSpec("b/x.jsonl.tmp", format="jsonl")], base_dir=tree), tree) == ["b/x.jsonl.tmp"]


def test_explicit_format_overrides_the_extension(tmp_path):
    (tmp_path / "notes.log").write_text("a\nb\n")
    file = resolve_one(tmp_path, "notes.log", format="txt", txt_unit="line")
    assert texts(read(file)) == ["a", "b"]


def test_missing_path_names_pattern(tmp_path):
    with pytest.raises(InputError) as err:
        resolve_inputs([InputSpec("nope/data.jsonl")], base_dir=tmp_path)
    assert err.value.path == "nope/data.jsonl"
    assert "path does not exist" in str(err.value) and str(tmp_path / "nope" / "data.jsonl") in str(err.value)


def test_glob_without_match_names_pattern(tmp_path):
    with pytest.raises(InputError, match=r"^\*\*/\*\.parquet: no files match this pattern"):
        resolve_inputs([InputSpec("**/*.parquet")], base_dir=tmp_path)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden.txt").write_text("x")
    with pytest.raises(InputError, match="no input files in this folder"):
        resolve_inputs([InputSpec("empty")], base_dir=tmp_path)


def test_unknown_extension_asks_for_format(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "data.xlsx").write_text("a,b\n")
    with pytest.raises(InputError) as err:
        resolve_inputs([InputSpec("d")], base_dir=tmp_path)
    assert err.value.path == "d"
    assert (
        "cannot infer the format of" in str(err.value) and "data.xlsx" in str(err.value) and "'.xlsx'" in str(err.value)
    )
    assert err.value.fix == "set `format:` on this input"


def test_compressed_parquet_is_rejected(tmp_path):
    (tmp_path / "d.parquet.gz").write_bytes(b"")
    with pytest.raises(InputError, match="compressed parquet file"):
        resolve_inputs([InputSpec("d.parquet.gz")], base_dir=tmp_path)


@pytest.mark.parametrize(
    ("option", "value"), [("format", "xlsx"), ("txt_unit", "sentence"), ("text_field", "meta..body")]
)
def test_unknown_option_values(tmp_path, option, value):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match=re.escape(repr(value))):
        resolve_inputs([InputSpec("a.txt", **{option: value})], base_dir=tmp_path)


# --- batching ------------------------------------------------------------------------


def batch_inputs(tmp_path: Path, n: int) -> dict[str, InputFile]:
    records = [{"text": f"r{i}"} for i in range(n)]
    write_jsonl(tmp_path / "d.jsonl", records)
    write_jsonl(tmp_path / "d.jsonl.zst", records, "zstd")
    (tmp_path / "d.json").write_text(json.dumps(records))
    (tmp_path / "d.txt").write_text("".join(f"r{i}\n" for i in range(n)))
    (tmp_path / "p.txt").write_text("".join(f"r{i}\n\n" for i in range(n)))
    pq.write_table(pa.table({"text": [f"r{i}" for i in range(n)]}), tmp_path / "d.parquet", row_group_size=3)
    return {
        "jsonl": resolve_one(tmp_path, "d.jsonl"),
        "zst": resolve_one(tmp_path, "d.jsonl.zst"),
        "json": resolve_one(tmp_path, "d.json"),
        "line": resolve_one(tmp_path, "d.txt", txt_unit="line"),
        "paragraph": resolve_one(tmp_path, "p.txt", txt_unit="paragraph"),
        "parquet": resolve_one(tmp_path, "d.parquet"),
    }


@pytest.mark.parametrize("batch_size", [1, 2, 3, 6, 7, 8, 100])
def test_batches_are_full_except_the_last(tmp_path, batch_size):
    n = 7
    for kind, file in batch_inputs(tmp_path, n).items():
        batches = read(file, batch_size=batch_size)
        sizes = [b.num_rows for b in batches]
        assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else []), kind
        assert texts(batches) == [f"r{i}" for i in range(n)], kind


def test_batches_stay_full_when_records_are_skipped(tmp_path):
    lines = [json.dumps({"text": f"r{i}"}) if i % 3 else "{bad" for i in range(12)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines))
    drops: collections.Counter = collections.Counter()
    batches = read(resolve_one(tmp_path, "d.jsonl"), batch_size=3, on_error="skip", drops=drops)
    assert [b.num_rows for b in batches] == [3, 3, 2]
    assert drops == {"malformed_json": 4}


def test_parquet_skips_keep_batches_full(tmp_path):
    values = [None if i % 4 == 0 else f"r{i}" for i in range(10)]
    pq.write_table(pa.table({"text": values}), tmp_path / "d.parquet", row_group_size=3)
    drops: collections.Counter = collections.Counter()
    batches = read(resolve_one(tmp_path, "d.parquet"), batch_size=3, on_error="skip", drops=drops)
    assert [b.num_rows for b in batches] == [3, 3, 1]
    assert [line for _, _, line in rows(batches)] == [1, 2, 3, 5, 6, 7, 9]
    assert drops == {"non_string_field": 3}


@settings(max_examples=25, deadline=None)
@given(
    docs=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",))), max_size=20),
    batch_size=st.integers(1, 8),
)
def test_jsonl_round_trip(tmp_path_factory, docs, batch_size):
    path = write_jsonl(tmp_path_factory.mktemp("rt") / "d.jsonl.gz", [{"text": d} for d in docs], "gzip")
    file = resolve_inputs([InputSpec(str(path))], base_dir=path.parent)[0]
    assert rows(read(file, batch_size=batch_size)) == [(d, 0, i + 1) for i, d in enumerate(docs)]


def test_read_batches_rejects_bad_options(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    file = resolve_one(tmp_path, "a.txt")
    with pytest.raises(ConfigError, match="batch_size"):  # checked at the call, before reading
        read_batches(file, 0, batch_size=0, on_error="raise", drops=collections.Counter())
    with pytest.raises(ConfigError, match="on_error"):
        read_batches(file, 0, batch_size=1, on_error="ignore", drops=collections.Counter())


# --- bad records: raise and skip -------------------------------------------------------

GOOD = b'{"id": 1, "text": "ok"}\n'
FIX_FIELD = "set `text_field:` to the field that holds the text, or `on_error: skip` to drop such records"

JSONL_CASES = [
    # (bad line, reason, message, fix piece)
    (
        b'{"id": 2, "text": "caf\xe9"}\n',
        "invalid_utf8",
        "invalid UTF-8 at byte 22 of the line (invalid continuation byte: b'\\xe9')",
        "`encoding: ",
    ),
    (
        b'{"id": 2 "text": "x"}\n',
        "malformed_json",
        "malformed JSON: Expecting ',' delimiter (column 10)",
        "or set `on_error: skip`",
    ),
    (b'{"id": 2, "body": "x"}\n', "missing_field", "missing field 'text' (keys present: id, body)", FIX_FIELD),
    (b'{"id": 2, "text": 7}\n', "non_string_field", "field 'text' is int, expected a string", FIX_FIELD),
    (b'{"id": 2, "text": null}\n', "non_string_field", "field 'text' is null, expected a string", FIX_FIELD),
    (b'["text", "x"]\n', "not_an_object", "expected a JSON object, got list", "on_error: skip"),
    (b'"just a string"\n', "not_an_object", "expected a JSON object, got str", "on_error: skip"),
]


@pytest.mark.parametrize(("bad", "reason", "message", "fix"), JSONL_CASES, ids=[c[1] for c in JSONL_CASES])
def test_jsonl_bad_record_raises_with_file_line_and_fix(tmp_path, bad, reason, message, fix):
    with pytest.raises(InputError) as err:
        read_bad(tmp_path, "d.jsonl", GOOD + bad + GOOD, on_error="raise")
    assert (err.value.path, err.value.location) == (str(tmp_path / "d.jsonl"), "line 2")
    assert err.value.reason_message == message
    assert fix in err.value.fix
    assert str(err.value).startswith(f"{tmp_path / 'd.jsonl'}, line 2: {message}\n  fix: ")


@pytest.mark.parametrize(("bad", "reason", "message", "fix"), JSONL_CASES, ids=[c[1] for c in JSONL_CASES])
def test_jsonl_bad_record_skipped_counted_and_logged(tmp_path, caplog, bad, reason, message, fix):
    with caplog.at_level(logging.WARNING, logger="dataprep.read"):
        got, drops = read_bad(tmp_path, "d.jsonl", GOOD + bad + GOOD, on_error="skip")
    assert got == [("ok", 0, 1), ("ok", 0, 3)]
    assert drops == {reason: 1}
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'd.jsonl'}, line 2: {message}; skipped (on_error: skip)"
    ]


def test_missing_nested_field_messages(tmp_path):
    content = b'{"id": 1, "text": "t"}\n{"meta": {"title": "x"}}\n{"meta": "flat"}\n{"meta": {"body": ["x"]}}\n'
    (tmp_path / "d.jsonl").write_bytes(content)
    file = resolve_one(tmp_path, "d.jsonl", text_field="meta.body")
    with pytest.raises(InputError) as err:
        read(file)
    assert (err.value.location, err.value.reason_message) == (
        "line 1",
        "missing field 'meta.body' (keys present: id, text)",
    )
    drops: collections.Counter = collections.Counter()
    assert read(file, on_error="skip", drops=drops) == []
    assert drops == {"missing_field": 3, "non_string_field": 1}
    (tmp_path / "e.jsonl").write_bytes(content.split(b"\n", 1)[1])
    with pytest.raises(
        InputError, match=re.escape("line 1: missing field 'meta.body' (keys present in 'meta': title)")
    ):
        read(resolve_one(tmp_path, "e.jsonl", text_field="meta.body"))


def test_skip_logs_first_ten_then_one_summary(tmp_path, caplog):
    content = b"".join(b"{broken\n" if i % 2 else GOOD for i in range(30)) + b'{"x": 1}\n'
    with caplog.at_level(logging.WARNING, logger="dataprep.read"):
        got, drops = read_bad(tmp_path, "d.jsonl", content, on_error="skip")
    assert len(got) == 15
    assert drops == {"malformed_json": 15, "missing_field": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 11
    assert messages[0].startswith(f"{tmp_path / 'd.jsonl'}, line 2: malformed JSON: Expecting property name")
    assert messages[-1] == (
        f"{tmp_path / 'd.jsonl'}: skipped 16 bad records in all (malformed_json: 15, missing_field: 1); only the first 10 were logged"
    )


def test_drops_accumulate_across_files(tmp_path):
    drops: collections.Counter = collections.Counter({"malformed_json": 2})
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_bytes(GOOD + b"{\n")
        read(resolve_one(tmp_path, name), on_error="skip", drops=drops)
    assert drops == {"malformed_json": 4}


@pytest.mark.parametrize(
    ("unit", "content", "location", "message", "kept"),
    [
        (
            "line",
            b"ok\nbad \xff here\nok2\n",
            "line 2",
            "invalid UTF-8 at byte 4 of the line (invalid start byte: b'\\xff')",
            ["ok", "ok2"],
        ),
        (
            "paragraph",
            b"p1\n\np2 a\np2 \xc3\n\xc3\np2 c\n\np3\n",
            "line 4",
            "invalid UTF-8 at byte 3 of the line",
            ["p1", "p3"],
        ),
        (
            "file",
            b"line one\nline \xfe two\n",
            "line 2",
            "invalid UTF-8 at byte 14 of the file (invalid start byte: b'\\xfe')",
            [],
        ),
    ],
)
def test_txt_invalid_utf8(tmp_path, unit, content, location, message, kept):
    with pytest.raises(InputError) as err:
        read_bad(tmp_path, "t.txt", content, on_error="raise", txt_unit=unit)
    assert (Path(err.value.path).name, err.value.location) == ("t.txt", location)
    assert err.value.reason_message.startswith(message)
    assert "`encoding: " in err.value.fix and "`on_error: skip`" in err.value.fix
    got, drops = read_bad(tmp_path, "t.txt", content, on_error="skip", txt_unit=unit)
    assert [text for text, _, _ in got] == kept
    assert drops == {"invalid_utf8": 1}


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_json_array_bad_records_use_record_index(tmp_path, on_error):
    content = json.dumps([{"text": "a"}, {"text": 1.5}, ["x"], {"body": "b"}, {"text": "c"}]).encode()
    if on_error == "raise":
        with pytest.raises(InputError) as err:
            read_bad(tmp_path, "d.json", content, on_error=on_error)
        assert (err.value.location, err.value.reason_message) == (
            "record 1",
            "field 'text' is float, expected a string",
        )
        assert err.value.fix == FIX_FIELD
    else:
        got, drops = read_bad(tmp_path, "d.json", content, on_error=on_error)
        assert got == [("a", 0, 0), ("c", 0, 4)]
        assert drops == {"non_string_field": 1, "not_an_object": 1, "missing_field": 1}


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_json_file_that_does_not_parse_always_raises(tmp_path, on_error):
    with pytest.raises(InputError) as err:
        read_bad(tmp_path, "d.json", b'[{"text": "a"},\n {"text": "b"]', on_error=on_error)
    assert (err.value.location, err.value.reason_message) == (
        "line 2",
        "malformed JSON: Expecting ',' delimiter (column 14)",
    )
    assert "fix the JSON syntax" in err.value.fix
    with pytest.raises(InputError) as err:
        read_bad(tmp_path, "l.json", b'{"text": "a"}\n{"text": "b"}\n', on_error=on_error)
    assert "set `format: jsonl`" in err.value.fix
    with pytest.raises(InputError, match="expected a JSON array of records at the top level, got dict"):
        read_bad(tmp_path, "o.json", b'{"text": "a"}', on_error=on_error)
    with pytest.raises(InputError, match="line 2: invalid UTF-8 at byte 3 of the file"):
        read_bad(tmp_path, "u.json", b'[\n"\xff"]', on_error=on_error)


def test_parquet_and_arrow_bad_rows(tmp_path):
    bad_utf8 = pa.array([b"ok", b"caf\xe9", None, b"fine"], pa.binary()).view(pa.string())
    table = pa.table(
        {"text": bad_utf8, "n": [1, 2, 3, 4], "meta": [{"body": "x"}, None, {"body": None}, {"body": "y"}]}
    )
    pq.write_table(table, tmp_path / "d.parquet")
    file = resolve_one(tmp_path, "d.parquet")
    with pytest.raises(InputError) as err:
        read(file)
    assert (Path(err.value.path).name, err.value.location) == ("d.parquet", "row 1")
    assert err.value.reason_message == "invalid UTF-8 at byte 3 of the value (unexpected end of data: b'\\xe9')"
    drops: collections.Counter = collections.Counter()
    assert rows(read(file, source=3, on_error="skip", drops=drops)) == [("ok", 3, 0), ("fine", 3, 3)]
    assert drops == {"invalid_utf8": 1, "non_string_field": 1}

    nested = resolve_one(tmp_path, "d.parquet", text_field="meta.body")
    with pytest.raises(InputError, match=re.escape("row 1: missing field 'meta.body' ('meta' is null)")):
        read(nested)
    drops.clear()
    assert rows(read(nested, on_error="skip", drops=drops)) == [("x", 0, 0), ("y", 0, 3)]
    assert drops == {"missing_field": 1, "non_string_field": 1}

    cases = [
        ("n", "row 0: field 'n' is int64, expected a string", {"non_string_field": 4}),
        ("body", "row 0: missing field 'body' (columns present: text, n, meta)", {"missing_field": 4}),
        ("meta.title", "row 0: missing field 'meta.title' (fields present in 'meta': body)", {"missing_field": 4}),
        ("n.x", "row 0: missing field 'n.x' ('n' is int64, not a struct)", {"missing_field": 4}),
    ]
    for field, message, expected in cases:
        other = resolve_one(tmp_path, "d.parquet", text_field=field)
        with pytest.raises(InputError, match=re.escape(message)) as err:
            read(other)
        assert "`text_field:`" in err.value.fix
        drops.clear()
        assert read(other, on_error="skip", drops=drops) == []
        assert drops == expected


def test_arrow_missing_column_skip_logs_then_summarizes(tmp_path, caplog):
    with pa.OSFile(str(tmp_path / "d.arrow"), "wb") as sink:
        table = pa.table({"body": [f"b{i}" for i in range(25)]})
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=10)
    drops: collections.Counter = collections.Counter()
    with caplog.at_level(logging.WARNING, logger="dataprep.read"):
        assert read(resolve_one(tmp_path, "d.arrow"), on_error="skip", drops=drops) == []
    assert drops == {"missing_field": 25}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 11
    assert messages[9].endswith(
        "d.arrow, row 9: missing field 'text' (columns present: body); skipped (on_error: skip)"
    )
    assert messages[10].endswith("skipped 25 bad records in all (missing_field: 25); only the first 10 were logged")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("d.jsonl.gz", gzip.compress(GOOD * 50)[:-20], "truncated: the gzip stream ends inside a member"),
        ("d.jsonl.zst", b"not zstd at all", "corrupt zstd data in frame 1: "),
    ],
)
def test_corrupt_compressed_file(tmp_path, name, data, message):  # more in test_read_faults.py
    (tmp_path / name).write_bytes(data)
    with pytest.raises(InputError) as err:
        read(resolve_one(tmp_path, name), on_error="skip")
    assert err.value.reason_message.startswith(message)
    assert "download or copy it again" in err.value.fix


# --- real data -----------------------------------------------------------------------


def plain_jsonl_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


@pytest.mark.parametrize(("relative", "count"), [("c4_demo.jsonl", 300), ("multilingual/xquad_contexts.jsonl", 2400)])
def test_real_jsonl(relative, count):
    files = resolve_inputs([InputSpec(relative)], base_dir=CORPORA)
    drops: collections.Counter = collections.Counter()
    got = rows(read(files[0], source=7, batch_size=128, drops=drops))
    assert len(got) == count and not drops
    assert [text for text, _, _ in got] == plain_jsonl_texts(CORPORA / relative)
    assert [(source, line) for _, source, line in got] == [(7, i + 1) for i in range(count)]


def test_real_wiki_demo_line_mode():
    got = rows(read(resolve_one(CORPORA, "wiki_demo.txt", txt_unit="line"), batch_size=8))
    expected = (CORPORA / "wiki_demo.txt").read_text(encoding="utf-8").split("\n")
    assert expected[-1] == ""  # the file ends with a newline
    assert len(got) == 30
    assert got == [(text, 0, i + 1) for i, text in enumerate(expected[:-1])]


def test_real_tinyshakespeare_paragraph_mode():
    text = (CORPORA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    expected = [p for p in re.split(r"\n(?:[ \t\r\f\v]*\n)+", text) if p.strip()]
    got = texts(read(resolve_one(CORPORA, "tinyshakespeare.txt", txt_unit="paragraph"), batch_size=1000))
    assert len(got) == len(expected) == 7222
    assert got == [p.removesuffix("\n") for p in expected]
    whole = texts(read(resolve_one(CORPORA, "tinyshakespeare.txt")))
    assert whole == [text]
