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
    monkeypatch.setattr(digests_module, "file_sha256", lambda f: hashed.append(f.location) or original(f))
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

    def rewrite_then_hash(file):  # the run may have read the old bytes: the digest is the new ones'
        stat = file.path.stat()
        file.path.write_text('{"text": "document X"}\n')  # the same size, the time moves
        os.utime(file.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        return original(file)

    monkeypatch.setattr(digests_module, "file_sha256", rewrite_then_hash)
    sources = InputDigests(files)
    sources.digests  # the first hashing (and its rewrite) done
    monkeypatch.setattr(digests_module, "file_sha256", original)
    with pytest.raises(InputError, match="written to while it was hashed"):
        sources.check_unchanged()
