"""`validate_inputs`: one definition of a bad record. `validate --recipe` runs run's own readers and
workers in a check-only mode, so on damaged inputs it reports exactly what `dataprep run` drops
(`on_error: skip`: the manifest's counts, per input and in all) or stops on (`on_error: raise`: the
same file, location, message and fix), for pretraining and fine-tuning recipes; `--as KIND`
runs the readers alone."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
import yaml
import zstandard

from dataprep.build import accounting
from dataprep.build.run import run
from dataprep.errors import ConfigError, InputError
from dataprep.read import DROP_REASONS
from dataprep.recipe import load_recipe
from dataprep.validate import validate_inputs

from .conftest import DATA, RECIPES

GPT2 = {"path": str(DATA / "tokenizers" / "gpt2"), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
PRETRAIN = {"task": "pretrain", "tokenizer": GPT2, "packing": {"mode": "wrap", "seq_len": 16, "remainder": "pad"},
            "split": {"validation": 0.0}}
PAIRS = {"task": "sft", "tokenizer": GPT2, "template": "prompt_completion", "max_length": 32, "overflow": "error",
         "split": {"validation": 0.0}}


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def found(report) -> list[tuple]:
    return [(f.kind, f.line) for f in report.findings]


def check(tmp_path: Path, recipe: dict):
    """``validate --recipe`` on ``recipe`` (written beside its inputs), checked against what
    ``run`` does with it: the report, and the InputError ``run`` stops with under ``on_error: raise``."""
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    before = sorted(tmp_path.rglob("*"))
    report = validate_inputs(recipe=load_recipe(path), max_errors=1000)
    assert sorted(tmp_path.rglob("*")) == before, "validate wrote something"
    stop = same_as_run(report, path)
    return report, stop


def where(f) -> tuple:
    return f.file, f.line, f.message, f.expected


def same_as_run(report, path: Path) -> InputError | None:
    """Assert ``report`` says what ``run`` does: the record (or file) it stops on under
    ``on_error: raise`` is a finding, with its file, location, message and fix; under
    ``on_error: skip`` its manifest counts the same records read, written and dropped, by
    reason, per input and in all, the damage being exactly the findings."""
    out = path.parent / "out"
    stop = None
    try:
        run(load_recipe(path, ["on_error=raise"]), out / "raise", workers=1, progress=False)
    except InputError as err:
        stop = err
    assert (stop is None) == report.ok, report.to_text()  # run stops exactly when validate finds damage
    if stop is not None:
        assert (stop.path, stop.location, stop.reason_message, stop.fix) in [where(f) for f in report.findings]
    skip = ["on_error=skip", "max_dropped_fraction=1", "allow_empty=true"]
    try:
        manifest = run(load_recipe(path, skip), out / "skip", workers=1, progress=False)
    except InputError as err:  # a file no run can read, or a record it stops on in every mode (unknown_label: error)
        first = next(f for f in report.findings if f.file == err.path and f.kind == report.findings[0].kind)
        assert (err.path, err.location, err.reason_message, err.fix) == where(first)
        return stop
    counts = manifest["counts"]
    assert report.stats["dropped"] == counts["dropped"]
    assert (report.stats["records"], report.stats["records_written"]) == (counts["records_read"], counts["records_written"])
    assert [(e["records_read"], e["documents"], e["dropped"]) for e in report.inputs] == [
        (i["records_read"], i["documents"], i["dropped"]) for i in manifest["inputs"]]
    damage = accounting.damage(counts["dropped"], accounting.chosen_reasons(load_recipe(path)))
    assert dict(report.counts) == dict(damage)
    return stop


# --- pretraining: every reader fault, each file beside a clean one ------------------------------

LINES = b"".join(b'{"text": "record %d"}\n' % i for i in range(300))
ZST = zstandard.ZstdCompressor().compress(LINES[:4000]) + zstandard.ZstdCompressor().compress(LINES[4000:])
PRETRAIN_FAULTS = [
    # (id, file name, bytes, input options, findings (kind, line), ...)
    ("invalid-utf8", "d.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n{"text": "also fine"}\n{"text": "\xff"}\n', {},
     [("invalid_utf8", "line 2"), ("invalid_utf8", "line 4")]),
    ("malformed-json", "d.jsonl", b'{"text": "fine"}\n{"text": "cut\n\n{text: 1}\n{"text": "also fine"}\n', {},
     [("malformed_json", "line 2"), ("malformed_json", "line 4")]),
    ("wrong-type", "d.jsonl", b'{"text": 5}\n{"text": "fine"}\n{"text": ["a"]}\n{"text": null}\n', {},
     [("non_string_field", "line 1"), ("non_string_field", "line 3"), ("non_string_field", "line 4")]),
    ("missing-field", "d.jsonl", b'{"body": "x"}\n{"text": "fine"}\n{}\n', {}, [("missing_field", "line 1"), ("missing_field", "line 3")]),
    ("not-an-object", "d.jsonl", b'{"text": "fine"}\n[1, 2]\n"text"\n', {}, [("not_an_object", "line 2"), ("not_an_object", "line 3")]),
    ("renamed-field", "d.jsonl", b'{"body": "fine"}\n{"text": "not here"}\n', {"text_field": "body"}, [("missing_field", "line 2")]),
    ("csv-bad-row", "d.csv", b'text,n\nfine,1\na,b,c\n"two\nlines",2\nx\n', {}, [("bad_row", "line 3"), ("bad_row", "line 6")]),
    ("csv-unclosed-quote", "d.csv", b'text,n\nfine,1\n"open,2\nnext,3\n\nlast,4\n', {}, [("unreadable_file", "line 3")]),
    ("gz-cut", "d.jsonl.gz", gzip.compress(LINES)[: len(gzip.compress(LINES)) // 2], {}, [("unreadable_file", None)]),
    ("zst-cut", "d.jsonl.zst", ZST[: len(ZST) - 30], {}, [("unreadable_file", None)]),
    ("txt-invalid-utf8", "d.txt", b"first line\nbad \xff byte\n\nlast line\n", {"txt_unit": "line"}, [("invalid_utf8", "line 2")]),
    ("json-array", "d.json", json.dumps([{"text": "fine"}, {"text": 1}, 7, {"txt": "x"}]).encode(), {},
     [("non_string_field", "record 1"), ("not_an_object", "record 2"), ("missing_field", "record 3")]),
    ("json-not-parsing", "d.json", b'[{"text": "fine"},\n{"text": }]', {}, [("unreadable_file", "line 2")]),
]


@pytest.mark.parametrize(("name", "data", "options", "expected"), [c[1:] for c in PRETRAIN_FAULTS], ids=[c[0] for c in PRETRAIN_FAULTS])
def test_pretraining_faults_are_what_run_drops_or_stops_on(tmp_path, name, data, options, expected):
    (tmp_path / name).write_bytes(data)
    write_jsonl(tmp_path / "clean.jsonl", [{"text": f"clean {i}"} for i in range(5)])
    report, stop = check(tmp_path, {**PRETRAIN, "inputs": [{"path": name, **options}, {"path": "clean.jsonl"}]})
    assert found(report) == expected
    assert where(report.findings[0]) == (stop.path, stop.location, stop.reason_message, stop.fix)
    assert {f.file for f in report.findings} == {str(tmp_path / name)}
    assert report.inputs[1]["records_read"] == 5 and not report.inputs[1]["dropped"]  # read on after a damaged file


def test_reader_findings_are_the_records_run_logs_as_skipped(tmp_path, caplog):
    """Every bad record run's reader skips (and logs, up to 10 a file) is a finding, with its message."""
    name, data, *_ = PRETRAIN_FAULTS[0][1:]
    (tmp_path / name).write_bytes(data + b'{"text": 1}\n[]\n{"text": "ok"\n')
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**PRETRAIN, "inputs": [{"path": name}], "on_error": "skip", "max_dropped_fraction": 1}))
    report = validate_inputs(recipe=load_recipe(path))
    with caplog.at_level(logging.WARNING, logger="dataprep.read"):
        run(load_recipe(path), tmp_path / "out", workers=1, progress=False)
    logged = [r.getMessage() for r in caplog.records if r.name == "dataprep.read"]
    assert logged == [f"{f.file}, {f.line}: {f.message}; skipped (on_error: skip)" for f in report.findings]
    assert len(logged) == 5


