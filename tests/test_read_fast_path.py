"""The JSONL reader's block fast path (Arrow's JSON reader on whole blocks of lines) against its
line-by-line path (Python's json): the same records, line numbers, batches, reports and errors on
damaged files, whichever path reads a block; and proof that the comparison fails when the fast
path is wrong."""

from __future__ import annotations

import collections
import json
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.errors import InputError
from dataprep.read import FieldSpec, InputSpec, read_batches, read_records, resolve_inputs
from dataprep.read import _common, _json
from dataprep.read._common import BadRecords
from dataprep.read._fields import RowExtractor, compile_fields
from dataprep.text import normalize
from dataprep.text.filters import content_hashes
from dataprep.text.normalize import NormalizeSpec

GOOD = [b'{"text": "plain"}', b'{"id": 7, "text": "caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \\n\\t\\"q\\" \\\\ \\/"}',
        b'  {"text": "spaces around"}  ', b'{"text": "crlf"}\r',
        b'{"meta": {"x": [1, -2.5e3, null, true, {}]}, "n": NaN, "m": -Infinity, "text": "other fields"}',
        b'{"te\\u0078t": "an escaped key"}', b'{"text": ""}']
BLANK = [b"", b"   ", b" \t\r"]
# Lines the fast path must leave to Python, and what Python's json makes of each (reasons reported).
UNCLEAN = {
    "trailing comma": (b'{"text": "a",}', ["malformed_json"]),
    "number": (b'{"text": 5}', ["non_string_field"]),
    "null": (b'{"text": null}', ["non_string_field"]),
    "missing": (b'{"other": "a"}', ["missing_field"]),
    "empty object": (b"{}", ["missing_field"]),
    "array": (b"[1, 2]", ["not_an_object"]),
    "string": (b'"str"', ["not_an_object"]),
    "duplicate key": (b'{"text": "first", "text": "last"}', []),  # the last one wins
    "Inf": (b'{"text": "a", "s": Inf}', ["malformed_json"]),
    "-Inf": (b'{"text": "a", "s": [-Inf]}', ["malformed_json"]),
    "-NaN": (b'{"text": "a", "s": -NaN}', ["malformed_json"]),
    "invalid UTF-8": (b'{"text": "a\xff"}', ["invalid_utf8"]),
    "invalid UTF-8 elsewhere": (b'{"text": "a", "s": "\xc3"}', ["invalid_utf8"]),
    "two objects": (b'{"text": "a"} {"text": "b"}', ["malformed_json"]),
    "two objects, no space": (b'{"text": "a"}{"text": "b"}', ["malformed_json"]),
    "CR between objects": (b'{"text": "a"}\r{"text": "b"}', ["malformed_json"]),
    "object over two lines": (b'{"text":\n"b"}', ["malformed_json", "malformed_json"]),
    "byte-order mark after line 1": (b'\xef\xbb\xbf{"text": "bom"}', ["malformed_json"]),
    "nested too deeply": (b'{"text": "a", "n": ' + b"[" * 1200 + b"]" * 1200 + b"}", ["malformed_json"]),
    "integer too long for int()": (b'{"text": "a", "n": ' + b"1" * 5000 + b"}", ["malformed_json"]),
    "number too big for Arrow": (b'{"text": "a", "n": 1e999}', []),  # Python reads inf
    "form feed line": (b"\x0c", []),  # whitespace to Python: not a record, not reported
    "garbage after": (b'{"text": "a"} x', ["malformed_json"]),
    "comment": (b"// comment", ["malformed_json"]),
    "raw tab in a string": (b'{"text": "tab\tinside"}', ["malformed_json"]),
    "lone surrogate": (b'{"text": "b\\ud800c"}', ["invalid_utf8"]),  # Python's json reads it; no UTF-8 holds it
}


def resolve(path):
    return resolve_inputs([InputSpec(str(path))], base_dir=path.parent)[0]


def read_all(path, *, on_error: str, batch_size: int, fast: bool = True) -> dict:
    """Everything a read shows: each batch's rows, the drops, the reports, the error that stopped it."""
    drops: collections.Counter = collections.Counter()
    sink: list | None = [] if on_error == "skip" else None
    batches, error = [], None
    original = _json.parse_block
    if not fast:
        _json.parse_block = lambda *args, **kwargs: None
    try:
        for batch in read_batches(resolve(path), 0, batch_size=batch_size, on_error=on_error, drops=drops, sink=sink):
            batches.append(list(zip(batch.column("text").to_pylist(), batch.column("line").to_pylist())))
    except InputError as exc:
        error = (exc.location, exc.reason_message, exc.fix)
    except Exception as exc:  # noqa: BLE001 (an escaped lone surrogate fails the same way both ways)
        error = (type(exc).__name__, str(exc))
    finally:
        _json.parse_block = original
    return {"batches": batches, "drops": drops, "reports": sink, "error": error}


