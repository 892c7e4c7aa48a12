"""The targets proof reads the dataset's source records; where they cannot be read it says so and skips."""

from __future__ import annotations

import json
import shutil

from dataprep.build.run import run
from dataprep.recipe import load_recipe
from dataprep.train import data_proofs
from dataprep.train.loader import ArrowRows, read_info

from .conftest import RECIPES


def test_sources_that_moved_skip_the_targets_proof_with_the_reason(tmp_path):
    run(load_recipe(RECIPES / "demo-sft.yaml"), tmp_path / "sft", workers=1)
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "sft", moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["run"]["recipe_dir"] = str(tmp_path / "elsewhere")  # the recipe folder is not on this machine
    (moved / "manifest.json").write_text(json.dumps(manifest))
    for path, passed in ((tmp_path / "sft", True), (moved, None)):
        info = read_info(path)
        index = data_proofs.index_examples({"train": ArrowRows(info.dataset, "train")})
        found, _ = data_proofs.targets_proof(info, index, decoder=info.dataset.tokenizer().tokenizer, limit=8)
        assert found["pass"] is passed
    assert found["skipped"].startswith("the source records cannot be read here (data/sft_tasks.jsonl: path does not exist")
