"""Inputs and outputs as filesystem URLs (pyarrow's file://, fsspec's memory://): the same
shards as local paths, streamed reads, uploads with the manifest last, clear errors."""

from __future__ import annotations

import gzip
import hashlib
import json

import fsspec
import pytest
import zstandard

from dataprep import storage
from dataprep.errors import ConfigError, InputError, OutputError
from dataprep.build.run import run
from dataprep.recipe import recipe_from_dict

from .conftest import DATA

C4 = DATA / "corpora" / "c4_demo.jsonl"
GPT2 = DATA / "tokenizers" / "gpt2"


def recipe(tmp_path, *paths: str):
    return recipe_from_dict(
        {
            "task": "pretrain",
            "inputs": [{"path": p} for p in paths],
            "tokenizer": {"path": str(GPT2)},
            "packing": {"mode": "wrap", "seq_len": 256},
            "split": {"validation": 0.1},
            "output": {"chunk_records": 50, "shard_bytes": 60000},
        },
        base_dir=tmp_path,
    )


def digests(manifest: dict) -> dict:
    return {split: [s["sha256"] for s in entry["shards"]] for split, entry in manifest["splits"].items()}


@pytest.fixture
def corpus(tmp_path):
    """c4_demo split into a .jsonl.zst, a .jsonl.gz and a plain .jsonl under nested folders."""
    lines = C4.read_bytes().splitlines(keepends=True)
    root = tmp_path / "corpus"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"".join(lines[:120])))
    (root / "b" / "c.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[120:240])))
    (root / "b" / "deep" / "d.jsonl").write_bytes(b"".join(lines[240:]))
    (root / "b" / ".hidden.jsonl").write_text('{"text": "never read"}\n')
    return root


def test_file_urls_give_the_shards_local_paths_give(tmp_path, corpus):
    local = run(recipe(tmp_path, str(corpus)), tmp_path / "local", workers=1)
    out = (tmp_path / "remote").as_uri()
    remote = run(recipe(tmp_path, corpus.as_uri()), out, workers=1)
    assert digests(remote) == digests(local) and len(digests(local)["train"]) > 1
    assert remote["counts"] == local["counts"] and remote["counts"]["records_read"] == len(C4.read_bytes().splitlines())
    assert [i["path"] for i in remote["inputs"]] == [(corpus / n).as_uri() for n in ("a.jsonl.zst", "b/c.jsonl.gz", "b/deep/d.jsonl")]
    assert [i["sha256"] for i in remote["inputs"]] == [i["sha256"] for i in local["inputs"]]
    assert [i["bytes"] for i in remote["inputs"]] == [i["bytes"] for i in local["inputs"]]
    written = tmp_path / "remote"
    assert json.loads((written / "manifest.json").read_text())["splits"] == remote["splits"]
    assert not list(tmp_path.glob("remote*.incomplete"))


@pytest.mark.parametrize(
    "pattern, names",
    [
        ("*.jsonl.zst", ["a.jsonl.zst"]),
        ("*/*.jsonl*", ["b/c.jsonl.gz"]),  # `*` stays inside one folder
        ("**/*.jsonl", ["b/deep/d.jsonl"]),
        ("**/*.jsonl*", ["a.jsonl.zst", "b/c.jsonl.gz", "b/deep/d.jsonl"]),  # hidden names skipped
    ],
)
def test_url_globs_match_as_local_globs_do(tmp_path, corpus, pattern, names):
    from dataprep.read import resolve_inputs

    url_files = resolve_inputs(recipe(tmp_path, corpus.as_uri() + "/" + pattern).inputs, base_dir=tmp_path)
    local_files = resolve_inputs(recipe(tmp_path, str(corpus / pattern)).inputs, base_dir=tmp_path)
    assert [f.url for f in url_files] == [(corpus / n).as_uri() for n in names]
    assert [f.path.name for f in local_files] == [f.path.name for f in url_files]
    assert [(f.format, f.compression) for f in local_files] == [(f.format, f.compression) for f in url_files]


def test_fsspec_only_scheme_round_trips(tmp_path):
    """memory:// is fsspec's, not pyarrow's: read through it and upload to it."""
    mem = fsspec.filesystem("memory")
    mem.pipe("/dp-test/in/c4.jsonl", C4.read_bytes())
    try:
        local = run(recipe(tmp_path, str(C4)), tmp_path / "local", workers=1)
        remote = run(recipe(tmp_path, "memory://dp-test/in/*.jsonl"), "memory://dp-test/out", workers=1)
        assert digests(remote) == digests(local)
        uploaded = sorted(p.split("/dp-test/out/", 1)[1] for p in mem.find("/dp-test/out"))
        assert uploaded == sorted(
            ["dataset_dict.json", "manifest.json"]
            + [f"{split}/{s['file']}" for split, e in local["splits"].items() for s in e["shards"]]
            + [f"{split}/{name}" for split in local["splits"] for name in ("dataset_info.json", "state.json")]
            + [f"tokenizer/{name}" for name in ("merges.txt", "vocab.json")]  # GPT-2's two files, copied
        )
        assert json.loads(mem.cat("/dp-test/out/manifest.json")) == remote
        with pytest.raises(OutputError, match="already exists; pass --overwrite"):
            run(recipe(tmp_path, str(C4)), "memory://dp-test/out", workers=1)
        again = run(recipe(tmp_path, str(C4)), "memory://dp-test/out", workers=1, overwrite=True)
        assert digests(again) == digests(local)
        mem.pipe("/dp-test/notours/keep.txt", b"x")
        with pytest.raises(OutputError, match="not a dataprep dataset .*refusing to delete"):
            run(recipe(tmp_path, str(C4)), "memory://dp-test/notours", workers=1, overwrite=True)
        assert mem.cat("/dp-test/notours/keep.txt") == b"x"
    finally:
        mem.rm("/dp-test", recursive=True)


def test_two_readers_of_one_memory_file_each_read_all_of_it():
    """fsspec's memory filesystem gives every opener one shared file object: the input digest thread
    and the reader, opened side by side, moved each other's position (CI saw a memory input's
    SHA-256 differ at the end of a run). Each open must read the file whole, on its own."""
    data = bytes(range(256)) * (9 << 12)  # 9 MiB: more than one 4 MiB block
    mem = fsspec.filesystem("memory")
    mem.pipe("/dp-test/two-readers.bin", data)
    try:
        url = "memory://dp-test/two-readers.bin"
        first = storage.open_input(url)
        head = first.read(5 << 20)
        second = storage.open_input(url)  # opening the shared object seeked it back to 0
        assert head + first.read() == data
        assert second.read() == data
        random = storage.open_random(url)
        random.seek(1000)
        assert storage.open_random(url).read() == data and random.read(10) == data[1000:1010]
        assert storage.sha256(url) == hashlib.sha256(data).hexdigest()
        with pytest.raises(InputError, match="memory://dp-test/gone.bin: cannot open"):
            storage.open_input("memory://dp-test/gone.bin")
    finally:
        mem.rm("/dp-test", recursive=True)


def test_url_errors_name_the_url_and_the_fix(tmp_path, corpus):
    with pytest.raises(ConfigError, match=r"nosuch://bucket/x\.jsonl: no filesystem for nosuch:// .*install the fsspec implementation"):
        run(recipe(tmp_path, "nosuch://bucket/x.jsonl"), tmp_path / "out")
    with pytest.raises(InputError, match="does not exist"):
        run(recipe(tmp_path, corpus.as_uri() + "/missing.jsonl"), tmp_path / "out")
    with pytest.raises(InputError, match="no input files match"):
        run(recipe(tmp_path, corpus.as_uri() + "/*.parquet"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_url_helpers():
    assert storage.is_url("s3://b/k") and storage.is_url("file:///x") and not storage.is_url("/x/y") and not storage.is_url("C:\\x")
