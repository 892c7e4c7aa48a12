"""Every shipped recipe (``recipes/*.yaml``) still works, through the CLI a user types.

- ``dataprep check-recipe`` passes on each, and prints the recipe with every value the file sets
  unchanged (defaults added around them); each file opens with a comment naming itself and how to
  run it.
- The small ones run end to end (``dataprep run ... --workers 1`` into a tmp dir) and
  ``dataprep validate`` finds nothing (about 30 s in all on 2 cores).
- The heavy ones are checked with ``check-recipe`` only, each for the reason in ``CHECK_ONLY``; they
  are built and validated elsewhere on a prefix of their inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dataprep.cli import cli
from dataprep.recipe import load_recipe

from .conftest import RECIPES, require_shared

SHIPPED = sorted(RECIPES.glob("*.yaml"))
END_TO_END = {  # seconds to run + validate with --workers 1 on the 2-core VM, 2026-12-04
    "demo-pretrain",  # 1.4
    "demo-sft",  # 6.8
    "fewshot-demo",  # 2.7
    "code-pretrain",  # 0.8
    "classification",  # 2.4
    "dialogsum",  # 1.6
    "alpaca",  # 3.4
    "span-c4",  # 3.4
    "mlm-wikitext",  # 2.3
    "chat",  # 2.3
    "preference-synthetic",  # 6
    "preference-hh-sample",  # 1
    "two-stage-pretrain",  # 3
}
CHECK_ONLY = {
    "chat-tools": "12 s end to end; tests/test_validate_recheck.py builds its first 60 records, tests/test_sft_chat.py all 300",
    "chat-gpt-oss": "21 s end to end; tests/test_validate_recheck.py builds its first 60 records",
    "preference-dpo-en-demo": "12 s end to end; tests/test_preference.py builds and validates it",
    "preference-kto-en-demo": "30 s end to end (Gemma 3's tokenizer); tests/test_preference.py builds and validates it",
    "two-stage-sft": "reads the tokenizer two-stage-pretrain trains (out/two-stage-pretrain/tokenizer); tests/test_two_stage.py builds it",
    "two-stage-fewshot": "reads the tokenizer two-stage-pretrain trains; tests/test_two_stage.py builds it",
    "continued-pretrain-code": "tests/test_mixture.py builds it with 1 and 2 workers and on Ray, and checks its mixture",
}


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def needs_shared(recipe: Path) -> None:
    """A recipe reading ../shared fails with the fix when the shared data is missing (conftest's rule)."""
    if "../shared/" in recipe.read_text(encoding="utf-8"):
        require_shared()


def not_kept(given, resolved, path: str = "$") -> list[str]:
    """Where ``resolved`` drops or changes a value ``given`` sets (``resolved`` may add keys)."""
    if isinstance(given, dict):
        if not isinstance(resolved, dict):
            return [f"{path}: {resolved!r}"]
        return [m for k, v in given.items() for m in (not_kept(v, resolved[k], f"{path}.{k}") if k in resolved else [f"{path}.{k}: absent"])]
    if isinstance(given, list):
        if not isinstance(resolved, list) or len(given) != len(resolved):
            return [f"{path}: {resolved!r}"]
        return [m for i, (a, b) in enumerate(zip(given, resolved)) for m in not_kept(a, b, f"{path}[{i}]")]
    return [] if given == resolved else [f"{path}: {given!r} -> {resolved!r}"]


def test_every_shipped_recipe_is_run_or_checked():
    names = {path.stem for path in SHIPPED}
    assert names == END_TO_END | set(CHECK_ONLY) and not END_TO_END & set(CHECK_ONLY)
    assert len(names) == 20


@pytest.mark.parametrize("recipe", SHIPPED, ids=lambda p: p.stem)
def test_check_recipe_passes_and_keeps_every_value(recipe):
    needs_shared(recipe)
    result = invoke("check-recipe", recipe)
    assert result.exit_code == 0, result.output
    given, resolved = yaml.safe_load(recipe.read_text(encoding="utf-8")), yaml.safe_load(result.output)
    assert resolved["name"] == recipe.stem == given["name"]
    assert not_kept(given, resolved) == []
    first = recipe.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# {recipe.stem}: ")  # what it builds ...
    assert f"dataprep run recipes/{recipe.name} --out " in recipe.read_text(encoding="utf-8")  # ... and how to run it


@pytest.mark.parametrize("name", sorted(END_TO_END))
def test_small_recipe_runs_and_validates(name, tmp_path):
    recipe = RECIPES / f"{name}.yaml"
    needs_shared(recipe)
    out = tmp_path / name
    result = invoke("run", recipe, "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe_hash"] == load_recipe(recipe).hash
    counts = manifest["counts"]
    assert counts["records_read"] == counts["records_written"] + sum(counts["dropped"].values())
    checked = invoke("validate", out)
    assert checked.exit_code == 0, checked.output
    assert checked.output.splitlines()[0] == f"{out}: ok, no findings"


def test_a_date_stays_text_in_the_file_and_in_set(tmp_path):
    """YAML would read ``2026-03-04`` as a date, which the schema (a string) rejects: recipes keep it as text."""
    path = tmp_path / "chat.yaml"
    path.write_text("task: sft\ntemplate: chat\ninputs: [{path: data.jsonl}]\ntokenizer: {path: tok}\n"
                    "chat: {date: 2026-03-04}\n")
    assert load_recipe(path).resolved["chat"]["date"] == "2026-03-04"
    assert load_recipe(path, ["chat.date=2025-12-31"]).resolved["chat"]["date"] == "2025-12-31"
    assert load_recipe(path, ["packing.seq_len=4096"]).resolved["packing"]["seq_len"] == 4096  # other values still typed
