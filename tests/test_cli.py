"""The CLI: every command documented with an example; errors as messages, never tracebacks."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from dataprep.cli import cli, main

from .conftest import DATA, RECIPES


def invoke(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_with_an_example(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"dataprep {name}" in result.output


def test_run_demo_recipe_with_override(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, _ = invoke(["run", str(RECIPES / "demo-pretrain.yaml"), "--out", str(out), "--set", "packing.seq_len=64", "-w", "1"], capsys)
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seq_len"] == 64 and manifest["recipe"]["packing"]["seq_len"] == 64
    assert f"wrote {out}" in stdout and "packing efficiency" in stdout
    code, _, stderr = invoke(["run", str(RECIPES / "demo-pretrain.yaml"), "--out", str(out)], capsys)
    assert code == 1 and "already exists; pass --overwrite" in stderr and "Traceback" not in stderr


def test_recipe_errors_are_listed(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"task": "pretrain", "inputs": [{"path": "x"}], "tokenizer": {"path": "t"}, "packing": {"seqlen": 5}}))
    code, _, stderr = invoke(["run", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    assert "error: " in stderr and "packing.seqlen: unknown key 'seqlen'; did you mean 'seq_len'?" in stderr
    assert "Traceback" not in stderr


def test_bad_record_message_names_file_line_and_fix(tmp_path, capsys):
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b'{"text": "fine"}\n{"text": "bad \xff byte"}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"task": "pretrain", "inputs": [{"path": "docs.jsonl"}], "tokenizer": {"path": str(DATA / "tokenizers" / "gpt2")}}))
    code, _, stderr = invoke(["run", str(recipe), "--out", str(tmp_path / "o"), "-w", "1"], capsys)
    assert code == 1
    assert "docs.jsonl, line 2: invalid UTF-8" in stderr and "fix:" in stderr and "Traceback" not in stderr
    code, _, stderr = invoke(["run", str(recipe), "--out", str(tmp_path / "o"), "-w", "1", "--set", "on_error=skip"], capsys)
    assert code == 1 and "1 of 2 records dropped (50.0%): invalid_utf8 1" in stderr and "max_dropped_fraction" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "o").exists()
    code, stdout, _ = invoke(["run", str(recipe), "--out", str(tmp_path / "o"), "-w", "1", "--set", "on_error=skip",
                              "--set", "max_dropped_fraction=0.5", "--set", "split.validation=0", "--set", "packing.remainder=pad"], capsys)
    assert code == 0 and stdout.startswith("dropped 1 of 2 records: invalid_utf8 1")


def test_check_recipe_prints_resolved_recipe(capsys):
    code, stdout, _ = invoke(["check-recipe", str(RECIPES / "demo-pretrain.yaml"), "--set", "packing.mode=bfd"], capsys)
    assert code == 0
    resolved = yaml.safe_load(stdout)
    assert resolved["packing"]["mode"] == "bfd" and resolved["packing"]["buffer_tokens"] == 4194304
    assert "# recipe_hash: " in stdout


def test_schema_command(capsys):
    code, stdout, _ = invoke(["schema", "recipe"], capsys)
    assert code == 0 and json.loads(stdout)["title"] == "dataprep recipe"
    code, _, stderr = invoke(["schema", "nope"], capsys)
    assert code == 1 and "available: " in stderr and "recipe" in stderr


def test_usage_error_exits_2(capsys):
    code, _, stderr = invoke(["run"], capsys)
    assert code == 2 and "Missing argument" in stderr
