"""The record shapes real datasets come in: list indexes in paths, nested sources (``records:``),
pretraining text from a template (``text_template:``), role mappings (``roles:``) from a recipe."""

from __future__ import annotations

import collections
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from tokenizers import ByteLevelBPETokenizer

from dataprep import columns as C
from dataprep.cli import main
from dataprep.errors import ConfigError, InputError, RecipeError
from dataprep.build.run import run
from dataprep.read import FieldSpec, InputSpec, read_batches, read_records, records_schema, resolve_inputs
from dataprep.recipe import recipe_from_dict

from .conftest import DATA, read_split

HUMANEVAL = DATA / "corpora" / "code" / "humaneval_python.jsonl"
PAIRS = DATA / "pairs"
GPT2 = DATA / "tokenizers" / "gpt2"
RAW = {"unicode": "none", "newlines": False, "strip_bom": False, "control_chars": False, "strip": False}


def one(base: Path, path: str, **options):
    files = resolve_inputs([InputSpec(path, **options)], base_dir=base)
    assert len(files) == 1
    return files[0]


def read(file, fields: dict, *, on_error: str = "raise", drops=None, batch_size: int = 1000) -> list[dict]:
    drops = collections.Counter() if drops is None else drops
    batches = list(read_records(file, 0, fields=fields, batch_size=batch_size, on_error=on_error, drops=drops))
    return pa.Table.from_batches(batches, schema=records_schema(fields)).to_pylist()


def texts(file, *, on_error: str = "raise", drops=None) -> list[tuple[str, int]]:
    drops = collections.Counter() if drops is None else drops
    batches = list(read_batches(file, 0, batch_size=50, on_error=on_error, drops=drops))
    assert all(batch.schema.names == [C.TEXT, C.SOURCE, C.LINE] for batch in batches)
    table = pa.Table.from_batches(batches)
    return list(zip(table.column(C.TEXT).to_pylist(), table.column(C.LINE).to_pylist()))


# --- list indexes in field paths ----------------------------------------------------------


INSTANCES = [
    {"instruction": "Add.", "instances": [{"input": "1+1", "output": "2"}]},
    {"instruction": "Sub.", "instances": [{"input": "3-1", "output": "2"}, {"input": "5-1", "output": "4"}]},
    {"instruction": "None.", "instances": []},
]
INDEXED = {"prompt": FieldSpec("instruction"), "answer": FieldSpec("instances.0.output"), "second": FieldSpec("instances.1.input", required=False)}


def test_list_index_in_json_paths_and_the_missing_hint(tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in INSTANCES))
    drops = collections.Counter()
    got = read(one(tmp_path, "d.jsonl"), INDEXED, on_error="skip", drops=drops)
    assert [(r["prompt"], r["answer"], r["second"], r["line"]) for r in got] == [("Add.", "2", "", 1), ("Sub.", "2", "5-1", 2)]
    assert drops == {"missing_field": 1}
    with pytest.raises(InputError) as err:
        read(one(tmp_path, "d.jsonl"), {"answer": FieldSpec("instances.1.output")})
    assert (err.value.location, err.value.reason_message) == ("line 1", "missing field 'instances.1.output' ('instances' has 1 item)")
    assert err.value.fix == "set `fields.answer.path:` to the field that holds `answer`, or `on_error: skip` to drop such records"
    with pytest.raises(InputError) as err:
        read(one(tmp_path, "d.jsonl"), {"answer": FieldSpec("instances.first")})
    assert err.value.reason_message == "missing field 'instances.first' ('instances' is a list; index it with a number, e.g. instances.0)"
    with pytest.raises(InputError) as err:
        read(one(tmp_path, "d.jsonl"), {"answer": FieldSpec("instances.0.output")}, batch_size=1)
    assert (err.value.location, err.value.reason_message) == ("line 3", "missing field 'instances.0.output' ('instances' has 0 items)")


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_list_index_in_columnar_paths(tmp_path, fmt):
    table = pa.Table.from_pylist(INSTANCES + [{"instruction": "Null.", "instances": None}])
    path = tmp_path / f"d.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=2)
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=3)
    drops = collections.Counter()
    got = read(one(tmp_path, path.name), INDEXED, on_error="skip", drops=drops)
    assert [(r["prompt"], r["answer"], r["second"], r["line"]) for r in got] == [("Add.", "2", "", 0), ("Sub.", "2", "5-1", 1)]
    assert drops == {"missing_field": 2}
    with pytest.raises(InputError) as err:
        read(one(tmp_path, path.name), {"answer": FieldSpec("instances.1.output")})
    assert (err.value.location, err.value.reason_message) == ("row 0", "missing field 'instances.1.output' ('instances' has 1 item)")
    with pytest.raises(InputError) as err:
        read(one(tmp_path, path.name), {"p": FieldSpec("instruction"), "answer": FieldSpec("instances.0.output")})
    assert (err.value.location, err.value.reason_message) == ("row 2", "missing field 'instances.0.output' ('instances' has 0 items)")
    with pytest.raises(InputError) as err:
        read(one(tmp_path, path.name), {"answer": FieldSpec("instances.output")})
    assert err.value.reason_message == "missing field 'instances.output' ('instances' is a list; index it with a number, e.g. instances.0)"
    # a null list is missing the field too; an optional field reads as empty there
    drops = collections.Counter()
    got = read(one(tmp_path, path.name), {"p": FieldSpec("instruction"), "a": FieldSpec("instances.0.input", required=False)})
    assert [(r["p"], r["a"]) for r in got] == [("Add.", "1+1"), ("Sub.", "3-1"), ("None.", ""), ("Null.", "")]