def differences(path, *, batch_size: int = 3) -> list[str]:
    """Where the fast path's read differs from the line-by-line read, in both ``on_error`` modes."""
    found = []
    for on_error in ("skip", "raise"):
        fast, slow = (read_all(path, on_error=on_error, batch_size=batch_size, fast=f) for f in (True, False))
        found += [f"{on_error}: {key}" for key in fast if fast[key] != slow[key]]
    return found


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few lines, so that one file has clean and unclean blocks and batches across them."""
    monkeypatch.setattr(_common, "BLOCK_LINES", 120)


def damaged_file(tmp_path, cases: list[bytes], name: str = "d.jsonl"):
    lines = [b'\xef\xbb\xbf{"text": "bom on line 1"}']
    for i, case in enumerate(cases):
        lines += [GOOD[i % len(GOOD)], BLANK[i % len(BLANK)], case, b'{"text": "after %d"}' % i]
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines))  # the last line has no line break
    return path


def test_damaged_file_reads_the_same_both_ways(tmp_path, small_blocks):
    path = damaged_file(tmp_path, [line for line, _ in UNCLEAN.values()])
    assert differences(path) == []
    skipped = read_all(path, on_error="skip", batch_size=3)
    assert skipped["drops"] == collections.Counter(r for _, reasons in UNCLEAN.values() for r in reasons)
    line = 4 * list(UNCLEAN).index("duplicate key") + 4  # damaged_file: 4 lines a case after line 1
    assert ("last", line) in [row for batch in skipped["batches"] for row in batch]  # Python's json: the last key wins
    assert all(len(batch) == 3 for batch in skipped["batches"][:-1])


def test_the_fast_path_reads_clean_blocks(tmp_path, small_blocks, monkeypatch):
    path = tmp_path / "clean.jsonl"
    path.write_bytes(b"\n".join(GOOD * 20 + BLANK) + b"\n")
    used = []
    original = _json.parse_block
    monkeypatch.setattr(_json, "parse_block", lambda *a, **k: used.append(r := original(*a, **k)) or r)
    fast = read_all(path, on_error="raise", batch_size=5)
    assert used and all(r is not None for r in used)
    monkeypatch.setattr(_json, "parse_block", original)
    assert fast == read_all(path, on_error="raise", batch_size=5, fast=False)
    assert fast["batches"][0][:2] == [("plain", 1), (json.loads(GOOD[1])["text"], 2)]


def text_extractor(tmp_path):
    fields = compile_fields({"text": FieldSpec("text")}, lambda name: name)
    return RowExtractor(fields, BadRecords(resolve(tmp_path / "x.jsonl"), "raise", collections.Counter()))


@pytest.mark.parametrize("name", list(UNCLEAN))
def test_an_unclean_line_sends_its_block_line_by_line(tmp_path, name):
    (tmp_path / "x.jsonl").write_bytes(b"")
    block = GOOD[0] + b"\n" + UNCLEAN[name][0] + b"\n" + GOOD[2] + b"\n"
    parsed = _json.parse_block(block, ("text",), first=2)
    assert parsed is None or text_extractor(tmp_path).fast_columns(parsed[0]) is None


def test_a_clean_block_gives_pythons_values_and_lines():
    block = b"\n".join([*BLANK, *GOOD, b""])
    [values], at, breaks = _json.parse_block(block, ("text",), first=1)
    lines = block.split(b"\n")
    assert breaks == block.count(b"\n")
    assert values.to_pylist() == [json.loads(lines[i])["text"] for i in at.tolist()]
    assert at.tolist() == [i for i, line in enumerate(lines) if line.strip(b" \t\r")]


@pytest.mark.parametrize(("broken", "case"), [
    ("_nonfinite", "Inf"), ("_long_digits", "integer too long for int()"), ("_deep", "nested too deeply"),
    ("_utf8", "invalid UTF-8"),
])
def test_the_comparison_fails_when_a_check_is_missing(tmp_path, small_blocks, monkeypatch, broken, case):
    path = damaged_file(tmp_path, [UNCLEAN[case][0]])
    assert differences(path) == []
    monkeypatch.setattr(_json, broken, lambda *args: broken == "_utf8")  # the check says "fine"
    assert "skip: batches" in differences(path)


def test_the_comparison_fails_when_lines_are_numbered_wrong(tmp_path, small_blocks, monkeypatch):
    path = damaged_file(tmp_path, [*GOOD, UNCLEAN["number"][0]])
    original = _json.parse_block
    monkeypatch.setattr(_json, "parse_block", lambda *a, **k: (r := original(*a, **k)) and (r[0], r[1] + 1, r[2]))
    assert "skip: batches" in differences(path)


def test_a_lone_surrogate_is_a_bad_record_with_its_line(tmp_path, monkeypatch):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "b\\udfffc"}\n{"text": "\\ud83d\\ude00"}\n')
    skipped = read_all(path, on_error="skip", batch_size=4)
    assert skipped["batches"] == [[("a", 1), ("\U0001F600", 3)]] and skipped["error"] is None
    assert skipped["drops"] == {"invalid_utf8": 1} and [r[1] for r in skipped["reports"]] == ["line 2"]
    assert "\\udfff" in skipped["reports"][0][3]
    assert read_all(path, on_error="raise", batch_size=4)["error"][0] == "line 2"
    monkeypatch.setattr(_json, "lone_surrogate", lambda text: None)  # the check gone: not a skipped record
    broken = read_all(path, on_error="skip", batch_size=4)
    assert broken["error"] is not None and broken["drops"] == {}


def test_a_lone_surrogate_in_another_field_names_its_record(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"p": "a", "r": "b"}\n{"p": "a", "r": "x\\ud800"}\n')
    fields = {"prompt": FieldSpec("p"), "response": FieldSpec("r")}
    with pytest.raises(InputError) as err:
        list(read_records(resolve(path), 0, fields=fields, batch_size=4, on_error="skip", drops=collections.Counter()))
    assert (err.value.location, err.value.reason_message) == ("line 2", "a field holds \\ud800, half of a surrogate pair: "
                                                              "it has no UTF-8 form")


def test_a_cut_container_stops_both_ways_after_the_same_records(tmp_path, small_blocks):
    body = b"".join(b'{"text": "record %d"}\n' % i for i in range(400)) + UNCLEAN["number"][0] + b"\n"
    data = zstandard.ZstdCompressor().compress(body)
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(data[: len(data) * 3 // 4])
    assert differences(path, batch_size=7) == []
    assert read_all(path, on_error="skip", batch_size=7)["error"][1].startswith("truncated")


FRAGMENTS = ['{"text": "a"}', '{"text": "é"}', "{", "}", "[", "]", '"', ",", ":", " ", "\t", "\r", "\\", '"text"',
             "1", "-", "Inf", "NaN", "null", "true", "\\u00e9", "\\ud800", "\ufeff", "\x00", "\xff", "\n"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join), max_size=12))
def test_random_lines_read_the_same_both_ways(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fuzz") / "f.jsonl"
    raw = [line.encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff") for line in lines]
    path.write_bytes(b"\n".join(raw + [b'{"text": "end"}']))
    old = _common.BLOCK_LINES
    _common.BLOCK_LINES = 40
    try:
        assert differences(path) == []
    finally:
        _common.BLOCK_LINES = old


# --- normalization's quick checks (dataprep.text.normalize): a step skipped only where it changes nothing


def normalize_everything(texts, spec):
    """Every step on every string, no check first (what normalize_array did before its quick checks)."""
    out = pc.replace_substring_regex(texts, pattern=r"^\x{FEFF}", replacement="") if spec.strip_bom else texts
    if spec.newlines:
        out = pc.replace_substring(pc.replace_substring(out, pattern="\r\n", replacement="\n"), pattern="\r", replacement="\n")
    if spec.control_chars:
        out = pc.replace_substring_regex(out, pattern=normalize._CONTROL, replacement="")
    if spec.unicode != "none":  # Python's, or Arrow's where most strings change (as before; the two differ
        values = out.to_pylist()  # on a few code points, e.g. unassigned U+058B under NFKC)
        changed = sum(t is not None and not unicodedata.is_normalized(spec.unicode, t) for t in values)
        out = pc.utf8_normalize(out, form=spec.unicode) if changed * 4 > len(values) else pa.array(
            [None if t is None else unicodedata.normalize(spec.unicode, t) for t in values], texts.type)
    return pc.utf8_trim_whitespace(out) if spec.strip else out


TRICKY = ["plain ascii", "caf\u00e9", "e\u0301", "\u0300 alone", "\u00c0 \u00a0 \u00b5", "\ufb01 \uff11 \u2126",
          "a\r\nb\rc", "a\x00b\x1bc\td\ne\x7f", "\x85 next line", "\u0080\u009f\u00a0", "\ufeffmarked", "\u1100\u1161",
          "\ud55c\uad6d\uc5b4", "\u2019curly\u201d", "", None, "  spaced \n"]


def spec_cases():
    return [NormalizeSpec(), NormalizeSpec(unicode="NFKC"), NormalizeSpec(unicode="NFD"), NormalizeSpec(unicode="NFKD"),
            NormalizeSpec(newlines=False)]


def normalize_differences(texts) -> list[str]:
    found = []
    for kind in (pa.string(), pa.large_string()):
        whole = pa.array(texts, kind)
        for array in (whole, whole.slice(1, max(len(texts) - 2, 0))):  # a slice's neighbours must not count
            for spec in spec_cases():
                if not normalize.normalize_array(array, spec).equals(normalize_everything(array, spec)):
                    found.append(f"{kind} {spec.unicode} newlines={spec.newlines} slice={array is not whole}")
    return found



def test_normalize_skips_only_what_changes_nothing():
    assert normalize_differences(TRICKY) == []
    for text in TRICKY:  # alone, and between texts that need nothing
        assert normalize_differences(["ascii", text, "more ascii"]) == [], text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.none(), max_size=8))
def test_normalize_random_texts_as_every_step_would(texts):
    assert normalize_differences(texts) == []


@pytest.mark.parametrize(("broken", "value"), [("_may_have_control", lambda texts: False),
                                               ("_FIRST_CHANGED", {"NFC": 0xE0, "NFD": 0xE0, "NFKC": 0xE0, "NFKD": 0xE0}),
                                               ("_NFC_UNSAFE", [np.zeros(0x10000, dtype=bool)])])
def test_normalize_comparison_fails_when_a_check_is_wrong(monkeypatch, broken, value):
    monkeypatch.setattr(normalize, broken, value)
    assert normalize_differences(TRICKY) != []


# --- content hashes from an Arrow array's buffer (dataprep.text.filters.content_hashes)


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_content_hashes_of_an_array_are_those_of_its_strings(kind):
    texts = ["", "a", "caf\u00e9", "\ud55c\uad6d\uc5b4" * 500, "x" * 5000, "\x00"]
    whole = pa.array(["before", *texts, "after"], kind)
    expected = content_hashes(texts)
    assert content_hashes(whole.slice(1, len(texts))) == expected
    assert content_hashes(pa.concat_arrays([whole.slice(1, 3), whole.slice(4, len(texts) - 3)])) == expected
    with pytest.raises(AttributeError):  # a null is not a text, as ever
        content_hashes(pa.array(["a", None], kind))


def test_a_text_of_characters_nfc_keeps_is_nfc():
    """The table against Python's own quick check: every character it lets through, side by side, and
    after and before each kind of starter (Latin, a Hangul leading consonant and syllable, a kana, a CJK ideograph)."""
    unsafe = normalize._nfc_unsafe()
    seconds = {int(parts[1], 16) for cp in range(0x110000)  # pairs that compose, from every plane
               if len(parts := unicodedata.decomposition(chr(cp)).split()) == 2 and not parts[0].startswith("<")}
    assert all(unsafe[cp] for cp in seconds if cp < 0x10000)
    assert not unsafe[:0x300].any()  # the rows _rows_nfc_may_change never looks at
    safe = "".join(chr(cp) for cp in np.flatnonzero(~unsafe).tolist() if not 0xD800 <= cp < 0xE000)
    for starter in ("", "a", "\u1100", "\uac00", "\u304b", "\u4e00"):
        assert unicodedata.is_normalized("NFC", starter.join(safe) + starter)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0x300, 0xFFFF), max_size=6))
def test_nfc_changes_only_rows_with_a_character_it_may_change(codes):
    text = "".join(chr(c) for c in codes if not 0xD800 <= c < 0xE000)
    if not unicodedata.is_normalized("NFC", text):
        assert len(normalize._rows_nfc_may_change(pa.array(["plain", text], pa.large_string()))) == 1
    assert normalize_differences(["ascii", text]) == []


@pytest.mark.parametrize("form", ["NFC", "NFKC"])
def test_a_documents_normalization_does_not_depend_on_its_batch(form):
    """U+0558 is unassigned in Python 3.11's Unicode (14.0) and assigned in Arrow's utf8proc, whose NFKC
    maps it: the same document, in a batch that mostly needs normalizing and in one that mostly does
    not, is normalized the same (Arrow's bulk pass for the first once made it differ)."""
    doc = "ﬁ \u0558 A\u030a"  # a ligature (NFKC), the code point the versions disagree on, a composing pair
    mostly = pa.array([doc] + ["A\u030a"] * 9)  # 10 of 10 change
    rarely = pa.array([doc] + ["plain"] * 9)  # 1 of 10 changes
    spec = NormalizeSpec(unicode=form)
    a, b = normalize.normalize_array(mostly, spec)[0].as_py(), normalize.normalize_array(rarely, spec)[0].as_py()
    assert a == b
    if form == "NFKC":
        assert a == unicodedata.normalize("NFKC", doc)


# --- several fields (fine-tuning): required text, optional text, optional json and any beside them

PAIR_FIELDS = {"prompt": FieldSpec("prompt"), "response": FieldSpec("response"),
               "input": FieldSpec("input", required=False), "history": FieldSpec("history", kind="json", required=False),
               "system": FieldSpec("system", kind="any", required=False)}
PAIRS = [b'{"prompt": "p", "response": "r"}', b'{"response": "r2", "prompt": "p\\u00e9", "id": 3}',
         b'{"prompt": "p", "response": "r", "input": "in"}', b'{"prompt": "p", "response": "r", "input": null}',
         b'{"prompt": "p", "response": "r", "system": null, "history": null}']
PAIRS_UNCLEAN = {  # the block goes line by line; Python's json and row() decide
    "history present": b'{"prompt": "p", "response": "r", "history": [["a", "b"]]}',
    "history as a string": b'{"prompt": "p", "response": "r", "history": "[[\\"a\\", \\"b\\"]]"}',
    "system present": b'{"prompt": "p", "response": "r", "system": "be brief"}',
    "system a number": b'{"prompt": "p", "response": "r", "system": 5}',
    "response missing": b'{"prompt": "p"}',
    "response null": b'{"prompt": "p", "response": null}',
    "prompt a number": b'{"prompt": 1, "response": "r"}',
    "input a list": b'{"prompt": "p", "response": "r", "input": []}',
}


def read_pairs(path, *, fast: bool, on_error: str) -> dict:
    drops: collections.Counter = collections.Counter()
    rows, error, used = [], None, []
    original = _json.parse_block
    _json.parse_block = (lambda *a, **k: used.append(r := original(*a, **k)) or r) if fast else (lambda *a, **k: None)
    try:
        for batch in read_records(resolve(path), 0, fields=PAIR_FIELDS, batch_size=3, on_error=on_error, drops=drops):
            rows.append([tuple(row.values()) for row in batch.to_pylist()])
    except InputError as exc:
        error = (exc.location, exc.reason_message)
    finally:
        _json.parse_block = original
    return {"rows": rows, "drops": drops, "error": error, "fast blocks": sum(r is not None for r in used)}


def test_pair_records_read_the_same_both_ways(tmp_path, small_blocks):
    path = tmp_path / "pairs.jsonl"
    lines = [PAIRS[i % len(PAIRS)] for i in range(40)]
    for i, case in enumerate(PAIRS_UNCLEAN.values()):
        lines.insert(7 * i + 5, case)
    path.write_bytes(b"\n".join(lines) + b"\n")
    for on_error in ("skip", "raise"):
        fast, slow = read_pairs(path, fast=True, on_error=on_error), read_pairs(path, fast=False, on_error=on_error)
        assert {k: v for k, v in fast.items() if k != "fast blocks"} == {k: v for k, v in slow.items() if k != "fast blocks"}
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"\n".join(PAIRS * 10) + b"\n")
    fast = read_pairs(clean, fast=True, on_error="raise")
    assert fast["fast blocks"] > 0 and fast == {**read_pairs(clean, fast=False, on_error="raise"), "fast blocks": fast["fast blocks"]}
    assert fast["rows"][0][0][:5] == ("p", "r", "", "null", "")  # absent optional fields: their kinds' empty values


def test_pair_comparison_fails_when_a_present_json_field_is_taken_as_absent(tmp_path, small_blocks, monkeypatch):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\n".join(PAIRS + [PAIRS_UNCLEAN["history as a string"], PAIRS_UNCLEAN["system present"]] + PAIRS) + b"\n")
    original = RowExtractor.fast_columns
    monkeypatch.setattr(RowExtractor, "fast_columns", lambda self, columns: original(self, [
        pa.nulls(len(c), c.type) if f.kind != "text" else c for (f, _, _), c in zip(self.plan, columns)]))
    assert read_pairs(path, fast=True, on_error="raise")["rows"] != read_pairs(path, fast=False, on_error="raise")["rows"]