def test_chosen_drops_are_counted_as_run_counts_them_not_listed(tmp_path):
    """Filters, duplicates and documents with no token are the recipe's choice: run counts them
    and so does validate, with the tokenizer deciding what has no token (BERT drops these
    characters; no BOS/EOS frames the documents)."""
    write_jsonl(tmp_path / "t.jsonl", [{"text": "hello world"}, {"text": "\u0000\u0001"}, {"text": "\u200b\u200b\u200b"},
                                       {"text": "   "}, {"text": "hello world"}, {"text": "hi"}, {"text": 5}])
    bert = {"path": str(DATA / "tokenizers" / "bert-base-cased"), "pad_token": "[PAD]", "add_eos": False}
    recipe = {**PRETRAIN, "tokenizer": bert, "inputs": [{"path": "t.jsonl"}], "normalize": {"strip": False, "collapse_spaces": False},
              "filter": {"min_chars": 3, "dedup": "exact"}}
    report, _ = check(tmp_path, recipe)
    assert report.stats["dropped"] == {"duplicate": 1, "empty": 1, "no_tokens": 2, "non_string_field": 1, "too_short": 1}
    assert found(report) == [("non_string_field", "line 7")]
    assert report.stats["records_written"] == 1
    # the same texts framed with EOS (GPT-2) all have a token: none is dropped for having none
    (tmp_path / "framed").mkdir()
    framed, _ = check(tmp_path / "framed", {**recipe, "tokenizer": GPT2, "inputs": [{"path": str(tmp_path / "t.jsonl")}]})
    assert "no_tokens" not in framed.stats["dropped"] and framed.stats["records_written"] == 3