# --- nested sources: records: ------------------------------------------------------------


SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Rivers",
            "paragraphs": [
                {
                    "context": "The Nile is long.\n  Very long.",
                    "qas": [
                        {"id": "q1", "question": "Which river?", "answers": [{"text": "The Nile", "answer_start": 0}]},
                        {"id": "q2", "question": "How long?", "answers": [{"text": "long", "answer_start": 12}, {"text": "Very long", "answer_start": 20}]},
                    ],
                },
                {"context": "Nothing asked here.", "qas": []},
            ],
        },
        {
            "title": "Mountains",
            "paragraphs": [
                {"context": "Everest is high.", "qas": [{"id": "q3", "question": "Which mountain?", "answers": [{"text": "Everest", "answer_start": 0}]}]}
            ],
        },
    ],
}
SQUAD_FIELDS = {
    "id": FieldSpec("id"),
    "question": FieldSpec("question"),
    "context": FieldSpec("^context"),
    "title": FieldSpec("^^title"),
    "version": FieldSpec("^^^version"),
    "answer": FieldSpec("answers.0.text"),
}
QAS = "data[*].paragraphs[*].qas[*]"


def test_squad_records_with_parent_fields(tmp_path):
    (tmp_path / "squad.json").write_text(json.dumps(SQUAD, indent=1))
    got = read(one(tmp_path, "squad.json", records=QAS), SQUAD_FIELDS)
    assert got == [
        {"id": "q1", "question": "Which river?", "context": "The Nile is long.\n  Very long.", "title": "Rivers",
         "version": "1.1", "answer": "The Nile", "source": 0, "line": 0},
        {"id": "q2", "question": "How long?", "context": "The Nile is long.\n  Very long.", "title": "Rivers",
         "version": "1.1", "answer": "long", "source": 0, "line": 1},
        {"id": "q3", "question": "Which mountain?", "context": "Everest is high.", "title": "Mountains",
         "version": "1.1", "answer": "Everest", "source": 0, "line": 2},
    ]
    # one record per paragraph, or per article; [N] picks one item
    paragraphs = read(one(tmp_path, "squad.json", records="data[*].paragraphs[*]"), {"c": FieldSpec("context"), "t": FieldSpec("^title")})
    assert [(r["c"], r["t"], r["line"]) for r in paragraphs] == [
        ("The Nile is long.\n  Very long.", "Rivers", 0), ("Nothing asked here.", "Rivers", 1), ("Everest is high.", "Mountains", 2)
    ]
    second = read(one(tmp_path, "squad.json", records="data[1].paragraphs[*].qas[*]"), {"q": FieldSpec("question"), "t": FieldSpec("^^title")})
    assert [(r["q"], r["t"]) for r in second] == [("Which mountain?", "Mountains")]


