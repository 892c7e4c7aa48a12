"""The local engine: results in input order for every mode, a bounded window, errors raised in order."""

from __future__ import annotations

import itertools
import threading
from collections import Counter

import pytest

from dataprep.read.chunks import ChunkReader
from dataprep.build.engine import ordered_map, run_chunks
from dataprep.build.read_ahead import READ_AHEAD, read_ahead
from dataprep.errors import ConfigError, InputError

MODES = [("serial", 1), ("threads", 3), ("processes", 2)]


def make_fn(offset: int):
    """Setup: runs once per worker (module level, so spawned processes can import it)."""

    def fn(item: int) -> int:
        if item == 13:
            raise InputError("in.jsonl", f"line {item}", "unlucky")
        return item * item + offset

    return fn


@pytest.mark.parametrize(("mode", "workers"), MODES)
def test_results_come_back_in_input_order(mode, workers):
    out = ordered_map(make_fn, (7,), range(12), workers=workers, mode="threads" if mode == "serial" else mode)
    assert list(out) == [i * i + 7 for i in range(12)]


@pytest.mark.parametrize(("mode", "workers"), MODES)
def test_items_are_read_lazily_within_the_window(mode, workers):
    pulled = itertools.count()

    def items():
        for i in range(1000):
            next(pulled)
            yield i

    out = ordered_map(make_fn, (0,), items(), workers=workers, window=4, mode="threads" if mode == "serial" else mode)
    assert next(out) == 0
    # at most the window, the read-ahead queue (workers > 1) and the item being handed on were read
    assert next(pulled) <= 4 + (READ_AHEAD if workers > 1 else 0) + 1
    out.close()


@pytest.mark.parametrize(("mode", "workers"), MODES)
def test_the_first_error_in_input_order_is_raised(mode, workers):
    out = ordered_map(make_fn, (0,), range(20), workers=workers, mode="threads" if mode == "serial" else mode)
    with pytest.raises(InputError, match="line 13: unlucky"):
        list(out)


def test_unknown_engine_and_mode_name_the_choices():
    with pytest.raises(ConfigError, match=r"\['local', 'ray'\]"):
        run_chunks(ChunkReader(None), (make_fn, (0,)), [], read_drops=Counter(), counts=Counter(), progress=None,
                   workers=1, engine="spark")
    with pytest.raises(ConfigError, match=r"\['threads', 'processes'\]"):
        ordered_map(make_fn, (0,), [], workers=1, mode="fibers")


BARE_SCRIPT = """\
import functools
from dataprep.build import engine
print("top level ran", flush=True)
print(list(engine.ordered_map(functools.partial, (pow, 2), range(8), workers=2, mode="processes")), flush=True)
"""


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_worker_processes_do_not_run_a_script_without_a_main_guard_again(tmp_path, how):
    """Spawned workers never import the parent's ``__main__``: a script without the guard runs
    its top level once (with plain spawn every worker re-ran it and the pool respawned them forever)."""
    import subprocess
    import sys

    script = tmp_path / "bare.py"
    script.write_text(BARE_SCRIPT, encoding="utf-8")
    args, stdin = ([sys.executable, str(script)], None) if how == "file" else ([sys.executable, "-"], BARE_SCRIPT)
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["top level ran", str([2**i for i in range(8)])]


def test_read_ahead_yields_every_item_in_order_from_another_thread():
    threads = set()

    def items():
        for i in range(50):
            threads.add(threading.get_ident())
            yield i

    assert list(read_ahead(items(), 2)) == list(range(50))
    assert threads and threading.get_ident() not in threads


def test_read_ahead_raises_a_producer_error_after_the_items_before_it():
    def items():
        yield from range(3)
        raise InputError("f.jsonl", "line 4", "broken", "fix it")

    got = []
    with pytest.raises(InputError, match="line 4: broken"):
        for item in read_ahead(items(), 2):
            got.append(item)
    assert got == [0, 1, 2]


