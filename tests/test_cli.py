"""The CLI: every command documented with an example; errors as messages, never tracebacks."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from dataprep.cli import OS_FIX, cli, main
from dataprep.errors import ConfigError, EngineError, OutputError, RecipeError, TemplateError, TokenizerError

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


# --- every failure a user can cause: `error: ...` and `fix: ...`, exit status 1, no traceback ---------

BYTE_TOKENIZER = RECIPES / "data" / "byte_tokenizer"
TINY_CORPUS = RECIPES / "data" / "tiny_corpus.jsonl"


def _recipe(tmp_path, **changes) -> str:
    """A small pretraining recipe (the byte tokenizer: nothing to train), with ``changes`` applied."""
    recipe = {"task": "pretrain", "inputs": [{"path": str(TINY_CORPUS)}], "tokenizer": {"path": str(BYTE_TOKENIZER)}}
    recipe.update(changes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _error(code: int, stderr: str) -> tuple[str, str]:
    """The message and the fix of a failed command's stderr, which must hold nothing else of note."""
    assert code == 1, stderr
    assert "Traceback" not in stderr and stderr.count("error: ") == 1 and stderr.count("fix: ") == 1, stderr
    message, _, fix = stderr[stderr.index("error: ") + len("error: "):].partition("\n  fix: ")
    assert fix.endswith("\n") and "\n" not in fix.rstrip("\n"), stderr  # the fix is the last line
    return message, fix.rstrip("\n")


