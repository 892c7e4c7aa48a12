"""Tests for dataprep.read.read_records: labeled pairs, field kinds, tsv/csv, chat adapters, real data."""

from __future__ import annotations

import collections
import gzip
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from dataprep import columns
from dataprep.errors import ConfigError, InputError
from dataprep.read import (
    FieldSpec,
    InputFile,
    InputSpec,
    normalize_messages,
    read_batches,
    read_records,
    records_schema,
    resolve_inputs,
)

PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "pairs"
SENTIMENT = PAIRS / "classification" / "sentiment_labelled_sentences"


# --- helpers -------------------------------------------------------------------------


def resolve_one(base: Path, path: str, **options) -> InputFile:
    files = resolve_inputs([InputSpec(path, **options)], base_dir=base)
    assert len(files) == 1, files
    return files[0]


def read(
    file: InputFile, fields: dict, *, source: int = 0, batch_size: int = 1000, on_error: str = "raise", drops=None
) -> list[dict]:
    """Every record as a dict of its columns (field columns, then source and line)."""
    drops = collections.Counter() if drops is None else drops
    batches = list(read_records(file, source, fields=fields, batch_size=batch_size, on_error=on_error, drops=drops))
    schema = records_schema(fields)
    assert all(batch.schema == schema for batch in batches)
    assert schema.names == [*fields, columns.SOURCE, columns.LINE]
    return pa.Table.from_batches(batches, schema=schema).to_pylist()


def read_bad(tmp_path: Path, name: str, content: bytes, fields: dict, *, on_error: str, **options):
    """Read a file holding bad records; returns (records, drops) or raises."""
    (tmp_path / name).write_bytes(content)
    drops: collections.Counter = collections.Counter()
    got = read(resolve_one(tmp_path, name, **options), fields, on_error=on_error, drops=drops)
    return got, drops


def write_arrow(path: Path, table: pa.Table) -> Path:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=2)
    return path


TEXT = FieldSpec("text")
PAIR = {"prompt": FieldSpec("q"), "answer": FieldSpec("a")}


# --- field kinds -----------------------------------------------------------------------


def test_text_any_json_kinds_on_jsonl(tmp_path):
    records = [
        {"q": "2+2?", "label": 4, "meta": {"tags": ["é", 1], "ok": True}},
        {"q": "sky?", "label": "blue", "meta": None},
        {"q": "pi?", "label": 3.5, "meta": "s"},
        {"q": "yes?", "label": False, "meta": {}},
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    fields = {"prompt": FieldSpec("q"), "label": FieldSpec("label", "any"), "meta": FieldSpec("meta", "json")}
    got = read(resolve_one(tmp_path, "d.jsonl"), fields, source=3)
    assert got == [
        {"prompt": "2+2?", "label": "4", "meta": '{"tags": ["é", 1], "ok": true}', "source": 3, "line": 1},
        {"prompt": "sky?", "label": "blue", "meta": "null", "source": 3, "line": 2},
        {"prompt": "pi?", "label": "3.5", "meta": '"s"', "source": 3, "line": 3},
        {"prompt": "yes?", "label": "false", "meta": "{}", "source": 3, "line": 4},
    ]


def test_optional_fields_absent_or_null_get_the_kinds_empty_value(tmp_path):
    records = [{"q": "a", "input": None}, {"q": "b"}, {"q": "c", "input": "x", "extra": {"n": 1}, "chat": []}]
    (tmp_path / "d.json").write_text(json.dumps(records))
    fields = {
        "prompt": FieldSpec("q"),
        "input": FieldSpec("input", required=False),
        "label": FieldSpec("label", "any", required=False),
        "extra": FieldSpec("extra.n", "json", required=False),
        "chat": FieldSpec("chat", "messages", required=False),
    }
    got = read(resolve_one(tmp_path, "d.json"), fields)
    assert [tuple(r.values()) for r in got] == [
        ("a", "", "", "null", "[]", 0, 0),
        ("b", "", "", "null", "[]", 0, 1),
        ("c", "x", "", "1", "[]", 0, 2),
    ]


def test_nested_paths_and_record_batching(tmp_path):
    records = [{"a": {"q": f"q{i}"}, "b": {"c": {"a": f"a{i}"}}} for i in range(7)]
    (tmp_path / "d.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress("".join(json.dumps(r) + "\n" for r in records).encode())
    )
    fields = {"prompt": FieldSpec("a.q"), "answer": FieldSpec("b.c.a")}
    drops: collections.Counter = collections.Counter()
    file = resolve_one(tmp_path, "d.jsonl.zst")
    batches = list(read_records(file, 1, fields=fields, batch_size=3, on_error="raise", drops=drops))
    assert [b.num_rows for b in batches] == [3, 3, 1]
    assert pa.Table.from_batches(batches).to_pylist()[6] == {"prompt": "q6", "answer": "a6", "source": 1, "line": 7}


def test_read_batches_is_read_records_with_one_text_field(tmp_path):
    (tmp_path / "d.tsv").write_text("text\tn\nhello\t1\nworld\t2\n")
    file = resolve_one(tmp_path, "d.tsv")
    drops: collections.Counter = collections.Counter()
    via_batches = pa.Table.from_batches(list(read_batches(file, 2, batch_size=10, on_error="raise", drops=drops)))
    assert via_batches.to_pylist() == read(file, {"text": TEXT}, source=2)
    assert via_batches.to_pylist() == [
        {"text": "hello", "source": 2, "line": 2},
        {"text": "world", "source": 2, "line": 3},
    ]


# --- every format gives the same records -----------------------------------------------

FORMAT_RECORDS = [{"q": f"question {i}, \"quoted\"", "a": f"answer\t{i}" if i % 2 else f"a{i}"} for i in range(5)]


def write_format(tmp_path: Path, fmt: str) -> InputFile:
    records = FORMAT_RECORDS
    if fmt == "jsonl":
        (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
        return resolve_one(tmp_path, "d.jsonl.gz")
    if fmt == "json":
        (tmp_path / "d.json").write_text(json.dumps(records))
        return resolve_one(tmp_path, "d.json")
    table = pa.Table.from_pylist(records)
    if fmt == "parquet":
        pq.write_table(table, tmp_path / "d.parquet", row_group_size=2)
        return resolve_one(tmp_path, "d.parquet")
    if fmt == "arrow":
        return resolve_one(tmp_path, write_arrow(tmp_path / "d.arrow", table).name)
    if fmt == "csv":
        body = "".join('"{}","{}"\r\n'.format(r["q"].replace('"', '""'), r["a"]) for r in records)
        (tmp_path / "d.csv.zst").write_bytes(zstandard.ZstdCompressor().compress(("q,a\r\n" + body).encode()))
        return resolve_one(tmp_path, "d.csv.zst")
    assert fmt == "tsv"  # a tsv value cannot hold a tab: swap the columns' roles
    body = "".join(f"{r['q']}\t{r['a'].replace(chr(9), ' ')}\n" for r in records)
    (tmp_path / "d.tsv.gz").write_bytes(gzip.compress(body.encode()))
    return resolve_one(tmp_path, "d.tsv.gz", header=False, columns=["q", "a"])


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "arrow", "csv", "tsv"])
def test_every_format_reads_the_same_pairs(tmp_path, fmt):
    file = write_format(tmp_path, fmt)
    assert file.format == fmt
    got = read(file, PAIR, batch_size=2)
    answers = [r["a"].replace("\t", " ") if fmt == "tsv" else r["a"] for r in FORMAT_RECORDS]
    assert [(r["prompt"], r["answer"]) for r in got] == [(r["q"], a) for r, a in zip(FORMAT_RECORDS, answers)]
    first_line = {"jsonl": 1, "csv": 2, "tsv": 1}.get(fmt, 0)  # line numbers, or record/row indexes
    assert [r["line"] for r in got] == [first_line + i for i in range(5)]


