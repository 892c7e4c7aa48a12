"""`dataprep run --resume`: an interrupted run continues from its last checkpoint and writes the
shards (and manifest) an uninterrupted run writes, byte for byte; it refuses a changed recipe,
input or tokenizer."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dataprep.build import checkpoint, ordered, output_dir, write
from dataprep.errors import InputError, OutputError, ResumeError
from dataprep.build.run import run
from dataprep.recipe import load_recipe, recipe_from_dict

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
C4 = DATA / "corpora" / "c4_demo.jsonl"
GPT2 = DATA / "tokenizers" / "gpt2"
RECIPES = ROOT / "recipes"


def digests(folder: Path) -> dict[str, str]:
    """Every file of a dataset but its manifest, by content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def facts(folder: Path) -> dict:
    """The manifest without what differs between runs (time, workers, checkpoints)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("run")
    manifest.pop("created_unix", None)
    return manifest


def crash_at(monkeypatch, chunk: int, exc: BaseException) -> None:
    """Make the ordered stage raise ``exc`` when it is handed chunk number ``chunk`` (1-based)."""
    original, seen = ordered.OrderedStage.add, {"n": 0}

    def add(self, result):
        seen["n"] += 1
        if seen["n"] == chunk:
            raise exc
        return original(self, result)

    monkeypatch.setattr(ordered.OrderedStage, "add", add)


def pretrain(tmp_path: Path, **sections):
    data = {"task": "pretrain", "inputs": [{"path": str(C4)}],
            "tokenizer": {"path": str(GPT2), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
            "packing": {"seq_len": 256}, "output": {"chunk_records": 16, "shard_bytes": 60_000},
            "split": {"validation": 0.1}}
    data.update(sections)
    return recipe_from_dict(data, base_dir=tmp_path)


CASES = {
    "pretrain-wrap": lambda tmp: pretrain(tmp),
    "pretrain-bfd-dedup": lambda tmp: pretrain(tmp, packing={"seq_len": 256, "mode": "bfd"}),
    # segments (a chunk is ~8k tokens: one or two a segment); checkpoints only between segments
    "pretrain-wrap-segments": lambda tmp: pretrain(tmp, packing={"seq_len": 256, "segment_tokens": 4_000}),
    "pretrain-bfd-segments": lambda tmp: pretrain(tmp, packing={"seq_len": 256, "mode": "bfd", "segment_tokens": 4_000}),
    "sft": lambda tmp: load_recipe(RECIPES / "demo-sft.yaml", ["output.chunk_records=256", "output.shard_bytes=100000"]),
    "mlm": lambda tmp: load_recipe(RECIPES / "mlm-wikitext.yaml", ["output.chunk_records=64"]),
    "span": lambda tmp: load_recipe(RECIPES / "span-c4.yaml", ["output.chunk_records=16"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_interrupted_run_resumes_to_the_same_bytes(tmp_path, monkeypatch, case):
    recipe = CASES[case](tmp_path)
    run(recipe, tmp_path / "whole", workers=1)
    for at in (2, 5):  # an early and a later crash, each after several checkpoints
        out = tmp_path / f"cut{at}"
        with monkeypatch.context() as patch:
            crash_at(patch, at, KeyboardInterrupt())
            with pytest.raises(KeyboardInterrupt):
                run(recipe, out, workers=1, checkpoint_every=0)
        assert not out.exists() and (out.parent / f"{out.name}.incomplete" / "checkpoint" / "state.pkl").is_file()
        manifest = run(recipe, out, workers=2, resume=True)
        assert manifest["run"]["checkpoints"]["resumed"] is True
        assert digests(out) == digests(tmp_path / "whole"), f"crash at chunk {at}"
        assert facts(out) == facts(tmp_path / "whole")
        assert not (out / "checkpoint").exists() and not (tmp_path / f"{out.name}.lock").exists()


def test_a_crash_like_kill_9_leaves_files_past_the_checkpoint_and_resume_cuts_them_back(tmp_path, monkeypatch):
    """kill -9 runs no cleanup: the open shard and the dedup file may hold more than the last
    checkpoint names, and a crash inside a checkpoint leaves the previous one in force."""
    recipe = pretrain(tmp_path)
    run(recipe, tmp_path / "whole", workers=1)
    out = tmp_path / "out"
    saves = {"n": 0}
    original_save = checkpoint.Checkpoints.save

    def save(self, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 4:  # die inside the 4th checkpoint, after its seen.bin append, before its state.pkl
            original_write = write.write_bytes_atomic
            monkeypatch.setattr(checkpoint, "write_bytes_atomic", lambda *a: (_ for _ in ()).throw(SystemExit(137)))
            try:
                return original_save(self, *args, **kwargs)
            finally:
                monkeypatch.setattr(checkpoint, "write_bytes_atomic", original_write)
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(checkpoint.Checkpoints, "save", save)
    monkeypatch.setattr(output_dir.DatasetDir, "abort", lambda self, keep=False: self.lock.release())  # no cleanup at all
    with pytest.raises(SystemExit):
        run(recipe, out, workers=1, checkpoint_every=0)
    work = tmp_path / "out.incomplete"
    state = __import__("pickle").loads((work / "checkpoint" / "state.pkl").read_bytes())
    assert (work / "checkpoint" / "seen.bin").stat().st_size > state["seen"] * checkpoint.DIGEST  # past the checkpoint
    recorded = state["writers"]["train"]
    on_disk = sorted(p.name for p in (work / "train").glob("*.tmp"))
    assert on_disk[: len(recorded["shards"])] == recorded["shards"] and len(on_disk) > len(recorded["shards"])  # begun after
    open_shard = work / "train" / recorded["shards"][-1]
    assert open_shard.stat().st_size > recorded["open_bytes"]  # written past the checkpoint
    with open(open_shard, "ab") as fh:  # and some garbage, as a torn write would leave
        fh.write(b"\0" * 1000)
    monkeypatch.undo()
    run(recipe, out, workers=1, resume=True)
    assert digests(out) == digests(tmp_path / "whole")


def test_resume_refuses_what_would_change_the_shards(tmp_path, monkeypatch):
    src = tmp_path / "docs.jsonl"
    shutil.copy(C4, src)
    shutil.copytree(GPT2, tmp_path / "gpt2")
    tokenizer = {"path": str(tmp_path / "gpt2"), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    recipe = pretrain(tmp_path, inputs=[{"path": str(src)}], tokenizer=tokenizer)
    with monkeypatch.context() as patch:
        crash_at(patch, 3, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            run(recipe, tmp_path / "out", workers=1, checkpoint_every=0)
    with pytest.raises(ResumeError, match="the recipe changed"):
        run(pretrain(tmp_path, inputs=[{"path": str(src)}], tokenizer=tokenizer, packing={"seq_len": 128}),
            tmp_path / "out", resume=True)
    merges = tmp_path / "gpt2" / "merges.txt"
    kept = merges.read_text(encoding="utf-8")
    merges.write_text(kept.rsplit("\n", 2)[0] + "\n", encoding="utf-8")  # the same path, one merge fewer
    with pytest.raises(ResumeError, match="tokenizer changed"):
        run(recipe, tmp_path / "out", resume=True)
    merges.write_text(kept, encoding="utf-8")
    with open(src, "a") as fh:
        fh.write('{"text": "one more document"}\n')
    with pytest.raises(ResumeError, match=r"docs.jsonl changed \(size or SHA-256\)"):
        run(recipe, tmp_path / "out", resume=True)
    assert (tmp_path / "out.incomplete" / "checkpoint" / "state.pkl").is_file()  # a refusal keeps it
    run(recipe, tmp_path / "out", workers=1)  # without --resume: starts over (with a warning)
    with pytest.raises(OutputError, match="finished dataset: there is nothing to resume"):
        run(recipe, tmp_path / "out", resume=True)
    with pytest.raises(OutputError, match="nothing to resume"):
        run(recipe, tmp_path / "elsewhere", resume=True)


def test_a_data_error_is_not_resumable_and_leaves_nothing(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": f"document number {i} " * 20}) + "\n" for i in range(200)) + "{broken\n")
    with pytest.raises(InputError, match="line 201"):
        run(pretrain(tmp_path, inputs=[{"path": str(src)}]), tmp_path / "out", workers=1, checkpoint_every=0)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()
    assert not (tmp_path / "out.lock").exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dataprep", *args]


def _wait_for(path: Path, *, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def killed_recipe(tmp_path_factory) -> tuple[Path, Path]:
    """The recipe the killed runs run, and its output run whole by `dataprep run` (once for both
    signals: the tests only read it)."""
    folder = tmp_path_factory.mktemp("killed")
    recipe = folder / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "pretrain", "inputs": [{"path": str(C4)}, {"path": str(DATA / "corpora" / "wiki_demo.txt"), "txt_unit": "line"}],
        "tokenizer": {"path": str(GPT2), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
        "packing": {"seq_len": 128, "mode": "bfd"}, "output": {"chunk_records": 2, "shard_bytes": 100_000},
    }))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(_cli("-q", "run", str(recipe), "--out", str(folder / "whole"), "-w", "1"), check=True, env=env)
    return recipe, folder / "whole"


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_cli_run_resumes(tmp_path, how, killed_recipe):
    """The real thing: a `dataprep run` process killed (kill -9) or terminated (SIGTERM) once it has
    checkpointed, then `--resume`; and the same recipe run whole."""
    recipe, whole = killed_recipe
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_cli("run", str(recipe), "--out", str(tmp_path / "out"), "-w", "1", "--checkpoint-every", "0"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "out.incomplete" / "checkpoint" / "state.pkl", proc=proc)
    time.sleep(0.05)  # mid-work: with gigatoken encoding, a run of this recipe is done within a second
    proc.send_signal(getattr(signal, how))
    _, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:  # pragma: no cover - the run finished before the signal: nothing to test
        pytest.skip("the run finished before it was killed")
    assert proc.returncode == (-signal.SIGKILL if how == "SIGKILL" else 143), stderr
    if how == "SIGTERM":
        assert "terminated" in stderr and "Traceback" not in stderr and "--resume" in stderr
    assert not (tmp_path / "out").exists()
    done = subprocess.run(_cli("run", str(recipe), "--out", str(tmp_path / "out"), "--resume"), env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert digests(tmp_path / "out") == digests(whole)
    assert facts(tmp_path / "out") == facts(whole)
