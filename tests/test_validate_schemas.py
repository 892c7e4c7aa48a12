"""The schemas in schemas/: valid JSON Schema 2020-12, self-contained, their examples valid,
and the row schemas in step with the Arrow schemas the writers use."""

from __future__ import annotations

import json

import jsonschema
import pyarrow as pa
import pytest

from dataprep import columns as C
from dataprep.tasks.sft import task as sft
from dataprep.build.run import run
from dataprep.recipe import load_recipe
from dataprep.schema import iter_issues, load_schema, schema_dir, schema_names

from .conftest import RECIPES

NAMES = schema_names()


def test_every_format_has_a_schema():
    assert set(NAMES) >= {
        "recipe", "manifest", "pretrain-row", "sft-row", "text-record", "instruction-record",
        "prompt-completion-record", "chat-record", "classification-record",
    }


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_and_self_contained(name):
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith(f"/{name}.schema.json")
    assert schema.get("title") and schema.get("description")
    refs = [line for line in (schema_dir() / f"{name}.schema.json").read_text().splitlines() if '"$ref"' in line]
    assert all('"#/' in line for line in refs), "a schema must not point into another file"
    for example in schema.get("examples", []):
        assert list(iter_issues(example, name)) == []


def _arrow_types(name: str) -> dict[str, str]:
    return {k: v["x-arrow-type"] for k, v in load_schema(name)["properties"].items()}


def test_pretrain_row_schema_is_the_writers_schema():
    assert _arrow_types("pretrain-row") == {f.name: str(f.type) for f in C.PRETRAIN_ROW_SCHEMA}
    assert load_schema("pretrain-row")["required"] == C.PRETRAIN_ROW_SCHEMA.names


@pytest.mark.parametrize("overrides", [[], ["packing.mode=bfd"]])
@pytest.mark.parametrize("name", ["demo-sft", "classification"])
def test_sft_row_schema_covers_the_writers_schema(name, overrides):
    recipe = load_recipe(RECIPES / f"{name}.yaml", overrides)
    written = sft.row_schema(recipe)
    types = _arrow_types("sft-row")
    assert {f.name: str(f.type) for f in written} == {f.name: types[f.name] for f in written}
    assert set(load_schema("sft-row")["required"]) <= set(written.names)


def test_rows_and_manifest_of_built_datasets_match_their_schemas(tmp_path):
    for name, row_schema in (("demo-sft", "sft-row"), ("demo-pretrain", "pretrain-row")):
        out = tmp_path / name
        manifest = run(load_recipe(RECIPES / f"{name}.yaml"), out, workers=1, progress=False)
        assert list(iter_issues(json.loads((out / "manifest.json").read_text()), "manifest")) == []
        assert manifest["format"] == f"dataprep.{'sft' if name == 'demo-sft' else 'pretrain'}/2"
        shard = out / "train" / manifest["splits"]["train"]["shards"][0]["file"]
        rows = pa.ipc.open_stream(pa.memory_map(str(shard))).read_all().slice(0, 5).to_pylist()
        for row in rows:
            assert list(iter_issues(row, row_schema)) == []