def test_columnar_kinds_and_optional_fields(tmp_path):
    table = pa.table(
        {
            "q": ["a", "b", None],
            "n": [1, None, 3],
            "flag": [True, False, None],
            "x": [1.5, 2.0, None],
            "chat": [
                [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
                [{"from": "system", "value": "be kind"}],
                None,
            ],
            "meta": [{"k": "v"}, None, {"k": None}],
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    write_arrow(tmp_path / "d.arrow", table)
    fields = {
        "q": FieldSpec("q", required=False),
        "n": FieldSpec("n", "any", required=False),
        "flag": FieldSpec("flag", "any", required=False),
        "x": FieldSpec("x", "json", required=False),
        "chat": FieldSpec("chat", "messages", required=False),
        "meta": FieldSpec("meta", "json"),
        "k": FieldSpec("meta.k", required=False),
        "gone": FieldSpec("nope", required=False),
    }
    expected = [
        ("a", "1", "true", "1.5", '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]',
         '{"k": "v"}', "v", "", 0, 0),
        ("b", "", "false", "2.0", '[{"role": "system", "content": "be kind"}]', "null", "", "", 0, 1),
        ("", "3", "", "null", "[]", '{"k": null}', "", "", 0, 2),
    ]
    for name in ("d.parquet", "d.arrow"):
        got = read(resolve_one(tmp_path, name), fields, batch_size=2)
        assert [tuple(r.values()) for r in got] == expected, name


def test_columnar_bad_rows_raise_in_row_order_and_skip_each_row_once(tmp_path):
    table = pa.table(
        {
            "q": ["ok", None, "ok", "ok", "ok"],
            "n": [[1], [2], None, [4], [5]],
            "chat": [
                [{"role": "user", "content": "a"}],
                [{"role": "user", "content": None}],  # also bad, but q is checked first
                [{"role": "user", "content": "c"}],
                [{"role": "user", "content": None}],
                [{"role": "user", "content": "e"}],
            ],
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    fields = {"q": TEXT_Q, "chat": FieldSpec("chat", "messages"), "n": FieldSpec("n", "any")}
    file = resolve_one(tmp_path, "d.parquet")
    with pytest.raises(InputError) as err:
        read(file, fields)
    assert (err.value.location, err.value.reason_message) == (
        "row 0",
        "field 'n' is list, expected a string, number or boolean",
    )
    assert err.value.fix == "set `fields.n.path:` to the field that holds `n`, or `on_error: skip` to drop such records"
    drops: collections.Counter = collections.Counter()
    assert read(file, {"q": TEXT_Q, "chat": FieldSpec("chat", "messages")}, on_error="skip", drops=drops) == [
        {"q": "ok", "chat": '[{"role": "user", "content": "a"}]', "source": 0, "line": 0},
        {"q": "ok", "chat": '[{"role": "user", "content": "c"}]', "source": 0, "line": 2},
        {"q": "ok", "chat": '[{"role": "user", "content": "e"}]', "source": 0, "line": 4},
    ]
    assert drops == {"non_string_field": 1, "bad_messages": 1}
    with pytest.raises(InputError, match=r"row 1: chat\[0\]: 'content' is null, expected a string"):
        read(file, {"chat": FieldSpec("chat", "messages")})


TEXT_Q = FieldSpec("q")


# --- tsv and csv -----------------------------------------------------------------------


def test_tsv_is_split_at_tabs_only(tmp_path):
    content = b'\xef\xbb\xbfLabel\tSMS\r\nham\t"quoted" text, with comma\r\n\r\n   \nspam\tsay "hi\r\nham\t\n'
    (tmp_path / "d.tsv").write_bytes(content)
    got = read(resolve_one(tmp_path, "d.tsv"), {"text": FieldSpec("SMS"), "label": FieldSpec("Label", "any")})
    assert got == [
        {"text": '"quoted" text, with comma', "label": "ham", "source": 0, "line": 2},
        {"text": 'say "hi', "label": "spam", "source": 0, "line": 5},
        {"text": "", "label": "ham", "source": 0, "line": 6},
    ]


def test_csv_quoting_and_multiline_values_keep_the_start_line(tmp_path):
    content = 'id,text\n1,"two\nlines, ""quoted"""\n2,plain\n'.encode()
    (tmp_path / "d.csv").write_bytes(content)
    got = read(resolve_one(tmp_path, "d.csv"), {"text": TEXT, "id": FieldSpec("id", "any")})
    assert got == [
        {"text": 'two\nlines, "quoted"', "id": "1", "source": 0, "line": 2},
        {"text": "plain", "id": "2", "source": 0, "line": 4},
    ]


def test_columns_rename_a_header_and_name_a_headerless_file(tmp_path):
    (tmp_path / "h.csv").write_text("Label,SMS\nham,hi\n")
    got = read(resolve_one(tmp_path, "h.csv", columns=["label", "text"]), {"text": TEXT})
    assert [(r["text"], r["line"]) for r in got] == [("hi", 2)]
    (tmp_path / "s.txt").write_text("Great phone.\t1\nBad.\t0\n")
    file = resolve_one(tmp_path, "s.txt", format="tsv", header=False, columns=["sentence", "label"])
    got = read(file, {"text": FieldSpec("sentence"), "label": FieldSpec("label", "any")})
    assert [(r["text"], r["label"], r["line"]) for r in got] == [("Great phone.", "1", 1), ("Bad.", "0", 2)]


def test_input_spec_columns_list_becomes_a_tuple():
    spec = InputSpec("a.tsv", header=False, columns=["a", "b"])
    assert spec.columns == ("a", "b") and hash(spec) == hash(InputSpec("a.tsv", header=False, columns=("a", "b")))
    assert InputSpec("x.jsonl") == InputSpec(path="x.jsonl", format="auto", text_field="text", txt_unit="file")


@pytest.mark.parametrize(
    ("options", "message", "fix"),
    [
        ({"header": False}, "has no header row (`header: false`), so its columns have no names", "`columns:`"),
        ({"columns": ["a", "a"]}, "`columns:` names 'a' more than once", "distinct"),
        ({"columns": []}, "invalid columns ()", "non-empty names"),
        ({"columns": "ab"}, "invalid columns 'ab'", "a list"),
        ({"header": "yes"}, "header must be true or false, got 'yes'", "`header:`"),
        ({"format": "jsonl", "columns": ["a"]}, "`columns:` applies to tsv and csv inputs only, not jsonl", "remove"),
    ],
)
def test_tabular_options_are_checked(tmp_path, options, message, fix):
    (tmp_path / "d.tsv").write_text("a\tb\n")
    with pytest.raises(InputError) as err:
        resolve_inputs([InputSpec("d.tsv", **options)], base_dir=tmp_path)
    assert message in err.value.reason_message and fix in err.value.fix


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_header_problems_always_raise(tmp_path, on_error):
    fields = {"text": TEXT}
    with pytest.raises(InputError) as err:
        read_bad(tmp_path, "a.csv", b"a,b,c\n1,2,3\n", fields, on_error=on_error, columns=["text", "b"])
    assert (err.value.location, err.value.reason_message) == (
        "line 1",
        "the header has 3 columns (a, b, c), but `columns:` names 2",
    )
    with pytest.raises(InputError) as err:
        read_bad(tmp_path, "b.tsv", b"\ntext\ttext\nx\ty\n", fields, on_error=on_error)
    assert (err.value.location, err.value.reason_message) == ("line 2", "column 'text' appears 2 times in the header")
    with pytest.raises(InputError) as err:
        read_bad(tmp_path, "c.tsv", b"te\xffxt\nx\n", fields, on_error=on_error)
    assert (err.value.location, err.value.reason_message) == (
        "line 1",
        "invalid UTF-8 at byte 2 of the line (invalid start byte: b'\\xff')",
    )


def test_empty_and_header_only_files_have_no_records(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"")
    (tmp_path / "h.tsv").write_bytes(b"text\tlabel\n")
    assert read(resolve_one(tmp_path, "e.csv"), {"text": TEXT}) == []
    assert read(resolve_one(tmp_path, "h.tsv"), {"text": TEXT}) == []


# --- bad records: raise and skip, with file and line -------------------------------------

SKIP_FIX = "or `on_error: skip` to drop such records"
MESSAGES_FIX = (
    "make `chat` a list of {role, content} or {from, value} objects with string values, "
    "or set `on_error: skip` to drop such records"
)
GOOD_LINE = b'{"q": "ok", "chat": [{"role": "user", "content": "hi"}]}\n'

BAD_LINES = [
    # (bad line 2, reason, message)
    (b'{"q": 1, "chat": []}\n', "non_string_field", "field 'q' is int, expected a string"),
    (b'{"q": null, "chat": []}\n', "non_string_field", "field 'q' is null, expected a string"),
    (b'{"chat": []}\n', "missing_field", "missing field 'q' (keys present: chat)"),
    (b'{"q": "x"}\n', "missing_field", "missing field 'chat' (keys present: q)"),
    (b'{"q": "x", "chat": "hi"}\n', "bad_messages", "chat: expected a list of messages, got str"),
    (b'{"q": "x", "chat": null}\n', "bad_messages", "chat: expected a list of messages, got null"),
    (b'{"q": "x", "chat": ["hi"]}\n', "bad_messages", "chat[0]: expected an object with role and content, got str"),
    (
        b'{"q": "x", "chat": [{"role": "user", "content": "a"}, {"speaker": "x"}]}\n',
        "bad_messages",
        "chat[1]: missing 'role' (keys present: speaker)",
    ),
    (
        b'{"q": "x", "chat": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "x"}]}\n',
        "bad_messages",
        "chat[2]: missing 'content'",
    ),
    (b'{"q": "x", "chat": [{"content": "a"}]}\n', "bad_messages", "chat[0]: missing 'role'"),
    (b'{"q": "x", "chat": [{"from": "human"}]}\n', "bad_messages", "chat[0]: missing 'value'"),
    (
        b'{"q": "x", "chat": [{"role": "user", "content": [{"type": "text"}]}]}\n',
        "bad_messages",
        "chat[0].content[0]: 'text' is null, expected a string",
    ),
    (
        b'{"q": "x", "chat": [{"role": "user", "content": [{"type": "text", "text": "a"}, '
        b'{"type": "image_url", "image_url": {"url": "x.png"}}]}]}\n',
        "non_text_content",
        "chat[0].content[1]: a part of type 'image_url'; only text content is read",
    ),
    (b'{"q": "x", "chat": [{"role": "user", "content": {"a": 1}}]}\n', "bad_messages",
     "chat[0]: 'content' is dict, expected a string"),
    (b'{"q": "x", "chat": [{"role": "user", "content": null}]}\n', "bad_messages",
     "chat[0]: 'content' is null, expected a string"),
    (
        b'{"q": "x", "chat": [{"role": "assistant", "content": null, "tool_calls": [{"name": "", "arguments": {}}]}]}\n',
        "bad_messages",
        "chat[0].tool_calls[0]: the function name is empty, expected a non-empty string",
    ),
    (
        b'{"q": "x", "chat": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]}\n',
        "bad_messages",
        "chat[0].tool_calls[0].function: missing 'arguments' (an object, or a JSON string)",
    ),
    (
        b'{"q": "x", "chat": [{"role": "assistant", "tool_calls": [{"name": "f", "arguments": [1]}]}]}\n',
        "bad_messages",
        "chat[0].tool_calls[0]: 'arguments' is list, expected an object or a JSON string",
    ),
    (
        b'{"q": "x", "chat": [{"role": "assistant", "tool_calls": {"name": "f", "arguments": "{}"}}]}\n',
        "bad_messages",
        "chat[0].tool_calls: expected a list of calls, got dict",
    ),
    (
        b'{"q": "x", "chat": [{"role": "user", "content": "a", "tool_calls": [{"name": "f", "arguments": "{}"}]}]}\n',
        "bad_messages",
        "chat[0]: a 'user' message has tool_calls; only assistant messages call tools",
    ),
    (
        b'{"q": "x", "chat": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "loss_weight": 0.5}]}\n',
        "bad_messages",
        "chat[1]: 'loss_weight' is 0.5; only 0 (not trained) and 1 (trained) are supported",
    ),
    (b'{"q": "x", "chat": [{"from": "gpt", "value": "b", "train": "yes"}]}\n', "bad_messages",
     "chat[0]: 'train' is str, expected true or false"),
    (b'{"q": "x", "chat": [{"from": "gpt", "value": "b", "train": true, "weight": 0}]}\n', "bad_messages",
     "chat[0]: 'train' and 'weight' disagree on whether the message is trained"),
    (b'{"q": "x", "chat": [{"from": "gpt", "value": "b", "thinking": ["x"]}]}\n', "bad_messages",
     "chat[0]: 'thinking' is list, expected a string"),
    (b'{"q": "x", "chat": [{"role": "tool", "content": "r", "tool_call_id": 7}]}\n', "bad_messages",
     "chat[0]: 'tool_call_id' is int, expected a string"),
    (
        b'{"q": "x", "chat": [{"from": "function_call", "value": "search(q)"}]}\n',
        "bad_messages",
        "role 'function_call' is mapped to tool_call, so chat[0].value must be a JSON call {name, arguments}; "
        "it is not JSON: 'search(q)'",
    ),
    (
        b'{"q": "x", "chat": [{"from": "function_call", "value": "{\\"arguments\\": {}}"}]}\n',
        "bad_messages",
        "role 'function_call' is mapped to tool_call, so chat[0].value must be a JSON call {name, arguments}; "
        "chat[0].value: the function name is missing, expected a non-empty string",
    ),
    (b'{"q": "x", "chat": [{"from": 1, "value": "v"}]}\n', "bad_messages", "chat[0]: 'from' is int, expected a string"),
    (b'["q"]\n', "not_an_object", "expected a JSON object, got list"),
]
FIELDS = {"q": TEXT_Q, "chat": FieldSpec("chat", "messages")}


@pytest.mark.parametrize(("bad", "reason", "message"), BAD_LINES, ids=[m for _, _, m in BAD_LINES])
def test_bad_record_raises_with_file_line_and_fix(tmp_path, bad, reason, message):
    with pytest.raises(InputError) as err:
        read_bad(tmp_path, "d.jsonl", GOOD_LINE + bad + GOOD_LINE, FIELDS, on_error="raise")
    assert (err.value.path, err.value.location, err.value.reason_message) == (
        str(tmp_path / "d.jsonl"),
        "line 2",
        message,
    )
    assert str(err.value).startswith(f"{tmp_path / 'd.jsonl'}, line 2: {message}\n  fix: ")
    if reason == "bad_messages":
        assert err.value.fix == MESSAGES_FIX
    elif reason == "non_text_content":
        assert err.value.fix == (
            "keep text-only records (images, audio and other parts cannot be trained on here), "
            "or set `on_error: skip` to drop such records"
        )
    elif reason != "not_an_object":
        name = "q" if "'q'" in message else "chat"
        assert err.value.fix == f"set `fields.{name}.path:` to the field that holds `{name}`, {SKIP_FIX}"


@pytest.mark.parametrize(("bad", "reason", "message"), BAD_LINES, ids=[m for _, _, m in BAD_LINES])
def test_bad_record_skipped_counted_and_logged(tmp_path, caplog, bad, reason, message):
    with caplog.at_level(logging.WARNING, logger="dataprep.read"):
        got, drops = read_bad(tmp_path, "d.json", b"[" + b",".join([GOOD_LINE, bad, GOOD_LINE]) + b"]", FIELDS,
                              on_error="skip")
    assert [(r["q"], r["line"]) for r in got] == [("ok", 0), ("ok", 2)]
    assert drops == {reason: 1}
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'd.json'}, record 1: {message}; skipped (on_error: skip)"
    ]


TABULAR_CASES = [
    # (file name, content, options, location, reason, message, fix piece)
    (
        "d.tsv",
        b"sentence\tlabel\nok\t1\ntab\tin text\t0\nok\t0\n",
        {},
        "line 3",
        "bad_row",
        "row has 3 columns, expected 2 (sentence, label)",
        "a tsv value cannot hold a tab or a line break",
    ),
    (
        "d.txt",
        b"ok\t1\nno label\nok\t0\n",
        {"format": "tsv", "header": False, "columns": ["sentence", "label"]},
        "line 2",
        "bad_row",
        "row has 1 column, expected 2 (sentence, label)",
        "one value per column",
    ),
    (
        "d.tsv",
        b"sentence\tlabel\nok\t1\nstray\rreturn\t0\nok\t0\n",
        {},
        "line 3",
        "bad_row",
        "malformed tsv row: a carriage return (\\r) inside an unquoted value",
        "one value per column",
    ),
    (
        "d.csv",
        b'sentence,label\nok,1\n"bad"quote,0\nok,0\n',
        {},
        "line 3",
        "bad_row",
        "malformed csv row: ',' expected after '\"'",
        "quoting values that hold commas",
    ),
    (
        "d.tsv",
        b"sentence\tlabel\nok\t1\ncaf\xe9\t0\nok\t0\n",
        {},
        "line 3",
        "invalid_utf8",
        "invalid UTF-8 at byte 3 of the line (invalid continuation byte: b'\\xe9')",
        "`encoding: ",
    ),
    (
        "d.csv",
        b'sentence,label\nok,1\n"two\nlin\xffes",0\nok,0\n',
        {},
        "line 4",
        "invalid_utf8",
        "invalid UTF-8 at byte 3 of the line (invalid start byte: b'\\xff')",
        "`encoding: ",
    ),
]


@pytest.mark.parametrize(("name", "content", "options", "location", "reason", "message", "fix"), TABULAR_CASES)
def test_tabular_bad_rows_raise_and_skip(tmp_path, caplog, name, content, options, location, reason, message, fix):
    fields = {"text": FieldSpec("sentence"), "label": FieldSpec("label", "any")}
    with pytest.raises(InputError) as err:
        read_bad(tmp_path, name, content, fields, on_error="raise", **options)
    assert (err.value.path, err.value.location, err.value.reason_message) == (str(tmp_path / name), location, message)
    assert fix in err.value.fix
    with caplog.at_level(logging.WARNING, logger="dataprep.read"):
        got, drops = read_bad(tmp_path, name, content, fields, on_error="skip", **options)
    assert [(r["text"], r["label"]) for r in got] == [("ok", "1"), ("ok", "0")]
    assert drops == {reason: 1}
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / name}, {location}: {message}; skipped (on_error: skip)"
    ]


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_tabular_missing_column(tmp_path, on_error):
    content = b"Label\tSMS\nham\thi\nspam\twin\n"
    fields = {"text": FieldSpec("text"), "label": FieldSpec("Label", "any"), "note": FieldSpec("note", required=False)}
    if on_error == "raise":
        with pytest.raises(InputError) as err:
            read_bad(tmp_path, "d.tsv", content, fields, on_error=on_error)
        assert (err.value.location, err.value.reason_message) == (
            "line 2",
            "missing field 'text' (columns present: Label, SMS)",
        )
    else:
        got, drops = read_bad(tmp_path, "d.tsv", content, fields, on_error=on_error)
        assert got == [] and drops == {"missing_field": 2}
    got, _ = read_bad(tmp_path, "d.tsv", content, {"text": FieldSpec("SMS"), "note": FieldSpec("note", required=False)},
                      on_error=on_error)
    assert [(r["text"], r["note"]) for r in got] == [("hi", ""), ("win", "")]


def test_bad_field_mappings_are_config_errors(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "d.jsonl").write_text('{"q": "x"}\n')
    txt, jsonl = resolve_one(tmp_path, "a.txt"), resolve_one(tmp_path, "d.jsonl")
    cases = [
        (jsonl, {}, "at least one output column"),
        (jsonl, {"q": FieldSpec("q", "number")}, "fields.q.kind must be one of text, any, json, messages"),
        (jsonl, {"q": FieldSpec("a..b")}, "fields.q.path: invalid path 'a..b'"),
        (jsonl, {"line": FieldSpec("q")}, "'line' is taken by a provenance column"),
        (txt, {"a": TEXT, "b": TEXT}, "a txt input holds plain text"),
        (txt, {"a": FieldSpec("x", "json")}, "a txt input holds plain text"),
    ]
    for file, fields, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            read_records(file, 0, fields=fields, batch_size=10, on_error="raise", drops=collections.Counter())
    assert read(txt, {"doc": FieldSpec("ignored")}) == [{"doc": "x", "source": 0, "line": 1}]


def test_normalize_messages_maps_sharegpt_roles_and_keeps_others():
    conversation = [
        {"from": "system", "value": "s"},
        {"from": "human", "value": "h"},
        {"from": "gpt", "value": "g"},
        {"from": "function_call", "value": '{"name": "f", "arguments": "{}"}'},
        {"from": "observation", "value": "o"},
        {"from": "tool", "value": "t"},
        {"from": "bot", "value": "b"},
        {"role": "assistant", "content": "a", "name": "kept", "extra": "dropped"},
        {"role": "human", "content": "openai-shaped: not mapped by the ShareGPT defaults"},
    ]
    assert normalize_messages(conversation, "conversations") == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "h"},
        {"role": "assistant", "content": "g"},
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "o"},
        {"role": "tool", "content": "t"},
        {"role": "bot", "content": "b"},
        {"role": "assistant", "content": "a", "name": "kept"},
        {"role": "human", "content": "openai-shaped: not mapped by the ShareGPT defaults"},
    ]
    # a recipe's roles override and extend the defaults, and apply to OpenAI-shaped messages too
    roles = {"bot": "assistant", "gpt": "user", "function_call": "assistant", "human": "user"}
    assert [m["role"] for m in normalize_messages(conversation, "conversations", roles)] == [
        "system", "user", "user", "assistant", "tool", "tool", "assistant", "assistant", "user",
    ]
    assert normalize_messages(conversation, "c", roles)[3] == {"role": "assistant", "content": '{"name": "f", "arguments": "{}"}'}
    assert normalize_messages([]) == []
    assert normalize_messages([{}]) == ("bad_messages", "messages[0]: missing 'role' (keys present: none)")


