"""Recipes: schema check with every issue and its path, did-you-mean, defaults, overrides, hashing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dataprep.errors import RecipeError
from dataprep.recipe import apply_override, load_recipe, recipe_from_dict
from dataprep.schema import iter_issues, load_schema, schema_names, with_defaults

from .conftest import RECIPES

MINIMAL = {"task": "pretrain", "inputs": [{"path": "a.txt"}], "tokenizer": {"path": "tok.json"}}


def write(tmp_path: Path, data: object, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def test_every_shipped_recipe_is_valid():
    recipes = sorted(RECIPES.glob("*.yaml"))
    assert recipes, "recipes/ has no YAML"
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.base_dir == RECIPES
        first_line = path.read_text(encoding="utf-8").splitlines()[0]
        assert first_line.startswith("# "), f"{path.name} must open with a comment saying what it builds"


def test_defaults_come_from_the_schema(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    schema = load_schema("recipe")["$defs"]
    assert recipe.packing.seq_len == schema["packing"]["properties"]["seq_len"]["default"] == 2048
    assert recipe.packing.mode == "wrap"
    assert recipe.filter.dedup == "exact"
    assert recipe.normalize.unicode == "NFC"
    assert recipe.inputs[0].format == "auto" and recipe.inputs[0].text_field == "text"
    assert recipe.tokenizer.add_eos is True and recipe.tokenizer.add_bos is False
    assert recipe.on_error == "raise"
    # the resolved dict is complete: every default is written out
    assert recipe.resolved["packing"]["remainder"] == "drop"
    assert recipe.base_dir == tmp_path.resolve()


def test_all_problems_reported_at_once_with_paths(tmp_path):
    bad = {
        "task": "pretrain",
        "inputs": [{"path": "a.txt", "fromat": "txt"}],
        "tokenizer": {"path": "t.json"},
        "packing": {"seq_len": 0, "mode": "wrapp", "sequence_len": 5},
        "splitt": {},
    }
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, bad))
    text = str(info.value)
    assert "r.yaml" in text and "5 problem(s)" in text
    assert "inputs[0].fromat: unknown key 'fromat'; did you mean 'format'?" in text
    assert "packing.seq_len: 0 is less than the minimum of 2" in text
    assert "packing.mode: 'wrapp' is not one of 'wrap', 'bfd'" in text
    assert "packing.sequence_len: unknown key 'sequence_len'; did you mean 'seq_len'?" in text
    assert "splitt: unknown key 'splitt'; did you mean 'split'?" in text


def test_tokenizer_needs_exactly_one_of_path_or_train(tmp_path):
    data = dict(MINIMAL, tokenizer={"add_eos": True})
    with pytest.raises(RecipeError, match=r"tokenizer: set exactly one of 'path' or 'train'"):
        load_recipe(write(tmp_path, data))
    data = dict(MINIMAL, tokenizer={"path": "x", "train": {"vocab_size": 500}})
    with pytest.raises(RecipeError, match=r"tokenizer: set exactly one of 'path' or 'train'"):
        load_recipe(write(tmp_path, data))


def test_missing_required_keys(tmp_path):
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, {"task": "pretrain"}))
    assert "'inputs' is required" in str(info.value)
    assert "'tokenizer' is required" in str(info.value)


def test_invalid_yaml_names_line(tmp_path):
    path = write(tmp_path, "task: pretrain\ninputs: [\n  - a\n")
    with pytest.raises(RecipeError, match=r"(?s)r\.yaml: .*line \d+, column \d+: invalid YAML"):
        load_recipe(path)


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="a recipe is a mapping of keys, got list"):
        load_recipe(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(RecipeError, match="cannot read the recipe"):
        load_recipe(tmp_path / "nope.yaml")


def test_overrides(tmp_path):
    path = write(tmp_path, MINIMAL)
    recipe = load_recipe(path, ["packing.seq_len=4096", "packing.mode=bfd", "inputs.0.path=b.jsonl", "split.validation=0.5"])
    assert recipe.packing.seq_len == 4096 and isinstance(recipe.packing.seq_len, int)
    assert recipe.packing.mode == "bfd"
    assert recipe.inputs[0].path == "b.jsonl"
    assert recipe.split.validation == 0.5
    # overrides are validated like the file
    with pytest.raises(RecipeError, match=r"packing.seq_len: 'long' is not of type 'integer'"):
        load_recipe(path, ["packing.seq_len=long"])
    with pytest.raises(RecipeError, match=r"--set seq_len: expected KEY=VALUE"):
        load_recipe(path, ["seq_len"])
    with pytest.raises(RecipeError, match=r"inputs.3: list index '3' is out of range \(the list has 1 items\)"):
        load_recipe(path, ["inputs.3.path=x"])


def test_apply_override_creates_sections():
    data: dict = {}
    apply_override(data, "packing.seq_len=64")
    assert data == {"packing": {"seq_len": 64}}
    with pytest.raises(ValueError, match="packing.seq_len is a int, not a mapping"):
        apply_override(data, "packing.seq_len.x=1")


def test_hash_is_stable_and_sensitive(tmp_path):
    a = recipe_from_dict(dict(MINIMAL), base_dir=tmp_path)
    b = recipe_from_dict(dict(MINIMAL), base_dir=tmp_path)
    c = recipe_from_dict(dict(MINIMAL), base_dir=tmp_path, overrides=["packing.seq_len=100"])
    assert a.hash == b.hash and len(a.hash) == 64
    assert a.hash != c.hash


def test_schema_helpers():
    assert "recipe" in schema_names()
    assert list(iter_issues(dict(MINIMAL), "recipe")) == []
    filled = with_defaults({"packing": {}}, load_schema("recipe"))
    assert filled["packing"]["seq_len"] == 2048 and filled["split"]["validation"] == 0.01


def test_errors_pickle_across_processes():
    import pickle

    from dataprep.errors import InputError, Issue

    err = InputError("a.jsonl", "line 3", "malformed JSON", "repair it")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.location == "line 3" and back.fix == "repair it"
    rec = RecipeError("r.yaml", [Issue("packing.seq_len", "too small")])
    assert str(pickle.loads(pickle.dumps(rec))) == str(rec)
