"""Operating-system faults become messages: a full disk, a read-only output, two runs on one
--out. Each prints `error: ... fix: ...` with no traceback, exits 1, and leaves nothing at --out."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dataprep.build import write
from dataprep.cli import main
from dataprep.errors import OutputError
from dataprep.build.outlock import OutputLock
from dataprep.build.run import run
from dataprep.recipe import recipe_from_dict

from .conftest import DATA, REPO

C4 = DATA / "corpora" / "c4_demo.jsonl"
GPT2 = DATA / "tokenizers" / "gpt2"
TOKENIZER = {"path": str(GPT2), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}


def recipe_file(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"task": "pretrain", "inputs": [{"path": str(C4)}], "tokenizer": TOKENIZER,
                                    "packing": {"seq_len": 256}, "output": {"chunk_records": 16, "shard_bytes": 60_000}}))
    return path


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_a_second_run_on_the_same_out_refuses_naming_the_first(tmp_path, capsys):
    holder = subprocess.Popen(  # another process holds the lock, as a running `dataprep run` does
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from dataprep.build.outlock import OutputLock; "
         "OutputLock(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)", str(tmp_path / "out")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = cli(["run", str(recipe_file(tmp_path)), "--out", str(tmp_path / "out")], capsys)
        assert code == 1 and f"is being written by another run (pid {holder.pid} on " in err
        assert "fix: wait for that run to finish" in err and "Traceback" not in err
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: its lock file is still there, and it blocks nothing.
    assert (tmp_path / "out.lock").exists()
    code, _, err = cli(["run", str(recipe_file(tmp_path)), "--out", str(tmp_path / "out"), "-q"], capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "manifest.json").is_file() and not (tmp_path / "out.lock").exists()


def test_the_lock_is_one_per_out_and_released(tmp_path):
    first = OutputLock(tmp_path / "out")
    with pytest.raises(OutputError, match=f"pid {os.getpid()}"):
        OutputLock(tmp_path / "out")
    OutputLock(tmp_path / "other").release()  # another --out is free
    first.release()
    OutputLock(tmp_path / "out").release()


class FullDisk:
    """A shard file on a disk with ``room`` bytes left: writes past it fail with ENOSPC."""

    def __init__(self, room: int):
        self.room = room

    def open(self, path, mode="rb", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if "w" not in mode and "+" not in mode:
            return handle
        disk = self
        write_ = handle.write

        class Handle:
            def write(self, data):
                disk.room -= len(data)
                if disk.room < 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                return write_(data)

            def __getattr__(self, name):
                return getattr(handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

        return Handle()


@pytest.mark.parametrize("checkpoints", [False, True])
def test_a_full_disk_is_an_error_with_a_fix(tmp_path, capsys, monkeypatch, checkpoints):
    monkeypatch.setattr(write, "open", FullDisk(room=150_000).open, raising=False)  # shards go through write.open
    args = ["run", str(recipe_file(tmp_path)), "--out", str(tmp_path / "out"), "-w", "1"]
    code, _, err = cli(args + (["--checkpoint-every", "0"] if checkpoints else []), capsys)
    assert code == 1 and "error: no space left on the disk of" in err and "fix: free space on that disk" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists() and not (tmp_path / "out.lock").exists()
    if checkpoints:  # its checkpoint is kept, and the run continues once there is room
        assert "continue it with --resume" in err and (tmp_path / "out.incomplete" / "checkpoint").is_dir()
        monkeypatch.undo()
        code, _, err = cli(args + ["--resume", "-q"], capsys)
        assert code == 0, err
        whole = tmp_path / "whole"
        run(recipe_from_dict(yaml.safe_load((tmp_path / "r.yaml").read_text()), base_dir=tmp_path), whole, workers=1)
        shards = sorted(p.relative_to(whole) for p in whole.rglob("*.arrow"))
        assert shards and all((whole / s).read_bytes() == (tmp_path / "out" / s).read_bytes() for s in shards)
    else:
        assert "nothing was left at" in err and not (tmp_path / "out.incomplete").exists()


def _mount(tmp_path: Path, options: str) -> Path:
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): the simulated disk tests cover it")
    return where


@pytest.fixture
def small_disk(tmp_path):
    where = _mount(tmp_path, "size=256k")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    where = _mount(tmp_path, "size=1m,ro")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs Linux and root")
def test_a_real_full_disk(tmp_path, small_disk, capsys):
    code, _, err = cli(["run", str(recipe_file(tmp_path)), "--out", str(small_disk / "out"), "-w", "1"], capsys)
    assert code == 1 and "no space left on the disk of" in err and "fix:" in err and "Traceback" not in err
    assert sorted(p.name for p in small_disk.iterdir()) == []  # nothing left: no out, no .incomplete, no lock


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs Linux and root")
def test_a_real_read_only_output(tmp_path, read_only_disk, capsys):
    code, _, err = cli(["run", str(recipe_file(tmp_path)), "--out", str(read_only_disk / "out")], capsys)
    assert code == 1 and "Read-only file system" in err and "fix: choose an --out on a writable filesystem" in err
    assert "Traceback" not in err


def test_a_forbidden_output_folder(tmp_path, capsys, monkeypatch):
    """As root, permissions do not stop a write; the error is raised where the lock is created."""
    real = os.open

    def forbidden(path, flags, *args):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, flags, *args)

    monkeypatch.setattr(os, "open", forbidden)
    code, _, err = cli(["run", str(recipe_file(tmp_path)), "--out", str(tmp_path / "out")], capsys)
    assert code == 1 and "Permission denied" in err and "a folder you may write to" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()