def test_normalize_messages_keeps_tool_calls_reasoning_names_and_train_flags():
    openai = [
        {"role": "system", "content": "sys", "name": None},
        {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}], "loss_weight": 0},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "add them",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}},
                {"name": "log", "arguments": {"x": 1}},
            ],
            "weight": 1.0,
        },
        {"role": "tool", "content": "4", "tool_call_id": "call_1", "name": "add"},
        {"role": "assistant", "thinking": "easy", "content": "4", "train": False, "tool_calls": []},
        {"role": "assistant", "reasoning": "r", "content": "", "tool_calls": None, "train": True, "loss_weight": 1},
    ]
    assert normalize_messages(openai) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "What is 2+2?", "train": False},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}, "id": "call_1"},
                {"type": "function", "function": {"name": "log", "arguments": {"x": 1}}},
            ],
            "reasoning_content": "add them",
            "train": True,
        },
        {"role": "tool", "content": "4", "name": "add", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "4", "reasoning_content": "easy", "train": False},
        {"role": "assistant", "content": "", "reasoning_content": "r", "train": True},
    ]
    # a tool_call value may be an object, or a JSON list of parallel calls
    calls = [
        {"from": "function_call", "value": {"name": "a", "arguments": {}}},
        {"from": "function_call", "value": '[{"name": "a", "arguments": {}}, {"name": "b", "arguments": "{}"}]'},
    ]
    assert normalize_messages(calls) == [
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "a", "arguments": {}}}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"type": "function", "function": {"name": "a", "arguments": {}}},
                {"type": "function", "function": {"name": "b", "arguments": "{}"}},
            ],
        },
    ]
    # a ShareGPT turn may carry OpenAI tool_calls; a message with only tool_calls still needs a role
    assert normalize_messages([{"from": "gpt", "tool_calls": [{"name": "f", "arguments": {}}]}]) == [
        {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}]}
    ]
    assert normalize_messages([{"tool_calls": []}]) == ("bad_messages", "messages[0]: missing 'role'")
    assert normalize_messages([{"from": "function_call", "value": "[1]"}]) == (
        "bad_messages",
        "role 'function_call' is mapped to tool_call, so messages[0].value must be a JSON call {name, arguments}; it holds int",
    )
    assert normalize_messages([{"role": "assistant", "content": [{"type": "input_audio", "input_audio": {}}]}]) == (
        "non_text_content",
        "messages[0].content[0]: a part of type 'input_audio'; only text content is read",
    )


