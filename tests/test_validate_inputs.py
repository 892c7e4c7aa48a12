"""`validate_inputs`: raw records against the record schemas, each finding with file, line,
JSON path, the pipeline's reason and the expected form."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from dataprep.errors import ConfigError
from dataprep.recipe import load_recipe
from dataprep.validate import validate_inputs

from .conftest import DATA, RECIPES


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def found(report) -> list[tuple]:
    return [(f.kind, f.line, f.path) for f in report.findings]


@pytest.mark.parametrize("name", ["demo-pretrain", "demo-sft", "dialogsum", "alpaca", "chat", "classification"])
def test_every_shipped_recipe_reads_clean_inputs(name):
    report = validate_inputs(recipe=load_recipe(RECIPES / f"{name}.yaml"))
    assert report.ok, report.to_text()
    assert report.stats["records"] > 0


def test_chat_records(tmp_path):
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
    assert found(report) == [
        ("unknown_role", "line 2", "$.messages[1].role"),
        ("no_target", "line 3", "$.messages"),
        ("bad_messages", "line 4", "$.messages[0].content"),
        ("empty_field", "line 4", "$.messages[1].content"),
        ("not_an_object", "line 5", "$"),
        ("missing_field", "line 6", "$"),
        ("bad_messages", "line 7", "$.messages[1]"),
        ("malformed_json", "line 8", None),
    ]
    first = report.findings[0]
    assert first.file == str(path) and first.message == "\"bot\" is not one of 'system', 'user', 'assistant', 'tool'"
    assert first.expected == "one of 'system', 'user', 'assistant', 'tool'"
    assert report.findings[5].message == "missing field 'messages' (keys present: msgs)"
    assert report.stats["records"] == 8 and report.counts["bad_messages"] == 2


def test_fields_map_a_kind_onto_your_records(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [
        {"q": {"text": "What is 2+2?"}, "a": "4"},
        {"q": {}, "a": "5"},
        {"q": "flat", "a": "6"},
        {"q": {"text": "?"}, "a": 7},
    ])
    report = validate_inputs([path], kind="prompt-completion", fields={"prompt": "q.text", "completion": "a"})
    assert found(report) == [
        ("missing_field", "line 2", "$.q"),
        ("missing_field", "line 3", "$.q"),
        ("non_string_field", "line 4", "$.a"),
    ]
    with pytest.raises(ConfigError, match="no field 'answer'"):
        validate_inputs([path], kind="prompt-completion", fields={"answer": "a"})


def test_instruction_records_in_a_json_array(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([
        {"instruction": "Name a color.", "input": "", "output": "Red."},
        {"instruction": "Add.", "input": None, "output": "3"},
        {"instruction": " ", "output": "x"},
        {"instruction": "Sum", "input": "1 2"},
        {"instruction": "Sum", "output": ["3"]},
    ]))
    report = validate_inputs([path], kind="instruction")
    assert found(report) == [
        ("empty_field", "record 2", "$.instruction"),
        ("missing_field", "record 3", "$"),
        ("non_string_field", "record 4", "$.output"),
    ]


def test_a_recipe_checks_its_mapping_template_and_labels(tmp_path):
    (tmp_path / "sms.tsv").write_text("Label\tSMS\nham\tsee you\nspam\twin\textra\neggs\thello\nham\t \n")
    recipe = {
        "task": "sft",
        "inputs": [{"path": "sms.tsv", "fields": {"text": "SMS", "label": {"path": "Label", "kind": "any"}}}],
        "tokenizer": {"path": str(DATA / "tokenizers" / "gpt2")},
        "template": "classification",
        "classification": {"labels": ["ham", "spam"]},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    report = validate_inputs(recipe=load_recipe(tmp_path / "r.yaml"))
    assert found(report) == [
        ("bad_row", "line 3", None),
        ("unknown_label", "line 4", "$.Label"),
        ("empty_field", "line 5", "$.SMS"),
    ]
    assert report.findings[0].message == "row has 3 columns, expected 2 (Label, SMS)"
    assert report.findings[1].expected == "one of 'ham', 'spam'"


def test_max_errors_stops_reading(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"txt": str(i)} for i in range(1000)])
    report = validate_inputs([path], kind="text", max_errors=5)
    assert report.stopped and report.total == 5 and report.stats["records"] == 5
    assert len(report.findings) == 5


def test_compressed_and_txt_inputs(tmp_path):
    gz = tmp_path / "docs.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write('{"text": "fine"}\n{"text": 3}\n')
    txt = tmp_path / "notes.txt"
    txt.write_bytes(b"first\nbad \xff byte\n")
    report = validate_inputs([gz, txt], kind="text")
    assert [(f.kind, f.file, f.line) for f in report.findings] == [
        ("non_string_field", str(gz), "line 2"),
        ("invalid_utf8", str(txt), "line 2"),
    ]


def test_the_sample_chat_files(tmp_path):
    ok = validate_inputs([DATA / "pairs" / "chat" / "sharegpt_dummy_conversation.json"], kind="chat", fields={"messages": "conversations"})
    assert ok.ok and ok.stats["records"] == 500
    # function_call / observation turns are tool calls and tool results
    tools = validate_inputs([DATA / "pairs" / "chat" / "glaive_toolcall_en_demo.json"], kind="chat", fields={"messages": "conversations"})
    assert tools.ok and tools.stats["records"] == 300


def test_chat_records_with_tools_parts_and_flags(tmp_path):
    user = {"role": "user", "content": "Weather?"}
    call = {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "w", "arguments": "{}"}}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [user, call, {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}]}]},
        {"messages": [user, {"role": "assistant", "content": [{"type": "image", "url": "x.png"}]}]},
        {"messages": [user, {"role": "assistant", "content": None}]},
        {"messages": [user, {"role": "assistant", "content": "ok", "loss_weight": 0.5}]},
        {"messages": [user, {"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": "{}"}}]}]},
        {"messages": [{"from": "human", "value": "Hi"}, {"from": "function_call", "value": {"name": "w", "arguments": {}}}]},
    ])
    report = validate_inputs([path], kind="chat")
    assert [(kind, line) for kind, line, _ in found(report)] == [
        ("non_text_content", "line 2"),
        ("bad_messages", "line 3"),  # null content without a tool call
        ("bad_messages", "line 4"),  # loss_weight 0 or 1 only
        ("bad_messages", "line 5"),  # a call without a name
    ]
    assert report.findings[0].message == "'text' was expected" and report.findings[0].path == "$.messages[1].content[0].type"


def test_a_chat_recipe_is_judged_by_runs_own_code(tmp_path):
    """validate --recipe and run share one definition of a bad record: the same records, the
    same reasons, on a file mixing what a schema can see and what only the template can."""
    from dataprep.build.run import run

    ok = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    records = [
        {"messages": ok},
        {"messages": [{"role": "assistant", "content": "x"}, *ok]},  # gemma: roles must alternate
        {"messages": [ok[0], {"role": "tool", "content": "42"}, ok[1]]},  # gemma's template has no tool role
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "a <end_of_turn> b"}]},
        {"messages": [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]},
        {"messages": "not a list"},
        {"messages": [{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye"}]},
        {"messages": [{"role": "user", "content": [{"type": "image", "url": "cat.png"}]}, ok[1]]},  # the reader's own reject
    ]
    write_jsonl(tmp_path / "chats.jsonl", records)
    recipe = {
        "task": "sft", "inputs": [{"path": "chats.jsonl"}], "tokenizer": {"path": str(DATA / "tokenizers" / "gemma-3")},
        "template": "chat", "max_length": 256, "overflow": "error", "split": {"validation": 0.0},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    report = validate_inputs(recipe=load_recipe(tmp_path / "r.yaml"))
    assert found(report) == [
        ("bad_messages", "line 6", "$.messages"),  # the schema pass, with a JSON path
        ("non_text_content", "line 8", None),  # run's reader (as it reads ahead of the chunk)
        ("template_raised", "line 2", None),  # run's worker
        ("unknown_role", "line 3", None),
        ("special_token_text", "line 4", None),
        ("too_long", "line 5", None),
    ]
    assert "roles must alternate" in report.findings[2].message
    # run with on_error: skip drops exactly these, for the same reasons
    manifest = run(load_recipe(tmp_path / "r.yaml", ["on_error=skip", "overflow=drop", "max_dropped_fraction=1"]), tmp_path / "out", workers=1)
    assert manifest["counts"]["dropped"] == {
        "bad_messages": 1, "template_raised": 1, "unknown_role": 1, "special_token_text": 1, "too_long": 1,
        "non_text_content": 1,
    }
    assert manifest["counts"]["records_written"] == 2


def test_the_tool_calling_recipe_reads_clean_inputs():
    report = validate_inputs(recipe=load_recipe(RECIPES / "chat-tools.yaml"))
    assert report.ok, report.to_text()
    assert report.stats["records"] == 300


def test_recipes_with_templates_nested_records_and_list_paths_are_read_as_run_reads_them(tmp_path):
    # text_template: no false "missing field 'text'"; a record missing a templated field is found
    report = validate_inputs(recipe=load_recipe(RECIPES / "code-pretrain.yaml"))
    assert report.ok, report.to_text()
    assert report.stats["records"] == 164
    write_jsonl(tmp_path / "code.jsonl", [{"prompt": "def f():\n", "canonical_solution": "    return 1\n"}, {"prompt": "x"}])
    recipe = {"task": "pretrain", "inputs": [{"path": "code.jsonl", "text_template": "{prompt}{canonical_solution}"}],
              "tokenizer": {"path": str(DATA / "tokenizers" / "gpt2")}}
    (tmp_path / "code.yaml").write_text(yaml.safe_dump(recipe))
    assert found(validate_inputs(recipe=load_recipe(tmp_path / "code.yaml"))) == [("missing_field", "line 2", None)]
    # SQuAD-style records: with parent fields and a list index
    squad = {"data": [{"title": "T", "paragraphs": [{"context": "C", "qas": [
        {"question": "Q1", "answers": [{"text": "A1"}]},
        {"question": "Q2", "answers": []},
    ]}]}]}
    (tmp_path / "squad.json").write_text(json.dumps(squad))
    fields = {"prompt": "question", "completion": "answers.0.text"}
    recipe = {"task": "sft", "inputs": [{"path": "squad.json", "records": "data[*].paragraphs[*].qas[*]", "fields": fields}],
              "tokenizer": {"path": str(DATA / "tokenizers" / "gpt2")}, "template": "prompt_completion"}
    (tmp_path / "squad.yaml").write_text(yaml.safe_dump(recipe))
    report = validate_inputs(recipe=load_recipe(tmp_path / "squad.yaml"))
    assert [(f.kind, f.line) for f in report.findings] == [("missing_field", "record 1 (data[0].paragraphs[0].qas[1])")]
    assert report.findings[0].message == "missing field 'answers.0.text' ('answers' has 0 items)"
    assert report.stats["records"] == 2


def test_a_blank_system_field_passes_validate_as_run_takes_it(tmp_path):
    ok = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    write_jsonl(tmp_path / "c.jsonl", [{"messages": ok, "system": ""}, {"messages": ok, "system": "Be brief."}])
    recipe = {"task": "sft", "inputs": [{"path": "c.jsonl"}], "tokenizer": {"path": str(DATA / "tokenizers" / "phi-3-mini")}, "template": "chat"}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    report = validate_inputs(recipe=load_recipe(tmp_path / "r.yaml"))
    assert report.ok, report.to_text()
