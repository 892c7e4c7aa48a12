"""Worker processes begun before their set-up is known (dataprep.build.worker_pool)."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import pytest

from dataprep.build.engine import ordered_map
from dataprep.build import worker_pool
from dataprep.build.worker_pool import WorkerPool
from dataprep.recipe import load_recipe

from .conftest import REPO


def scaled(factor: int):
    def fn(item: int) -> tuple[int, int]:
        time.sleep(0.01)  # a chunk's work: the child's answer to the run's ping comes while this process works one
        return item * factor, os.getpid()

    return fn


def dies_in_a_child(parent: int):
    def fn(item: int) -> int:
        if os.getpid() != parent and item >= 3:
            os._exit(137)  # as the kernel's OOM killer ends a process: no exception, no goodbye
        return item

    return fn


def refuse(reason: str):
    raise ValueError(reason)


def note_warm_up(marker: str) -> None:
    Path(marker).touch()


def test_a_pool_begun_before_its_set_up_works_what_it_is_told_later(tmp_path):
    marker = tmp_path / "warmed"
    with WorkerPool(1, warm=(functools.partial(note_warm_up, str(marker)),)) as pool:
        pool.starting.result()
        assert pool.ping().result(timeout=60) is None and marker.exists()  # warmed before any set-up was given
        results = list(ordered_map(scaled, (3,), range(40), workers=2, mode="processes", pool=pool))
        assert [value for value, _ in results] == [i * 3 for i in range(40)]
        assert {pid for _, pid in results} - {os.getpid()}  # the child worked chunks with the set-up given late
        folder = pool._folder
        assert os.listdir(folder)  # the set-up, pickled once, named by every task
    assert not os.path.exists(folder)  # removed when the pool closes


def test_a_set_up_that_fails_in_the_children_is_raised_with_their_first_chunk():
    with WorkerPool(1) as pool:
        pool.set_up(refuse, ("no tokenizer here",))
        pool.starting.result()
        with pytest.raises(ValueError, match="no tokenizer here"):
            pool.submit(1).result(timeout=60)
        assert pool.ping().result(timeout=60) is None  # answered: the child is there, its set-up failed


def test_a_pool_of_the_wrong_size_is_refused():
    with WorkerPool(2) as pool:
        with pytest.raises(ValueError, match="a pool of 2 worker processes for 2 workers"):
            list(ordered_map(scaled, (1,), range(3), workers=2, mode="processes", pool=pool))


@pytest.mark.parametrize(("recipe", "workers", "begun"), [
    ("demo-sft.yaml", 2, True),  # fine-tuning works chunks in processes
    ("demo-sft.yaml", 1, False),  # one worker: this process alone
    ("demo-pretrain.yaml", 2, False),  # pretraining's chunk work is on threads
])
def test_a_run_begins_its_worker_processes_before_it_loads_the_tokenizer(tmp_path, monkeypatch, recipe, workers, begun):
    from dataprep.build import run as run_module

    events = []
    made, load = run_module.WorkerPool, run_module._tokenizer

    class Recorded(made):
        def __init__(self, size, warm=()):
            events.append(("pool", size))
            super().__init__(size, warm)

    def loaded(*args, **kwargs):
        events.append(("tokenizer",))
        return load(*args, **kwargs)

    monkeypatch.setattr(run_module, "WorkerPool", Recorded)
    monkeypatch.setattr(run_module, "_tokenizer", loaded)
    manifest = run_module.run(load_recipe(REPO / "recipes" / recipe), tmp_path / "out", workers=workers)
    assert manifest["counts"]["records_written"] > 0
    assert events == ([("pool", 1), ("tokenizer",)] if begun else [("tokenizer",)])


def test_a_child_that_dies_fails_the_run_instead_of_hanging_it():
    """multiprocessing.Pool started a new child and left the dead one's chunk to be waited for
    forever; the executor breaks, and the run says what happened and what to do."""
    from dataprep.errors import EngineError

    def items():  # slow enough that the child, once started, takes chunks
        for i in range(400):
            time.sleep(0.02)
            yield i

    with pytest.raises(EngineError, match="a worker process died while it worked chunks") as caught:
        list(ordered_map(dies_in_a_child, (os.getpid(),), items(), workers=2, mode="processes"))
    assert "lower --workers" in str(caught.value) and "--resume" in str(caught.value)


def test_set_up_folders_of_processes_that_are_gone_are_swept(tmp_path):
    """A run killed with SIGKILL leaves its set-up folder (the pickled tokenizer); the next pool removes it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(done.stdout)  # a process that has ended
    stale = tmp_path / f"{worker_pool._PREFIX}{gone}-abc"
    mine = tmp_path / f"{worker_pool._PREFIX}{os.getpid()}-def"
    other = tmp_path / "dataprep-workers-notapid"
    recent = tmp_path / f"{worker_pool._PREFIX}{gone}-ghi"  # gone, or only out of sight: young, so kept
    for folder in (stale, mine, other, recent):
        folder.mkdir()
        (folder / "setup-0.pickle").write_bytes(b"x")
        if folder is not recent:
            hours_ago = os.stat(folder).st_mtime - 2 * 3600
            os.utime(folder, (hours_ago, hours_ago))
    worker_pool._sweep(str(tmp_path))
    assert not stale.exists() and mine.exists() and other.exists() and recent.exists()