# --- real data -------------------------------------------------------------------------


def real(relative: str, fields: dict, **options) -> list[dict]:
    drops: collections.Counter = collections.Counter()
    got = read(resolve_one(PAIRS, relative, **options), fields, batch_size=128, drops=drops)
    assert not drops
    return got


ALPACA = {
    "instruction": FieldSpec("instruction"),
    "input": FieldSpec("input", required=False),  # empty in most records; absent would read as "" too
    "output": FieldSpec("output"),
}


@pytest.mark.parametrize(
    ("name", "count", "with_input"), [("alpaca_en_demo.json", 999, 412), ("alpaca_data_cleaned_1000.json", 1000, 409)]
)
def test_real_alpaca(name, count, with_input):
    relative = f"instruction/{name}"
    got = real(relative, ALPACA)
    source = json.loads((PAIRS / relative).read_text(encoding="utf-8"))
    assert len(got) == count and sum(1 for r in got if r["input"]) == with_input
    assert [(r["instruction"], r["input"], r["output"]) for r in got] == [
        (r["instruction"], r.get("input") or "", r["output"]) for r in source
    ]
    assert [r["line"] for r in got] == list(range(count))
    if name == "alpaca_en_demo.json":
        assert got[5]["instruction"] == "Given the parameters of a triangle, find out its perimeter."
        assert got[5]["input"] == "Side 1 = 4\nSide 2 = 6\nSide 3 = 8"
        assert got[0]["input"] == "" and got[0]["instruction"] == "Describe a process of making crepes."