def test_recipe_problems_say_what_and_fix(tmp_path, capsys):
    message, fix = _error(*invoke(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")], capsys)[::2])
    assert message == f"{tmp_path / 'nope.yaml'}: recipe has 1 problem(s):\n  - cannot read the recipe: No such file or directory"
    assert fix == RecipeError.default_fix
    recipe = _recipe(tmp_path)
    for setting, said in [
        ("packing.seq_len", "--set packing.seq_len: expected KEY=VALUE, e.g. --set packing.seq_len=4096"),
        ("packing.seq_len=abc", "packing.seq_len: 'abc' is not of type 'integer'"),
        ("packing=[1", "--set packing=[1: cannot parse the value '[1'"),
        ("pakcing.seq_len=64", "pakcing: unknown key 'pakcing'"),
    ]:
        for command in (["check-recipe", recipe], ["run", recipe, "--out", str(tmp_path / "o")]):
            message, fix = _error(*invoke([*command, "--set", setting], capsys)[::2])
            assert message.startswith(f"{recipe}: recipe has 1 problem(s):\n  - {said}") and fix == RecipeError.default_fix
    assert not (tmp_path / "o").exists()


def test_input_tokenizer_and_template_problems_say_what_and_fix(tmp_path, capsys):
    out = str(tmp_path / "o")
    message, fix = _error(*invoke(["run", _recipe(tmp_path, inputs=[{"path": "missing.jsonl"}]), "--out", out], capsys)[::2])
    assert message == f"missing.jsonl: path does not exist (resolved to {tmp_path / 'missing.jsonl'})"
    assert fix == "check the path; relative paths are resolved against the recipe's folder"  # InputError's own fix
    message, fix = _error(*invoke(["run", _recipe(tmp_path, tokenizer={"path": str(tmp_path / "tok")}), "--out", out], capsys)[::2])
    assert message.startswith(f"{tmp_path / 'tok'}: no such file or folder; `tokenizer.path` must name ")
    assert fix == TokenizerError.default_fix
    sft = _recipe(tmp_path, task="sft", inputs=[{"path": str(RECIPES / "data" / "sft_tasks.jsonl")}], template="alpacca")
    message, fix = _error(*invoke(["run", sft, "--out", out, "-w", "1"], capsys)[::2])
    assert message.startswith("unknown template 'alpacca' (did you mean 'alpaca'?); built-in templates are ")
    assert fix == TemplateError.default_fix
    assert not (tmp_path / "o").exists()


def test_option_problems_say_what_and_fix(tmp_path, capsys):
    message, fix = _error(*invoke(["run", _recipe(tmp_path), "--out", str(tmp_path / "o"), "--address", "auto"], capsys)[::2])
    assert message == "--address names a Ray cluster, but the engine is local" and fix == "add --engine ray, or leave out --address"
    sft = _recipe(tmp_path, task="sft", inputs=[{"path": str(RECIPES / "data" / "sft_tasks.jsonl")}], template="prompt_completion",
                  max_length=64, packing={"mode": "bfd", "seq_len": 32})
    message, fix = _error(*invoke(["run", sft, "--out", str(tmp_path / "o"), "-w", "1"], capsys)[::2])
    assert message.startswith("max_length 64 is longer than packing.seq_len 32: ") and fix == ConfigError.default_fix
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    message, fix = _error(*invoke(["run", _recipe(tmp_path), "--out", str(tmp_path / "taken")], capsys)[::2])
    assert message == f"{tmp_path / 'taken'} already exists; pass --overwrite to replace it, or choose another --out"
    assert fix == OutputError.default_fix and (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_training_setting_problems_say_what_and_fix(tmp_path, capsys):
    """Settings are checked before the dataset is read, so no dataset is needed here."""
    nowhere = str(tmp_path / "nowhere")
    message, fix = _error(*invoke(["train", nowhere, "--set", "d_model=65", "--set", "n_heads=2"], capsys)[::2])
    assert message.startswith("training settings d_model=65 and n_heads=2 do not fit") and fix.startswith("--set d_model=64")
    message, _ = _error(*invoke(["train", nowhere, "--set", "steps=abc"], capsys)[::2])
    assert "steps" in message and "must be int" in message
    message, _ = _error(*invoke(["train", nowhere, "--set", "stpes=10"], capsys)[::2])
    assert message.startswith("unknown training setting 'stpes'") and "'steps'" in message


@pytest.mark.parametrize("command", ["inspect", "report", "train"])
def test_a_folder_that_is_not_a_dataset_says_what_and_fix(tmp_path, capsys, command):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    extra = ["--out", str(tmp_path / "run")] if command == "train" else []
    message, fix = _error(*invoke([command, str(folder), *extra], capsys)[::2])
    assert message == f"{folder}: not a dataprep dataset (no manifest.json)"
    assert fix == "build it with `dataprep run RECIPE --out PATH`"
    (folder / "manifest.json").write_text("garbage")
    message, fix = _error(*invoke([command, str(folder), *extra], capsys)[::2])
    assert message.startswith(f"{folder / 'manifest.json'}: cannot read the manifest (") and fix == "rebuild the dataset"


def test_an_unreachable_ray_cluster_says_what_and_fix(tmp_path, capsys):
    pytest.importorskip("ray")
    out = str(tmp_path / "o")
    message, fix = _error(*invoke(["run", _recipe(tmp_path), "--out", out, "--engine", "ray", "--address", "127.0.0.1:1"], capsys)[::2])
    assert message.startswith("cannot reach the Ray cluster at 127.0.0.1:1 (") and fix == EngineError.default_fix


def test_an_os_error_on_a_path_says_what_and_fix(monkeypatch, capsys):
    """Any OSError that reaches the CLI (a path it could not read or write) is a message, not a traceback."""
    import dataprep.schema

    def refuse(name):
        raise PermissionError(13, "Permission denied", "/etc/schemas/recipe.json")

    monkeypatch.setattr(dataprep.schema, "load_schema", refuse)
    message, fix = _error(*invoke(["schema", "recipe"], capsys)[::2])
    assert message == "/etc/schemas/recipe.json: Permission denied (PermissionError)" and fix == OS_FIX


def test_errors_as_json_lines(tmp_path, capsys):
    code, _, stderr = invoke(["--log-format", "json", "run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")], capsys)
    line = json.loads(stderr.strip().splitlines()[-1])
    assert code == 1 and line == {
        "level": "error", "error": "RecipeError", "fix": RecipeError.default_fix,
        "message": f"{tmp_path / 'nope.yaml'}: recipe has 1 problem(s):\n  - cannot read the recipe: No such file or directory",
    }
    code, _, stderr = invoke(["--log-format", "json", "run", _recipe(tmp_path, inputs=[{"path": "missing.jsonl"}]), "--out", str(tmp_path / "o")], capsys)
    line = json.loads(stderr.strip().splitlines()[-1])
    assert code == 1 and line["error"] == "InputError" and line["message"].startswith("missing.jsonl: path does not exist")
    assert line["fix"] == "check the path; relative paths are resolved against the recipe's folder"



def test_only_the_process_entry_point_freezes_the_collector(monkeypatch, capsys):
    """main() with no argv is the process's own command line and freezes the cycle collector for
    a fast exit; called in process with argv (tests, a user's script) it must not: frozen objects
    are never collected, and the caller goes on."""
    import gc

    before = gc.get_freeze_count()
    code, _, _ = invoke(["schema", "recipe"], capsys)
    assert code == 0 and gc.get_freeze_count() == before
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr("sys.argv", ["dataprep", "schema", "recipe"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0 and frozen == [True]
