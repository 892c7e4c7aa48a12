"""`dataprep validate`: exit status 0 clean, 1 findings, 2 usage errors; text and JSON reports."""

from __future__ import annotations

import json
import shutil

import pytest

from dataprep.cli import main
from dataprep.build.run import run
from dataprep.recipe import load_recipe

from .conftest import RECIPES


def invoke(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sft"
    run(load_recipe(RECIPES / "demo-sft.yaml"), out, workers=1, progress=False)
    return out


def test_clean_dataset_exits_0(dataset, capsys):
    code, out, _ = invoke(["validate", str(dataset)], capsys)
    assert code == 0
    assert out.startswith(f"{dataset}: ok, no findings") and "target_ratio" in out


def test_findings_exit_1_with_a_summary(dataset, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    shard = next((broken / "validation").glob("*.arrow"))
    shard.write_bytes(shard.read_bytes()[:-100])
    code, out, _ = invoke(["validate", str(broken)], capsys)
    assert code == 1
    assert f"validation/{shard.name}: shard_size: " in out and "summary: shard_rows 1, shard_size 1, shard_unreadable 1" in out
    code, out, _ = invoke(["validate", str(broken), "--format", "json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["counts"] == {"shard_rows": 1, "shard_size": 1, "shard_unreadable": 1}
    assert report["findings"][0] == {
        "kind": "shard_size",
        "message": report["findings"][0]["message"],
        "file": f"validation/{shard.name}",
        "split": "validation",
        "count": 1,
    }


def test_raw_inputs(tmp_path, capsys):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
    code, out, _ = invoke(["validate", str(path), "--as", "prompt-completion"], capsys)
    assert code == 1
    assert f"{path} line 2: missing_field: missing field 'completion' (keys present: prompt)" in out
    assert "expected: set `fields.completion.path:` to the field that holds `completion`" in out
    assert f"input {path}: 2 records read, dropped: missing_field 1" in out
    code, out, _ = invoke(["validate", "--recipe", str(RECIPES / "demo-sft.yaml"), "--format", "json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["stats"]["records"] == 6000 and report["stats"]["records_written"] == 6000
    assert report["inputs"] == [{"path": str(RECIPES / "data" / "sft_tasks.jsonl"), "records_read": 6000, "documents": 6000, "dropped": {}}]
    # the same file by URL: the finding names the URL
    code, out, _ = invoke(["validate", path.as_uri(), "--as", "prompt-completion"], capsys)
    assert code == 1 and f"{path.as_uri()} line 2: missing_field" in out
    code, _, err = invoke(["validate", (tmp_path / "nope.jsonl").as_uri(), "--as", "prompt-completion"], capsys)
    assert code == 1 and f"{(tmp_path / 'nope.jsonl').as_uri()}: does not exist" in err


def test_recheck_sources(dataset, capsys):
    code, out, _ = invoke(["validate", str(dataset), "--recheck-sources", "--sample", "30"], capsys)
    assert code == 0 and "recheck {sampled: 30}" in out


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give one DATASET folder"),
        (["--as", "chat", "--recipe", str(RECIPES / "chat.yaml")], "give one DATASET folder"),
        (["--recipe", str(RECIPES / "chat.yaml"), str(RECIPES / "chat.yaml")], "drop PATHS"),
        (["--as", "chat", str(RECIPES / "chat.yaml"), "--recheck-sources"], "apply to a dataset folder"),
        (["--as", "text", str(RECIPES / "chat.yaml"), "--field", "text"], "NAME=PATH"),
        (["--as", "novel", "x"], "Invalid value for '--as'"),
    ],
)
def test_usage_errors_exit_2(args, message, capsys):
    code, _, err = invoke(["validate", *args], capsys)
    assert code == 2 and message in err
