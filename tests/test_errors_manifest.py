"""A manifest that breaks its schema is a :class:`~dataprep.errors.ManifestError`: an InputError
that carries every issue (each with its key path), as RecipeError carries a recipe's; the CLI
shows it as ``error:`` and ``fix:``, and ``validate`` reports each key as a finding."""

from __future__ import annotations

import json
import pickle

import pytest

from dataprep.build.run import run
from dataprep.cli import main
from dataprep.dataset.manifest import Manifest
from dataprep.errors import InputError, Issue, ManifestError
from dataprep.recipe import load_recipe

from .conftest import RECIPES

BAD_KEYS = ["counts.tokens", "splits.train.shards[0].sha"]  # a wrong type, and a key no record knows
REBUILD = "rebuild the dataset with `dataprep run RECIPE --out PATH --overwrite`"


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """demo-sft's dataset with its manifest broken at both BAD_KEYS."""
    out = tmp_path_factory.mktemp("errors") / "sft"
    run(load_recipe(RECIPES / "demo-sft.yaml"), out, workers=1, progress=False)
    d = json.loads((out / "manifest.json").read_text())
    d["counts"]["tokens"] = "many"
    d["splits"]["train"]["shards"][0]["sha"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(d, indent=2))
    return out


def invoke(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_two_wrong_keys_are_one_manifest_error_naming_both(broken):
    with pytest.raises(ManifestError) as caught:
        Manifest.load(broken)
    err = caught.value
    assert isinstance(err, InputError)  # every `except InputError` that reads a dataset still catches it
    assert [i.where for i in err.issues] == BAD_KEYS
    assert err.issues[0].message == "'many' is not of type 'integer'"
    assert err.issues[1].message.startswith("unknown key 'sha'")
    assert err.path == str(broken / "manifest.json") and err.location == ", ".join(BAD_KEYS)
    assert err.explain() == (f"{err.path}, {err.location}: the manifest does not match manifest.schema.json:"
                             + "".join(f"\n  - {i}" for i in err.issues), REBUILD)
    again = pickle.loads(pickle.dumps(err))  # crosses worker processes whole
    assert (type(again), again.issues, str(again)) == (ManifestError, err.issues, str(err))


def test_manifest_error_without_a_fix_falls_back_to_its_default():
    err = ManifestError("the manifest built", [Issue("rows.length", "0 is less than the minimum of 1")])
    assert err.location == "rows.length" and err.explain()[1] == ManifestError.default_fix == REBUILD


@pytest.mark.parametrize("command", ["inspect", "report"])
def test_the_cli_says_error_and_fix(broken, capsys, command):
    code, out, err = invoke([command, str(broken)], capsys)
    lines = err.splitlines()
    assert code == 1 and out == ""
    assert lines[0] == f"error: {broken / 'manifest.json'}, {', '.join(BAD_KEYS)}: the manifest does not match manifest.schema.json:"
    assert lines[1] == "  - counts.tokens: 'many' is not of type 'integer'"
    assert lines[2].startswith("  - splits.train.shards[0].sha: unknown key 'sha'")
    assert lines[3:] == [f"  fix: {REBUILD}"]


def test_validate_reports_each_key_as_a_finding(broken, capsys):
    """``validate`` never raises for a bad dataset: each key is a manifest_schema finding (exit 1)."""
    code, out, _ = invoke(["validate", str(broken), "--format", "json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["counts"] == {"manifest_schema": 2}
    assert [(f["kind"], f["path"]) for f in report["findings"]] == [("manifest_schema", key) for key in BAD_KEYS]