TEXT_DIALOGUE = FieldSpec("dialogue")


def test_real_dialogsum():
    dev = real("summarization/dialogsum_dev.jsonl", {"dialogue": TEXT_DIALOGUE, "summary": FieldSpec("summary")})
    assert len(dev) == 500 and [r["line"] for r in dev] == list(range(1, 501))
    first = json.loads((PAIRS / "summarization/dialogsum_dev.jsonl").open(encoding="utf-8").readline())
    assert (dev[0]["dialogue"], dev[0]["summary"]) == (first["dialogue"], first["summary"])
    assert dev[0]["dialogue"].startswith("#Person1#: Hello, how are you doing today?\n#Person2#: ")
    assert min(len(r["dialogue"]) for r in dev) == 211 and max(len(r["dialogue"]) for r in dev) == 2563
    test = real("summarization/dialogsum_test.jsonl", {"dialogue": TEXT_DIALOGUE, "summary": FieldSpec("summary1")})
    assert len(test) == 500 and max(len(r["dialogue"]) for r in test) == 4430
    with pytest.raises(InputError) as err:  # the test split has summary1..3, not summary
        read(resolve_one(PAIRS, "summarization/dialogsum_test.jsonl"), {"summary": FieldSpec("summary")})
    assert err.value.location == "line 1"
    assert err.value.reason_message == (
        "missing field 'summary' (keys present: fname, dialogue, summary1, topic1, summary2, topic2, summary3, topic3)"
    )