def test_read_ahead_closed_early_stops_its_thread_and_closes_the_source():
    closed = threading.Event()
    pulled = itertools.count()
    producer = []

    def items():
        producer.append(threading.current_thread())
        try:
            for i in range(10_000):
                next(pulled)
                yield i
        finally:
            closed.set()

    out = read_ahead(items(), 2)
    assert next(out) == 0
    out.close()  # returns once the producer has stopped: the source is closed by then
    assert closed.is_set()
    assert next(pulled) < 10  # it stopped reading, far from the end
    assert not producer[0].is_alive()


def _report_parallel():
    from dataprep.text.encode_parallel import parallel_here

    return lambda item: parallel_here()


def test_chunk_threads_encode_serially_and_a_serial_run_keeps_the_engines_pool(monkeypatch):
    """Several chunk threads each handing gigatoken a batch for its pool on every core oversubscribe
    the cores; one worker keeps gigatoken's own choice (None)."""
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    assert set(ordered_map(_report_parallel, (), range(8), workers=2, mode="threads")) == {False}
    assert set(ordered_map(_report_parallel, (), range(8), workers=1, mode="threads")) == {None}


def _report_pid_slowly(marker: str, parent: int):
    import os
    import time
    from pathlib import Path

    def fn(item):
        time.sleep(0.02)  # a chunk's work
        if os.getpid() != parent:
            Path(marker).touch()  # a child has worked a chunk
        return os.getpid()

    return fn


def test_processes_mode_works_chunks_here_while_its_child_starts(tmp_path):
    """workers=2: one spawned child beside this process, which works chunks itself until the child
    has started (its imports and set-up), then shares them with it."""
    import os
    import time

    marker = tmp_path / "child-worked"

    def items():  # until the child has worked a chunk (at most a minute), then a few more
        deadline, i = time.monotonic() + 60, 0
        while not marker.exists() and time.monotonic() < deadline:
            yield i
            i += 1
        yield from range(i, i + 4)

    ran = list(ordered_map(_report_pid_slowly, (str(marker), os.getpid()), items(), workers=2, mode="processes"))
    assert ran[0] == os.getpid()  # the child was not ready yet
    assert len(set(ran)) == 2  # this process and exactly one child


def test_worker_processes_that_cannot_start_are_said_while_this_process_works_every_chunk(monkeypatch, caplog):
    import time

    from dataprep.build import worker_pool

    def no_pool(*args, **kwargs):
        time.sleep(0.2)  # after the run's few chunks have run here
        raise OSError("cannot spawn")

    monkeypatch.setattr(worker_pool, "ProcessPoolExecutor", no_pool)
    with caplog.at_level("WARNING", logger="dataprep.engine"):
        assert list(ordered_map(make_fn, (1,), range(3), workers=2, mode="processes")) == [1, 2, 5]
    assert "could not start (cannot spawn)" in caplog.text


def test_worker_processes_that_cannot_start_fail_a_run_that_waits_for_them(monkeypatch):
    import time

    from dataprep.build import worker_pool

    def no_pool(*args, **kwargs):
        raise OSError("cannot spawn")

    monkeypatch.setattr(worker_pool, "ProcessPoolExecutor", no_pool)

    def items():  # slow enough that the loop sees the failure
        for i in range(50):
            time.sleep(0.01)
            yield i

    with pytest.raises(OSError, match="cannot spawn"):
        list(ordered_map(make_fn, (0,), items(), workers=2, mode="processes"))


def _report_tokenizers_env():
    import os

    def fn(item):
        return os.getpid(), os.environ.get("TOKENIZERS_PARALLELISM")

    return fn


def test_this_process_encodes_its_own_chunks_serially_beside_its_children(monkeypatch):
    """In the processes mode this process works chunks beside the children, which hold the other
    cores: tokenizers' Rust pool must not run on every core for them (tokenizers reads
    TOKENIZERS_PARALLELISM at each call); the variable is as it was afterwards."""
    import os

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    ran = list(ordered_map(_report_tokenizers_env, (), range(6), workers=2, mode="processes"))
    here = [env for pid, env in ran if pid == os.getpid()]
    assert here and set(here) == {"false"}  # the first chunks run here while the child starts
    assert {env for pid, env in ran if pid != os.getpid()} <= {"false"}  # a child is serial for good
    assert "TOKENIZERS_PARALLELISM" not in os.environ
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    list(ordered_map(_report_tokenizers_env, (), range(3), workers=2, mode="processes"))
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