@pytest.mark.parametrize("objective", ["mlm", "span_corruption"])
def test_other_pretraining_objectives_drop_as_their_runs_do(tmp_path, objective):
    """MLM encodes documents unframed (its packer frames pieces): a text BERT encodes to nothing is
    no_tokens there; span corruption frames every document with EOS."""
    write_jsonl(tmp_path / "t.jsonl", [{"text": f"document number {i} is here"} for i in range(30)]
                + [{"text": "\u200b\u200b\u200b"}, {"text": 5}, {"text": "document number 3 is here"}, "[1]"])
    if objective == "mlm":
        extra = {"tokenizer": {"path": str(DATA / "tokenizers" / "bert-base-cased"), "pad_token": "[PAD]"},
                 "mlm": {"masking": "static"}, "packing": {"mode": "bfd", "seq_len": 32}}
    else:
        extra = {"span_corruption": {"noise_density": 0.15}, "packing": {"seq_len": 32}}
    report, _ = check(tmp_path, {**PRETRAIN, **extra, "objective": objective, "inputs": [{"path": "t.jsonl"}]})
    assert found(report) == [("non_string_field", "line 32"), ("not_an_object", "line 34")]
    assert report.stats["dropped"]["duplicate"] == 1
    assert report.stats["dropped"].get("no_tokens", 0) == (1 if objective == "mlm" else 0)


# --- fine-tuning: the worker's judgement too (render, tokenize, mask, fit) ----------------------------