def test_nested_records_are_located_by_index_and_path(tmp_path):
    data = json.loads(json.dumps(SQUAD))
    del data["data"][1]["paragraphs"][0]["qas"][0]["answers"]
    (tmp_path / "squad.json").write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        read(one(tmp_path, "squad.json", records=QAS), SQUAD_FIELDS)
    assert (err.value.location, err.value.reason_message) == (
        "record 2 (data[1].paragraphs[0].qas[0])",
        "missing field 'answers.0.text' (keys present: id, question)",
    )
    with pytest.raises(InputError) as err:  # a parent field names the parent's keys
        read(one(tmp_path, "squad.json", records=QAS), {"c": FieldSpec("^title")})
    assert (err.value.location, err.value.reason_message) == (
        "record 0 (data[0].paragraphs[0].qas[0])",
        "missing field '^title' (keys present: context, qas)",
    )
    drops = collections.Counter()
    got = read(one(tmp_path, "squad.json", records=QAS), SQUAD_FIELDS, on_error="skip", drops=drops)
    assert [r["id"] for r in got] == ["q1", "q2"] and drops == {"missing_field": 1}


def test_bad_nesting_raises_or_is_counted_per_place(tmp_path, caplog):
    data = json.loads(json.dumps(SQUAD))
    data["data"][0]["paragraphs"][1]["qas"] = None
    del data["data"][1]["paragraphs"]
    (tmp_path / "squad.json").write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        read(one(tmp_path, "squad.json", records=QAS), SQUAD_FIELDS)
    assert (err.value.location, err.value.reason_message) == (
        "data[0].paragraphs[1].qas",
        f"data[0].paragraphs[1].qas is null, expected a list (records: {QAS})",
    )
    assert "`records:`" in err.value.fix and "on_error: skip" in err.value.fix
    drops = collections.Counter()
    with caplog.at_level(logging.WARNING, logger="dataprep.read"):
        got = read(one(tmp_path, "squad.json", records=QAS), SQUAD_FIELDS, on_error="skip", drops=drops)
    assert [r["id"] for r in got] == ["q1", "q2"] and drops == {"bad_nesting": 2}
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        f"data[0].paragraphs[1].qas is null, expected a list (records: {QAS}); skipped (on_error: skip)",
        f"missing 'paragraphs' in data[1] (keys present: title) (records: {QAS}); skipped (on_error: skip)",
    ]


def test_a_records_path_that_finds_nothing_is_an_error(tmp_path):
    (tmp_path / "squad.json").write_text(json.dumps(SQUAD))
    wrong = "data[*].paragraphs[*].questions[*]"
    with pytest.raises(InputError) as err:  # raised at the first place the path cannot step into
        read(one(tmp_path, "squad.json", records=wrong), SQUAD_FIELDS)
    assert (err.value.location, err.value.reason_message) == (
        "data[0].paragraphs[0]",
        f"missing 'questions' in data[0].paragraphs[0] (keys present: context, qas) (records: {wrong})",
    )
    with pytest.raises(InputError) as err:  # skipped places are counted, and a run with no record at all still stops
        read(one(tmp_path, "squad.json", records=wrong), SQUAD_FIELDS, on_error="skip")
    assert err.value.location is None
    assert err.value.reason_message == f"`records: {wrong}` finds no record in this file; 3 place(s) on the path were skipped as bad_nesting"
    empty = {"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": []}]}, {"title": "u", "paragraphs": []}]}
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    with pytest.raises(InputError) as err:
        read(one(tmp_path, "empty.json", records=QAS), SQUAD_FIELDS)
    assert err.value.reason_message == f"`records: {QAS}` finds no record in this file, every list on it is empty"
    assert err.value.fix.startswith("check `records:` against the file's structure")