def test_real_sharegpt_conversations():
    fields = {"id": FieldSpec("id"), "messages": FieldSpec("conversations", "messages")}
    got = real("chat/sharegpt_dummy_conversation.json", fields)
    assert len(got) == 500
    assert got[1] == {
        "id": "identity_1",
        "messages": json.dumps(
            [
                {"role": "user", "content": "Who are you?"},
                {
                    "role": "assistant",
                    "content": "My name is Vicuna, and I'm a language model developed by Large Model Systems "
                    "Organization (LMSYS).",
                },
            ]
        ),
        "source": 0,
        "line": 1,
    }
    conversations = [json.loads(r["messages"]) for r in got]
    assert collections.Counter(len(c) for c in conversations) == {2: 167, 4: 166, 6: 167}
    assert all([m["role"] for m in c] == ["user", "assistant"] * (len(c) // 2) for c in conversations)


def test_real_kto_messages_and_bool_label():
    fields = {"messages": FieldSpec("messages", "messages"), "label": FieldSpec("label", "any")}
    got = real("chat/kto_en_demo.json", fields)
    assert len(got) == 300
    assert collections.Counter(r["label"] for r in got) == {"true": 150, "false": 150}
    lengths = [len(json.loads(r["messages"])) for r in got]
    assert min(lengths) == 2 and max(lengths) == 12 and lengths.count(2) == 223
    source = json.loads((PAIRS / "chat/kto_en_demo.json").read_text(encoding="utf-8"))
    assert json.loads(got[5]["messages"]) == source[5]["messages"]  # already role/content: unchanged


def test_real_glaive_tool_calls():
    fields = {"messages": FieldSpec("conversations", "messages"), "tools": FieldSpec("tools", "json")}
    got = real("chat/glaive_toolcall_en_demo.json", fields)
    assert len(got) == 300
    messages = [json.loads(r["messages"]) for r in got]
    roles = collections.Counter(m["role"] for c in messages for m in c)
    assert roles == {"user": 746, "assistant": 746 + 211, "tool": 211}  # function_call -> assistant, observation -> tool
    assert sum(1 for c in messages for m in c if "tool_calls" in m) == 211
    source = json.loads((PAIRS / "chat/glaive_toolcall_en_demo.json").read_text(encoding="utf-8"))
    assert source[0]["conversations"][3] == {
        "from": "function_call",
        "value": '{"name": "search_recipes", "arguments": {"ingredients": ["chicken", "bell peppers", "rice"]}}',
    }
    first = messages[0]
    assert first[3] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "search_recipes", "arguments": {"ingredients": ["chicken", "bell peppers", "rice"]}},
            }
        ],
    }
    assert first[4] == {"role": "tool", "content": source[0]["conversations"][4]["value"]}
    assert first[4]["content"].startswith('{"recipes": [{"name": "Chicken and Bell Pepper Stir Fry"')
    # every call keeps its name and arguments exactly; every other turn keeps its text
    for conversation, record in zip(messages, source):
        for message, turn in zip(conversation, record["conversations"], strict=True):
            if turn["from"] == "function_call":
                assert [c["function"] for c in message["tool_calls"]] == [json.loads(turn["value"])]
            else:
                assert message == {"role": {"human": "user", "gpt": "assistant", "observation": "tool"}[turn["from"]],
                                   "content": turn["value"]}
    assert [json.loads(r["tools"]) for r in got] == [r["tools"] for r in source]  # a JSON string stays a string
    # a recipe's roles: keeps the calls as text under a role of its choosing
    kept = real("chat/glaive_toolcall_en_demo.json", fields, roles={"function_call": "assistant"})
    assert json.loads(kept[0]["messages"])[3] == {"role": "assistant", "content": source[0]["conversations"][3]["value"]}