PAIR_FAULTS = [
    # (id, recipe extras, records, findings)
    ("reader-and-template", {}, [
        {"prompt": "a", "completion": "b"}, {"completion": "b"}, {"prompt": "a", "completion": 5},
        {"prompt": "a", "completion": "  "}, [1], '{"prompt": "cut', {"prompt": None, "completion": "x"}],
     [("missing_field", "line 2"), ("non_string_field", "line 3"), ("empty_field", "line 4"), ("not_an_object", "line 5"),
      ("malformed_json", "line 6"), ("non_string_field", "line 7")]),
    ("overlong", {}, [{"prompt": "a", "completion": "b"}, {"prompt": "word " * 40, "completion": "b"}],
     [("too_long", "line 2")]),
    ("overlong-dropped", {"overflow": "drop"}, [{"prompt": "a", "completion": "b"}, {"prompt": "word " * 40, "completion": "b"}], []),
    ("overlong-response", {"overflow": "truncate_prompt"}, [{"prompt": "a", "completion": "b"}, {"prompt": "a", "completion": "word " * 40}],
     [("response_too_long", "line 2")]),
    ("special-token-text", {}, [{"prompt": "a <|endoftext|> b", "completion": "c"}, {"prompt": "a", "completion": "b"}],
     [("special_token_text", "line 1")]),
    ("special-token-text-kept", {"special_text": "keep"}, [{"prompt": "a <|endoftext|> b", "completion": "c"}], []),
    ("unknown-label", {"template": "classification", "classification": {"labels": ["ham", "spam"]}},
     [{"text": "hi", "label": "ham"}, {"text": "win", "label": "eggs"}, {"text": "yo", "label": "spam"}, {"text": "x", "label": "eggs"}],
     [("unknown_label", "line 2"), ("unknown_label", "line 4")]),
    ("unknown-label-dropped", {"template": "classification", "classification": {"labels": ["ham"], "unknown_label": "drop"}},
     [{"text": "hi", "label": "ham"}, {"text": "win", "label": "spam"}], []),
]


@pytest.mark.parametrize(("extras", "records", "expected"), [c[1:] for c in PAIR_FAULTS], ids=[c[0] for c in PAIR_FAULTS])
def test_fine_tuning_faults_are_what_run_drops_or_stops_on(tmp_path, extras, records, expected):
    write_jsonl(tmp_path / "pairs.jsonl", records)
    report, stop = check(tmp_path, {**PAIRS, **extras, "inputs": [{"path": "pairs.jsonl"}]})
    assert found(report) == expected
    if expected:
        assert where(report.findings[0]) == (stop.path, stop.location, stop.reason_message, stop.fix)


PAIR_FILE_FAULTS = [
    ("csv-unclosed-quote", "p.csv", b'prompt,completion\na,b\n"open,c\nd,e\n', [("unreadable_file", "line 3")]),
    ("csv-bad-row", "p.csv", b'prompt,completion\na,b\nc\nd,e,f\ng,h\n', [("bad_row", "line 3"), ("bad_row", "line 4")]),
    ("zst-cut", "p.jsonl.zst", zstandard.ZstdCompressor().compress(
        b"".join(b'{"prompt": "p%d", "completion": "c%d"}\n' % (i, i) for i in range(400)))[:700], [("unreadable_file", None)]),
]


@pytest.mark.parametrize(("name", "data", "expected"), [c[1:] for c in PAIR_FILE_FAULTS], ids=[c[0] for c in PAIR_FILE_FAULTS])
def test_fine_tuning_files_run_cannot_read(tmp_path, name, data, expected):
    (tmp_path / name).write_bytes(data)
    write_jsonl(tmp_path / "clean.jsonl", [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(3)])
    report, stop = check(tmp_path, {**PAIRS, "inputs": [{"path": name}, {"path": "clean.jsonl"}]})
    assert found(report) == expected
    assert where(report.findings[0]) == (stop.path, stop.location, stop.reason_message, stop.fix)
    assert report.inputs[1] == {"path": str(tmp_path / "clean.jsonl"), "records_read": 3, "documents": 3, "dropped": {}}