def test_nested_records_in_jsonl_keep_their_line(tmp_path):
    lines = [
        {"dialog": "a", "turns": [{"q": "1"}, {"q": "2"}]},
        {"dialog": "b", "turns": []},
        {"dialog": "c", "turns": [{"q": "3"}, {"x": "no q"}]},
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    fields = {"q": FieldSpec("q"), "dialog": FieldSpec("^dialog")}
    drops = collections.Counter()
    got = read(one(tmp_path, "d.jsonl", records="turns[*]"), fields, on_error="skip", drops=drops)
    assert [(r["q"], r["dialog"], r["line"]) for r in got] == [("1", "a", 1), ("2", "a", 1), ("3", "c", 3)]
    assert drops == {"missing_field": 1}
    with pytest.raises(InputError) as err:
        read(one(tmp_path, "d.jsonl", records="turns[*]"), fields)
    assert (err.value.location, err.value.reason_message) == ("line 3, turns[1]", "missing field 'q' (keys present: x)")
    # a file that is one array: a leading [*]
    (tmp_path / "a.json").write_text(json.dumps(lines))
    got = read(one(tmp_path, "a.json", records="[*].turns[*]"), {"q": FieldSpec("q"), "d": FieldSpec("^d", required=False)}, on_error="skip")
    assert [(r["q"], r["line"]) for r in got] == [("1", 0), ("2", 1), ("3", 2)]


def test_records_and_parent_paths_are_checked(tmp_path):
    (tmp_path / "squad.json").write_text(json.dumps(SQUAD))
    (tmp_path / "d.tsv").write_text("a\tb\n1\t2\n")
    for bad in ("data[*]..qas[*]", "data[x]", "data[*]qas", "[*]"[:1]):
        with pytest.raises(InputError, match="invalid records path") as err:
            one(tmp_path, "squad.json", records=bad)
        assert err.value.fix == "fix `records:` (see `dataprep schema recipe`)"
    with pytest.raises(InputError, match="`records:` reads nested json and jsonl records; .* is tsv"):
        one(tmp_path, "d.tsv", records="x[*]")
    with pytest.raises(ConfigError, match=r"fields.v.path: '\^\^\^\^version' goes 4 levels up, but its records have 3 parent levels"):
        read(one(tmp_path, "squad.json", records=QAS), {"v": FieldSpec("^^^^version")})
    with pytest.raises(ConfigError, match="a leading \\^ reaches a parent record, which only inputs read with `records:` have"):
        read(one(tmp_path, "squad.json"), {"v": FieldSpec("^version")})


# --- pretraining text from a template: text_template: ---------------------------------------------


def test_humaneval_text_is_prompt_plus_solution_exactly():
    source = [json.loads(line) for line in HUMANEVAL.read_text(encoding="utf-8").splitlines()]
    got = texts(one(HUMANEVAL.parent, HUMANEVAL.name, text_template="{prompt}{canonical_solution}"))
    assert len(got) == 164
    assert got == [(r["prompt"] + r["canonical_solution"], n) for n, r in enumerate(source, 1)]
    assert got[0][0].startswith('from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n')
    assert "\n    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in enumerate(numbers):\n" in got[0][0]
    # literals and braces around fields are kept exactly
    labelled = texts(one(HUMANEVAL.parent, HUMANEVAL.name, text_template="# {task_id} {{x}}\n{prompt}"))
    assert labelled[0][0] == "# HumanEval/0 {x}\n" + source[0]["prompt"]


def test_template_fields_may_be_nested_numbers_or_missing(tmp_path, caplog):
    rows = [
        {"title": "A", "meta": {"year": 2020, "tags": ["x", "y"]}, "body": "  text\n"},
        {"title": "B", "meta": {"year": 2021, "tags": []}, "body": "b"},
        {"title": "C", "body": "c"},
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    template = "{title} ({meta.year}, {meta.tags.0}):{body}"
    drops = collections.Counter()
    with caplog.at_level(logging.WARNING, logger="dataprep.read"):
        got = texts(one(tmp_path, "d.jsonl", text_template=template), on_error="skip", drops=drops)
    assert got == [("A (2020, x):  text\n", 1)] and drops == {"missing_field": 2}
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'd.jsonl'}, line 2: missing field 'meta.tags.0' ('meta.tags' has 0 items); skipped (on_error: skip)",
        f"{tmp_path / 'd.jsonl'}, line 3: missing field 'meta.year' (keys present: title, body); skipped (on_error: skip)",
    ]
    with pytest.raises(InputError) as err:
        texts(one(tmp_path, "d.jsonl", text_template=template))
    assert str(err.value) == (
        f"{tmp_path / 'd.jsonl'}, line 2: missing field 'meta.tags.0' ('meta.tags' has 0 items)\n"
        "  fix: make every {field} in `text_template:` name a field these records hold, or set `on_error: skip` to drop such records"
    )
    # columnar inputs join in Arrow
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "d.parquet")
    assert texts(one(tmp_path, "d.parquet", text_template="{title}|{meta.year}|{meta.tags.1}"), on_error="skip") == [("A|2020|y", 0)]