def test_real_sms_spam_tsv():
    got = real("classification/sms_spam_collection.tsv", {"text": FieldSpec("SMS"), "label": FieldSpec("Label", "any")})
    assert len(got) == 5574
    assert collections.Counter(r["label"] for r in got) == {"ham": 4827, "spam": 747}
    lines = (PAIRS / "classification/sms_spam_collection.tsv").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "Label\tSMS" and lines[-1] == ""
    assert [(r["label"], r["text"], r["line"]) for r in got] == [
        (*line.split("\t"), number) for number, line in enumerate(lines[1:-1], 2)
    ]
    assert got[0]["text"].startswith("Go until jurong point, crazy..")
    assert sum("£" in r["text"] for r in got) > 0 and sum('"' in r["text"] for r in got) > 0


@pytest.mark.parametrize("name", ["amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt"])
def test_real_sentiment_headerless_tsv(name):
    fields = {"text": FieldSpec("sentence"), "label": FieldSpec("label", "any")}
    got = real(f"classification/sentiment_labelled_sentences/{name}", fields, format="tsv", header=False,
               columns=["sentence", "label"])
    assert len(got) == 1000
    assert collections.Counter(r["label"] for r in got) == {"0": 500, "1": 500}
    lines = (SENTIMENT / name).read_text(encoding="utf-8").split("\n")
    assert [(r["text"], r["label"], r["line"]) for r in got] == [
        (*line.split("\t"), number) for number, line in enumerate(lines[:-1], 1)
    ]