def test_a_chat_recipe_is_judged_by_runs_own_code(tmp_path):
    """A file mixing what run's reader rejects and what only the chat template and the tokenizer can."""
    ok = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    write_jsonl(tmp_path / "chats.jsonl", [
        {"messages": ok},
        {"messages": [{"role": "assistant", "content": "x"}, *ok]},  # gemma: roles must alternate
        {"messages": [ok[0], {"role": "tool", "content": "42"}, ok[1]]},  # gemma's template has no tool role
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "a <end_of_turn> b"}]},
        {"messages": [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]},
        {"messages": "not a list"},
        {"messages": [{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye"}]},
        {"messages": [{"role": "user", "content": [{"type": "image", "url": "cat.png"}]}, ok[1]]},
        {"messages": [ok[0], {"role": "assistant", "content": "x", "train": False}]},  # nothing to learn
    ])
    recipe = {"task": "sft", "inputs": [{"path": "chats.jsonl"}], "tokenizer": {"path": str(DATA / "tokenizers" / "gemma-3")},
              "template": "chat", "max_length": 256, "overflow": "error", "split": {"validation": 0.0}}
    report, stop = check(tmp_path, recipe)
    assert found(report) == [
        ("template_raised", "line 2"), ("unknown_role", "line 3"), ("special_token_text", "line 4"), ("too_long", "line 5"),
        ("bad_messages", "line 6"), ("non_text_content", "line 8"), ("no_target", "line 9"),
    ]
    assert "roles must alternate" in report.findings[0].message
    # under on_error: raise, run stops on the reader's fault (line 6): it reads a chunk before rendering any of it
    assert (stop.location, where(report.findings[4])) == ("line 6", (stop.path, stop.location, stop.reason_message, stop.fix))


# --- property: random damage, random chunking -------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DAMAGE = {  # kind -> (line bytes from a short text, the reason run gives it; None: written)
    "good": (lambda t: json.dumps({"prompt": t.strip() or "p", "completion": t[::-1].strip() or "x"}).encode(), None),
    "missing": (lambda t: json.dumps({"prompt": t}).encode(), "missing_field"),
    "wrong_type": (lambda t: json.dumps({"prompt": t, "completion": [t]}).encode(), "non_string_field"),
    "blank": (lambda t: json.dumps({"prompt": t or "p", "completion": " "}).encode(), "empty_field"),
    "not_object": (lambda t: json.dumps([t]).encode(), "not_an_object"),
    "malformed": (lambda t: b'{"prompt": ' + json.dumps(t).encode(), "malformed_json"),
    "invalid_utf8": (lambda t: b'{"prompt": "' + t.encode() + b'\xc3(", "completion": "c"}', "invalid_utf8"),
    "overlong": (lambda t: json.dumps({"prompt": t + " word" * 40, "completion": "c"}).encode(), "too_long"),
    "special": (lambda t: json.dumps({"prompt": t + "<|endoftext|>", "completion": "c"}).encode(), "special_token_text"),
}


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(items=st.lists(st.tuples(st.sampled_from(sorted(DAMAGE)), st.text("abc xyz", max_size=6)), min_size=1, max_size=30),
       chunk=st.integers(1, 7))
def test_random_damage_is_reported_as_run_drops_it(tmp_path_factory, items, chunk):
    folder = tmp_path_factory.mktemp("damage")
    (folder / "d.jsonl").write_bytes(b"".join(DAMAGE[kind][0](text) + b"\n" for kind, text in items))
    report, _ = check(folder, {**PAIRS, "inputs": [{"path": "d.jsonl"}], "output": {"chunk_records": chunk}})
    planted = [(DAMAGE[kind][1], f"line {n}") for n, (kind, _) in enumerate(items, 1) if DAMAGE[kind][1]]
    assert found(report) == planted


# --- what validate reports beyond the findings ---------------------------------------------------------


@pytest.mark.parametrize("name", ["demo-pretrain", "demo-sft", "dialogsum", "alpaca", "chat", "chat-tools", "classification",
                                  "code-pretrain", "fewshot-demo", "mlm-wikitext", "span-c4"])
def test_every_shipped_recipe_reads_clean_inputs(name):
    report = validate_inputs(recipe=load_recipe(RECIPES / f"{name}.yaml"))
    assert report.ok, report.to_text()
    assert report.stats["records"] > 0 and report.stats["records_written"] > 0


def test_shipped_recipes_count_what_their_runs_count(tmp_path):
    """Duplicates (demo-pretrain, trained tokenizer) and too-long examples dropped by choice (classification)."""
    for name in ("demo-pretrain", "classification"):
        report = validate_inputs(recipe=load_recipe(RECIPES / f"{name}.yaml"))
        manifest = run(load_recipe(RECIPES / f"{name}.yaml"), tmp_path / name, workers=1, progress=False)
        assert report.stats["dropped"] == manifest["counts"]["dropped"] != {}
        assert report.stats["records_written"] == manifest["counts"]["records_written"]
        assert "not findings" in report.notes[0]