def test_text_template_is_checked(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"a": "x"}\n')
    (tmp_path / "d.txt").write_text("x\n")
    cases = {
        "{a": "unclosed '{' at character 0 of '{a' (write '{{' for a literal brace)",
        "a}": "stray '}' at character 1 of 'a}' (write '}}' for a literal brace)",
        "{}x": "empty '{}' at character 0 of '{}x'; name a field inside the braces",
        "plain": "'plain' names no field; put field paths in braces, e.g. '{prompt}{completion}'",
    }
    for template, message in cases.items():
        with pytest.raises(InputError) as err:
            one(tmp_path, "d.jsonl", text_template=template)
        assert err.value.reason_message == f"invalid text_template: {message}"
    with pytest.raises(InputError, match="both `text_field: body` and `text_template:` name the text"):
        one(tmp_path, "d.jsonl", text_template="{a}", text_field="body")
    with pytest.raises(InputError, match="`text_template:` builds the text from fields; .* is plain text"):
        one(tmp_path, "d.txt", text_template="{a}")
    with pytest.raises(ConfigError, match="`text_template:` builds pretraining text; fine-tuning reads fields"):
        read(one(tmp_path, "d.jsonl", text_template="{a}"), {"a": FieldSpec("a")})


def test_run_a_pretraining_recipe_with_a_text_template(tmp_path, capsys):
    recipe = {
        "name": "humaneval",
        "task": "pretrain",
        "inputs": [{"path": str(HUMANEVAL), "text_template": "{prompt}{canonical_solution}"}],
        "tokenizer": {"path": str(GPT2)},
        "normalize": RAW,
        "filter": {"dedup": "none"},
        "packing": {"mode": "wrap", "seq_len": 256, "remainder": "pad"},
        "split": {"validation": 0.0},
    }
    path = tmp_path / "humaneval.yaml"
    path.write_text("# HumanEval prompts + solutions as code pretraining text\n" + yaml.safe_dump(recipe))
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), "--out", str(tmp_path / "out"), "-w", "2"])
    assert info.value.code == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["records_read"] == manifest["counts"]["records_written"] == 164
    reference = ByteLevelBPETokenizer(str(GPT2 / "vocab.json"), str(GPT2 / "merges.txt"))
    source = [json.loads(line) for line in HUMANEVAL.read_text(encoding="utf-8").splitlines()]
    expected = np.concatenate([reference.encode(r["prompt"] + r["canonical_solution"]).ids + [50256] for r in source])
    table = read_split(tmp_path / "out")
    ids = table.column(C.INPUT_IDS).combine_chunks().flatten().to_numpy()
    assert np.array_equal(ids[: len(expected)], expected)
    # a record without a field stops the run with its file, line and fix
    bad = tmp_path / "bad.jsonl"
    bad.write_text(HUMANEVAL.read_text(encoding="utf-8").splitlines()[0] + "\n" + '{"prompt": "def f():\\n"}\n')
    data = dict(recipe, inputs=[{"path": str(bad), "text_template": "{prompt}{canonical_solution}"}])
    with pytest.raises(InputError) as err:
        run(recipe_from_dict(data, base_dir=tmp_path), tmp_path / "out2", workers=1)
    assert str(err.value).startswith(f"{bad}, line 2: missing field 'canonical_solution' (keys present: prompt)\n  fix: make every {{field}}")


# --- roles: from a recipe, real chat data ----------------------------------------------------------


def test_recipe_roles_records_and_text_template_reach_the_input_spec(tmp_path):
    base = {"task": "sft", "tokenizer": {"path": str(GPT2)}, "template": "chat"}
    inputs = [{"path": "a.json", "roles": {"bot": "assistant", "fn": "tool_call"}, "records": QAS}, {"path": "b.jsonl", "text_template": "{a}{b}"}]
    recipe = recipe_from_dict(dict(base, inputs=inputs), base_dir=tmp_path)
    assert recipe.inputs[0].roles == (("bot", "assistant"), ("fn", "tool_call"))
    assert recipe.inputs[0].role_map == {"bot": "assistant", "fn": "tool_call"}
    assert recipe.inputs[0].records == QAS and recipe.inputs[1].text_template == "{a}{b}"
    assert recipe.inputs[1].roles is None and recipe.inputs[1].records is None
    assert recipe.resolved["inputs"][0]["roles"] == {"bot": "assistant", "fn": "tool_call"}
    with pytest.raises(RecipeError) as err:
        recipe_from_dict(dict(base, inputs=[{"path": "a.json", "roles": {"bot": "model"}, "records": ""}]), base_dir=tmp_path)
    text = str(err.value)
    assert "inputs[0].roles.bot: 'model' is not one of 'user', 'assistant', 'system', 'tool', 'tool_call'" in text
    assert "inputs[0].records" in text


