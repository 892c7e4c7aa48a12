"""The README's headline figure in CI: benchmarks/task_proof.py at CI size, its figures asserted.

A 2-layer, d_model 64 model trained on demo-sft answers >= 90% of the held-out prompts exactly (and
stops); the same model trained on planted broken masks (prompt as target, stop token not trained)
answers <= 10%. The script is the one place the budget lives; the README quotes its output.
"""

from __future__ import annotations

import importlib.util
import json

from .conftest import REPO


def load_script():
    spec = importlib.util.spec_from_file_location("task_proof", REPO / "benchmarks" / "task_proof.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_sized_task_proof_learns_the_demo_and_planted_masks_do_not(tmp_path):
    script = load_script()
    figures = script.main(["--work", str(tmp_path), "--json", str(tmp_path / "figures.json")])
    assert json.loads((tmp_path / "figures.json").read_text()) == figures
    good, broken = figures["runs"]["good"], [figures["runs"][how] for how in script.PLANTS]
    assert good["examples"] == 624 and good["steps"] == script.CONFIG["steps"]
    assert good["accuracy"] >= script.ACCURACY and good["passed"], good
    assert good["stopped_on_time"] >= 0.95 and all(good["checks"][name] for name in ("task", "targets", "learned"))
    for run in broken:
        assert run["accuracy"] <= script.BROKEN_MAX and run["passed"] is False, run
        # not a near miss: a model whose data never trains the answer or its stop runs on past it
        assert run["never_stopped"] >= 0.9 and run["checks"]["task"] is False
        # the data proof names the fault without training (tests/test_proofs.py plants each fault alone)
        assert run["checks"]["targets"] is False and run["targets_found"] == 512 and run["targets_masks_equal"] == 0
        # the code checks pass on bad data too: they prove the trainer, not the data
        assert run["checks"]["collator"] and run["checks"]["attention"] and run["checks"]["heldout"]
    prompt, no_stop = figures["runs"]["prompt"], figures["runs"]["no_stop"]
    # learned: the answers' loss did not fall where the prompts were trained instead
    assert prompt["checks"]["learned"] is False and prompt["learned_target_drop"] < 0.25
    assert no_stop["targets_first_mismatch"]["reference_trains_not_data"] == "<|endoftext|>"