def test_the_ceiling_run_would_stop_at_is_noted(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"text": "fine"}, {"text": 1}, {"text": "also"}])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**PRETRAIN, "inputs": [{"path": "d.jsonl"}], "on_error": "skip"}))
    report = validate_inputs(recipe=load_recipe(tmp_path / "r.yaml"))
    assert any(n.startswith(f"run would stop: {tmp_path / 'd.jsonl'} loses 1 of 3 records (33.3%)") for n in report.notes)
    with pytest.raises(Exception, match="max_dropped_fraction"):
        run(load_recipe(tmp_path / "r.yaml"), tmp_path / "out", workers=1, progress=False)


def test_max_errors_stops_reading_at_the_end_of_a_chunk(tmp_path):
    write_jsonl(tmp_path / "bad.jsonl", [{"txt": str(i)} for i in range(5000)])
    report = validate_inputs([tmp_path / "bad.jsonl"], kind="text", max_errors=5)  # no good record: no chunk ends
    assert found(report) == [("missing_field", f"line {n}") for n in range(1, 6)]
    assert not report.stopped and report.total == 5000 and report.stats["records"] == 5000  # read to its end, all counted
    write_jsonl(tmp_path / "mixed.jsonl", [{"txt": str(i)} if i % 2 else {"text": str(i)} for i in range(50_000)])
    report = validate_inputs([tmp_path / "mixed.jsonl"], kind="text", max_errors=5)
    assert report.stopped and len(report.findings) == 5 and report.stats["records"] < 50_000


def test_a_file_run_cannot_read_while_planning_is_a_finding(tmp_path):
    """classification.labels: null reads every label before the run: a cut file stops it there."""
    whole = gzip.compress(b"".join(b'{"text": "a %d", "label": "x%d"}\n' % (i, i % 3) for i in range(500)))
    (tmp_path / "d.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    recipe = {**PAIRS, "template": "classification", "classification": {"labels": None}, "inputs": [{"path": "d.jsonl.gz"}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    report = validate_inputs(recipe=load_recipe(tmp_path / "r.yaml"))
    assert found(report) == [("unreadable_file", None)]
    with pytest.raises(InputError) as err:
        run(load_recipe(tmp_path / "r.yaml"), tmp_path / "out", workers=1, progress=False)
    assert where(report.findings[0]) == (err.value.path, err.value.location, err.value.reason_message, err.value.fix)


# --- --as KIND: run's readers alone ------------------------------------------------------------------


def test_as_a_kind_the_readers_judge_what_they_judge_in_a_run_of_that_kind(tmp_path):
    """``--as chat`` reports exactly the reader's share of what ``--recipe`` (a chat run) reports."""
    path = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}, {"role": "assistant", "content": "ok"}]},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "  "}]},
        '"just text"',
        {"msgs": []},
        {"messages": [{"from": "human", "value": "hi"}, {"from": "gpt"}]},
        "{not json",
        "",
    ])
    report = validate_inputs([path], kind="chat")
    assert found(report) == [("bad_messages", "line 4"), ("not_an_object", "line 5"), ("missing_field", "line 6"),
                             ("bad_messages", "line 7"), ("malformed_json", "line 8")]
    assert report.findings[2].message == "missing field 'messages' (keys present: msgs)" and report.findings[2].file == str(path)
    assert report.stats["records"] == 8 and report.inputs[0]["dropped"]["bad_messages"] == 2
    recipe = {"task": "sft", "inputs": [{"path": "chat.jsonl"}], "tokenizer": {"path": str(DATA / "tokenizers" / "phi-3-mini")}, "template": "chat"}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    full = validate_inputs(recipe=load_recipe(tmp_path / "r.yaml"))
    assert [where(f) for f in full.findings if f.kind in DROP_REASONS] == [where(f) for f in report.findings]
    assert {f.kind for f in full.findings} - set(DROP_REASONS) == {"unknown_role", "no_target"}