def test_real_dpo_prefix_and_responses():
    fields = {
        "messages": FieldSpec("conversations", "messages"),
        "chosen": FieldSpec("chosen.value"),
        "rejected": FieldSpec("rejected.value"),
    }
    file = one(PAIRS / "preference", "dpo_en_demo.json", roles={"system": "system"})
    got = read(file, fields)
    source = json.loads((PAIRS / "preference" / "dpo_en_demo.json").read_text(encoding="utf-8"))
    assert len(got) == 300
    role = {"human": "user", "gpt": "assistant", "system": "system"}
    assert [json.loads(r["messages"]) for r in got] == [
        [{"role": role[m["from"]], "content": m["value"]} for m in s["conversations"]] for s in source
    ]
    assert [(r["chosen"], r["rejected"]) for r in got] == [(s["chosen"]["value"], s["rejected"]["value"]) for s in source]
    roles = collections.Counter(m["role"] for r in got for m in json.loads(r["messages"]))
    assert roles == {"user": 563, "assistant": 263, "system": 80}


def test_real_kto_roles_renamed_by_the_recipe(tmp_path):
    file = one(PAIRS / "chat", "kto_en_demo.json", roles={"assistant": "user", "user": "system"})
    got = read(file, {"messages": FieldSpec("messages", "messages")})
    source = json.loads((PAIRS / "chat" / "kto_en_demo.json").read_text(encoding="utf-8"))
    swap = {"assistant": "user", "user": "system"}
    assert [json.loads(r["messages"]) for r in got] == [
        [{"role": swap[m["role"]], "content": m["content"]} for m in s["messages"]] for s in source
    ]


def test_real_sharegpt_with_per_message_train_flags(tmp_path):
    source = json.loads((PAIRS / "chat" / "sharegpt_dummy_conversation.json").read_text(encoding="utf-8"))[:3]
    for record in source:  # as a dataset marks turns not to learn: the first gpt turn has weight 0
        next(m for m in record["conversations"] if m["from"] == "gpt")["weight"] = 0
    (tmp_path / "w.json").write_text(json.dumps(source))
    got = read(one(tmp_path, "w.json"), {"messages": FieldSpec("conversations", "messages")})
    first = json.loads(got[0]["messages"])
    assert first[1] == {"role": "assistant", "content": source[0]["conversations"][1]["value"], "train": False}
    assert all("train" not in m for m in first[2:]) and "train" not in first[0]


def test_messages_take_the_inputs_roles_in_json_and_columnar_files(tmp_path):
    chats = [
        [{"from": "human", "value": "hi"}, {"from": "bot", "value": "hello"}],
        [{"from": "human", "value": "look"}, {"from": "bot", "value": [{"type": "image", "image": "x.png"}]}],
    ]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"chat": c}) + "\n" for c in chats))
    pq.write_table(pa.Table.from_pylist([{"chat": chats[0]}, {"chat": chats[0]}]), tmp_path / "c.parquet")
    expected = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    drops = collections.Counter()
    got = read(one(tmp_path, "c.jsonl", roles={"bot": "assistant"}), {"chat": FieldSpec("chat", "messages")}, on_error="skip", drops=drops)
    assert [json.loads(r["chat"]) for r in got] == [expected] and drops == {"non_text_content": 1}
    got = read(one(tmp_path, "c.parquet", roles={"bot": "assistant"}), {"chat": FieldSpec("chat", "messages")})
    assert [json.loads(r["chat"]) for r in got] == [expected, expected]
    got = read(one(tmp_path, "c.parquet"), {"chat": FieldSpec("chat", "messages")})  # no mapping: kept as written
    assert json.loads(got[0]["chat"])[1] == {"role": "bot", "content": "hello"}
