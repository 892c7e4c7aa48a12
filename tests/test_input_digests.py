"""The inputs' digests (dataprep/read/digests.py): hashed once before a run reads them; after it,
a local file is hashed again only when its size or modification time moved."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataprep.errors import InputError
from dataprep.read import digests as digests_module
from dataprep.read import resolve_inputs
from dataprep.read.digests import InputDigests
from dataprep.recipe import InputSpec


def inputs(tmp_path: Path, n: int = 3):
    for i in range(n):
        (tmp_path / f"{i}.jsonl").write_text(f'{{"text": "document {i}"}}\n')
    return resolve_inputs([InputSpec(path=str(tmp_path / f"{i}.jsonl")) for i in range(n)], base_dir=tmp_path)


def counting(monkeypatch) -> list[str]:
    hashed: list[str] = []
    original = digests_module.file_sha256
    monkeypatch.setattr(digests_module, "file_sha256", lambda f, **kw: hashed.append(f.location) or original(f, **kw))
    return hashed


def test_untouched_inputs_are_hashed_once(tmp_path, monkeypatch):
    files = inputs(tmp_path)
    hashed = counting(monkeypatch)
    sources = InputDigests(files)
    sources.check_unchanged()
    assert sorted(hashed) == sorted(f.location for f in files)  # the check after reading hashed none again


def test_a_touched_input_is_hashed_again_and_passes_when_its_bytes_are_the_same(tmp_path, monkeypatch):
    files = inputs(tmp_path)
    hashed = counting(monkeypatch)
    sources = InputDigests(files)
    sources.digests  # hashed (on its thread) before the touch
    stat = files[1].path.stat()
    os.utime(files[1].path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    sources.check_unchanged()
    assert hashed.count(files[1].location) == 2 and len(hashed) == len(files) + 1


@pytest.mark.parametrize("keep_time", [False, True], ids=["time-moves", "time-put-back"])
def test_a_rewritten_input_fails_the_check(tmp_path, keep_time):
    files = inputs(tmp_path)
    sources = InputDigests(files)
    sources.digests  # hashed (on its thread) before the change
    stat = files[0].path.stat()
    files[0].path.write_text('{"text": "document X"}\n')  # the same size
    if keep_time:  # a writer that puts the time back is the one change the stamp cannot see
        os.utime(files[0].path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        sources.check_unchanged()
        return
    with pytest.raises(InputError, match="its content changed"):
        sources.check_unchanged()


def test_an_input_written_while_it_is_first_hashed_fails_the_check(tmp_path, monkeypatch):
    """The first hashing runs beside the run's start: a file changed before it hashed has the new
    bytes' digest, which a second hashing would match (the run may have read the old ones)."""
    files = inputs(tmp_path, 1)
    original = digests_module.file_sha256

    def rewrite_then_hash(file, **kw):  # the run may have read the old bytes: the digest is the new ones'
        stat = file.path.stat()
        file.path.write_text('{"text": "document X"}\n')  # the same size, the time moves
        os.utime(file.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        return original(file, **kw)

    monkeypatch.setattr(digests_module, "file_sha256", rewrite_then_hash)
    sources = InputDigests(files)
    sources.digests  # the first hashing (and its rewrite) done
    monkeypatch.setattr(digests_module, "file_sha256", original)
    with pytest.raises(InputError, match="written to while it was hashed"):
        sources.check_unchanged()


def test_a_cancelled_hashing_stops_within_a_block():
    """A failed run stops the first hashing: it reads one more block at most, then raises."""
    import io
    import threading

    from dataprep import storage

    stop = threading.Event()

    class Reads(io.BytesIO):
        count = 0

        def read(self, n=-1):
            self.count += 1
            stop.set()  # cancelled while the first block was being read
            return super().read(n)

    data = Reads(b"x" * (10 << 20))
    with pytest.raises(storage.HashingStopped):
        storage.sha256_stream(data, block=1 << 20, stop=stop)
    assert data.count == 1  # of ten blocks
    assert storage.sha256_stream(io.BytesIO(b"abc"), stop=threading.Event()) == storage.sha256_stream(io.BytesIO(b"abc"))


@pytest.mark.parametrize("fails", [True, False])
def test_a_run_that_fails_cancels_the_hashing_of_its_inputs(tmp_path, monkeypatch, fails):
    """On a 6 GB input a tokenizer error took 31 s to end the process (the hashing went on); with
    the cancel, 0.7 s. A run that succeeds needs every digest and cancels nothing."""
    from dataprep.build import run as run_module
    from dataprep.errors import TokenizerError
    from dataprep.recipe import recipe_from_dict

    from .conftest import DATA

    cancelled = []

    class Recorded(InputDigests):
        def cancel(self):
            cancelled.append(True)
            super().cancel()

    monkeypatch.setattr(run_module, "InputDigests", Recorded)
    (tmp_path / "docs.jsonl").write_text("".join(f'{{"text": "document number {i} of many"}}\n' for i in range(50)))
    tokenizer = tmp_path / "missing.json" if fails else DATA / "tokenizers" / "gpt2"
    recipe = recipe_from_dict({"task": "pretrain", "inputs": [{"path": str(tmp_path / "docs.jsonl")}],
                               "tokenizer": {"path": str(tokenizer)}, "packing": {"mode": "wrap", "seq_len": 8},
                               "split": {"validation": 0.0}}, base_dir=tmp_path)
    if fails:
        with pytest.raises(TokenizerError):
            run_module.run(recipe, tmp_path / "out", workers=1)
    else:
        run_module.run(recipe, tmp_path / "out", workers=1)
    assert cancelled == ([True] if fails else [])