def test_fields_map_a_kind_onto_your_records(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [
        {"q": {"text": "What is 2+2?"}, "a": "4"},
        {"q": {}, "a": "5"},
        {"q": "flat", "a": "6"},
        {"q": {"text": "?"}, "a": 7},
    ])
    report = validate_inputs([path], kind="prompt-completion", fields={"prompt": "q.text", "completion": "a"})
    assert [(f.kind, f.line, f.message) for f in report.findings] == [
        ("missing_field", "line 2", "missing field 'q.text' (keys present in 'q': none)"),
        ("missing_field", "line 3", "missing field 'q.text' ('q' is str, not an object)"),
        ("non_string_field", "line 4", "field 'a' is int, expected a string"),
    ]
    with pytest.raises(ConfigError, match="prompt-completion records have no field 'answer'"):
        validate_inputs([path], kind="prompt-completion", fields={"answer": "a"})
    with pytest.raises(ConfigError, match="text records have no field 'body'"):
        validate_inputs([path], kind="text", fields={"body": "a"})


def test_instruction_records_in_a_json_array(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([
        {"instruction": "Name a color.", "input": "", "output": "Red."},
        {"instruction": "Add.", "input": None, "output": "3"},
        {"instruction": " ", "output": "x"},  # blank: the template's judgement (--recipe)
        {"instruction": "Sum", "input": "1 2"},
        {"instruction": "Sum", "output": ["3"]},
    ]))
    assert found(validate_inputs([path], kind="instruction")) == [("missing_field", "record 3"), ("non_string_field", "record 4")]


def test_compressed_and_txt_inputs(tmp_path):
    gz = tmp_path / "docs.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write('{"text": "fine"}\n{"text": 3}\n')
    txt = tmp_path / "notes.txt"
    txt.write_bytes(b"first\nbad \xff byte\n")
    report = validate_inputs([gz, txt], kind="text")
    assert [(f.kind, f.file, f.line) for f in report.findings] == [("non_string_field", str(gz), "line 2"), ("invalid_utf8", str(txt), "line 2")]


def test_the_sample_chat_files():
    ok = validate_inputs([DATA / "pairs" / "chat" / "sharegpt_dummy_conversation.json"], kind="chat", fields={"messages": "conversations"})
    assert ok.ok and ok.stats["records"] == 500
    tools = validate_inputs([DATA / "pairs" / "chat" / "glaive_toolcall_en_demo.json"], kind="chat", fields={"messages": "conversations"})
    assert tools.ok and tools.stats["records"] == 300


@pytest.mark.parametrize("kind", ["text", "instruction", "prompt-completion", "chat", "classification"])
def test_record_schemas_describe_what_the_readers_read(tmp_path, kind):
    """The record schemas are documentation: their examples pass the readers, and the fields they
    require are the fields a run of that kind requires."""
    from dataprep.schema import load_schema
    from dataprep.tasks.sft.records import fields_for
    from dataprep.validate.check_inputs import kind_recipe

    schema = load_schema(f"{kind}-record")
    path = write_jsonl(tmp_path / "examples.jsonl", schema["examples"])
    assert validate_inputs([path], kind=kind).ok
    recipe = kind_recipe(kind, [str(path)], {}, base_dir=tmp_path)
    required = {"text"} if kind == "text" else {n for n, spec in fields_for(recipe, 0).items() if spec.required}
    assert set(schema["required"]) == required


@pytest.mark.parametrize("name", ["demo-sft", "code-pretrain", "fewshot-demo"])
def test_as_reads_with_the_reader_a_run_of_its_kind_plans(name):
    """``--as`` (no tokenizer, so no plan) reads with the chunk reader every task of its kind plans with."""
    from dataprep.read import resolve_inputs
    from dataprep.tasks.registry import task_for
    from dataprep.text.tokenizer import load_tokenizer
    from dataprep.validate.check_recipe import reader_of

    recipe = load_recipe(RECIPES / f"{name}.yaml")
    tokenizer = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    plan = task_for(recipe).plan(recipe, tokenizer, resolve_inputs(recipe.inputs, base_dir=recipe.base_dir))
    ours = reader_of(recipe)
    assert (plan.reader.read_file.func, plan.reader.read_file.args, plan.reader.max_bytes) == (
        ours.read_file.func, ours.read_file.args, ours.max_bytes)
