"""End to end: recipe -> shards, checked against independent references on real tokenizers and corpora."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import ByteLevelBPETokenizer, Tokenizer

from dataprep import columns as C
from dataprep.errors import InputError, OutputError
from dataprep.build.run import run
from dataprep.recipe import recipe_from_dict
from dataprep.storage import sha256_file

from .conftest import DATA

GPT2 = DATA / "tokenizers" / "gpt2"
PHI3 = DATA / "tokenizers" / "phi-3-mini"
C4 = DATA / "corpora" / "c4_demo.jsonl"
XQUAD = DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl"

RAW = {"unicode": "none", "newlines": False, "strip_bom": False, "control_chars": False, "strip": False}


def make(tmp_path: Path, **sections) -> object:
    data = {"task": "pretrain", "inputs": [{"path": str(C4)}], "tokenizer": {"path": str(GPT2)}, "normalize": RAW}
    data.update(sections)
    return recipe_from_dict(data, base_dir=tmp_path)


def rows(out: Path, split: str) -> pa.Table:
    state = json.loads((out / split / "state.json").read_text())
    tables = [pa.ipc.open_stream(pa.memory_map(str(out / split / f["filename"]))).read_all() for f in state["_data_files"]]
    return pa.concat_tables(tables)


def flat(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).combine_chunks().flatten().to_numpy()


def c4_texts() -> list[str]:
    return [json.loads(line)["text"] for line in C4.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def gpt2_reference() -> ByteLevelBPETokenizer:
    return ByteLevelBPETokenizer(str(GPT2 / "vocab.json"), str(GPT2 / "merges.txt"))


def test_wrap_equals_concatenated_documents_gpt2(tmp_path, gpt2_reference):
    recipe = make(tmp_path, packing={"mode": "wrap", "seq_len": 512, "remainder": "drop"}, split={"validation": 0.0})
    manifest = run(recipe, tmp_path / "out", workers=1)
    texts = list(dict.fromkeys(t for t in c4_texts() if t))  # exact dedup keeps first occurrences, in order
    expected = np.concatenate([np.array(gpt2_reference.encode(t).ids + [50256], dtype=np.int32) for t in texts])
    table = rows(tmp_path / "out", "train")
    got = flat(table, C.INPUT_IDS)
    assert len(got) == (len(expected) // 512) * 512
    assert np.array_equal(got, expected[: len(got)])
    # every row is seq_len long and its pieces sum to it; piece ends are document ends or row ends
    lens = pa.compute.list_value_length(table.column(C.INPUT_IDS)).to_numpy()
    assert (lens == 512).all()
    piece_sums = [sum(s) for s in table.column(C.SEQ_LENS).to_pylist()]
    assert piece_sums == [512] * table.num_rows
    doc_ends = set(np.cumsum([len(gpt2_reference.encode(t).ids) + 1 for t in texts]).tolist())
    ends = np.cumsum(flat(table, C.SEQ_LENS))
    assert all(e in doc_ends or e % 512 == 0 for e in ends.tolist())
    counts = manifest["counts"]
    assert counts["records_read"] == 300
    assert counts["records_read"] == counts["records_written"] + sum(counts["dropped"].values())
    assert counts["records_written"] == len(texts)
    assert counts["tokens"] == len(got)
    assert counts["remainder_tokens_dropped"] == len(expected) - len(got)
    assert counts["rows"] == {"train": table.num_rows, "validation": 0}


def test_bfd_preserves_every_document_phi3_with_bos(tmp_path):
    reference = Tokenizer.from_file(str(PHI3 / "tokenizer.json"))
    texts = [json.loads(line)["text"] for line in XQUAD.read_text(encoding="utf-8").splitlines()][:600]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    recipe = recipe_from_dict(
        {
            "task": "pretrain",
            "inputs": [{"path": str(src)}],
            "tokenizer": {"path": str(PHI3), "add_bos": True},
            "normalize": RAW,
            "packing": {"mode": "bfd", "seq_len": 1024, "buffer_tokens": 20000},
            "split": {"validation": 0.2},
        },
        base_dir=tmp_path,
    )
    manifest = run(recipe, tmp_path / "out", workers=1)
    pieces = Counter()
    for split in C.SPLITS:
        table = rows(tmp_path / "out", split)
        for ids, seq_lens, num_pad in zip(*(table.column(c).to_pylist() for c in (C.INPUT_IDS, C.SEQ_LENS, C.NUM_PAD))):
            assert len(ids) == 1024 and sum(seq_lens) == 1024
            if num_pad:
                assert seq_lens[-1] == num_pad and ids[-num_pad:] == [32000] * num_pad
                seq_lens = seq_lens[:-1]
            start = 0
            for n in seq_lens:
                pieces[tuple(ids[start : start + n])] += 1
                start += n
    expected = Counter()
    for t in dict.fromkeys(texts):
        ids = [1] + reference.encode(t, add_special_tokens=False).ids + [32000]
        assert len(ids) <= 1024  # xquad paragraphs are short: none is split
        expected[tuple(ids)] += 1
    assert pieces == expected
    assert manifest["counts"]["documents"]["validation"] > 0
    assert manifest["tokenizer"]["special_ids"]["bos"] == 1


def test_identical_shards_for_any_worker_count(tmp_path):
    outs = {}
    for mode in ("wrap", "bfd"):
        for workers in (1, 2):
            recipe = make(
                tmp_path,
                packing={"mode": mode, "seq_len": 256, "buffer_tokens": 5000, "remainder": "pad"},
                split={"validation": 0.1},
                output={"chunk_records": 37, "shard_bytes": 40000},
            )
            out = tmp_path / f"{mode}-{workers}"
            manifest = run(recipe, out, workers=workers)
            outs[mode, workers] = {s: [sh["sha256"] for sh in manifest["splits"][s]["shards"]] for s in C.SPLITS}
        assert outs[mode, 1] == outs[mode, 2]
        assert len(outs[mode, 1]["train"]) > 1  # shard rolling happened
        for split in C.SPLITS:
            files = sorted((tmp_path / f"{mode}-1" / split).glob("*.arrow"))
            assert [sha256_file(f) for f in files] == outs[mode, 1][split]


def test_manifest_describes_the_files(tmp_path):
    manifest = run(make(tmp_path, packing={"seq_len": 128}, output={"shard_bytes": 20000}), tmp_path / "out", workers=1)
    out = tmp_path / "out"
    assert json.loads((out / C.MANIFEST_FILE).read_text()) == manifest
    assert manifest["recipe_hash"] and manifest["recipe"]["packing"]["seq_len"] == 128
    # what NFC meant for this run: another Python's Unicode may normalize unassigned code points otherwise
    assert list(manifest)[:3] == ["format", "dataprep_version", "unicode_version"]
    assert manifest["unicode_version"] == unicodedata.unidata_version
    c = manifest["counts"]  # documents and tokens written per input: after dedup, before the wrap remainder
    assert manifest["inputs"] == [
        {"path": str(C4), "format": "jsonl", "encoding": "utf-8", "bytes": C4.stat().st_size, "sha256": sha256_file(C4),
         "records_read": 300, "documents": c["records_written"], "dropped": {},
         "tokens": c["tokens"] + c["remainder_tokens_dropped"], "unknown_tokens": 0}
    ]
    tok = manifest["tokenizer"]
    assert tok["vocab_size"] == 50257 and tok["special_ids"]["eos"] == 50256
    assert {Path(f["path"]).name for f in tok["files"]} >= {"vocab.json", "merges.txt"}
    for split in C.SPLITS:
        shards = manifest["splits"][split]["shards"]
        table = rows(out, split)
        assert sum(s["rows"] for s in shards) == table.num_rows == manifest["counts"]["rows"][split]
        for shard in shards:
            path = out / split / shard["file"]
            assert path.stat().st_size == shard["bytes"] and sha256_file(path) == shard["sha256"]
            t = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
            assert t.num_rows == shard["rows"]
            assert len(flat(t, C.INPUT_IDS)) - sum(t.column(C.NUM_PAD).to_pylist()) == shard["tokens"]
    assert manifest["counts"]["documents"]["train"] + manifest["counts"]["documents"]["validation"] == manifest["counts"]["records_written"]


def test_loads_in_datasets_polars_and_torch(tmp_path):
    import datasets
    import polars as pl
    import torch

    run(make(tmp_path, packing={"seq_len": 64}, split={"validation": 0.1}), tmp_path / "out", workers=1)
    dd = datasets.load_from_disk(str(tmp_path / "out"))
    assert set(dd) == {"train", "validation"} and dd["train"].num_rows > 0
    assert dd["train"].features[C.INPUT_IDS].feature.dtype == "int32"
    batch = dd["train"].with_format("torch")[:4][C.INPUT_IDS]
    assert isinstance(batch, torch.Tensor) and batch.shape == (4, 64)
    shard = next((tmp_path / "out" / "train").glob("*.arrow"))
    frame = pl.read_ipc_stream(shard)
    assert frame.columns == [C.INPUT_IDS, C.SEQ_LENS, C.NUM_PAD]


def test_filters_and_drops_are_counted(tmp_path):
    src = tmp_path / "docs.jsonl"
    lines = ['{"text": "a fine document with words"}', '{"text": "   "}', '{"text": "short"}',
             '{"text": "a fine document with words"}', '{"text": 5}', "{oops", '{"body": "x"}']
    src.write_text("\n".join(lines) + "\n")
    recipe = make(
        tmp_path,
        inputs=[{"path": str(src)}],
        normalize={},
        filter={"min_chars": 6},
        on_error="skip",
        max_dropped_fraction=1,  # this test counts drops; the ceiling has its own tests
        packing={"seq_len": 8, "remainder": "pad"},
        split={"validation": 0.0},
    )
    manifest = run(recipe, tmp_path / "out", workers=1)
    counts = manifest["counts"]
    assert counts["records_read"] == 7
    assert counts["records_written"] == 1
    assert counts["dropped"] == {"duplicate": 1, "empty": 1, "too_short": 1, "non_string_field": 1, "malformed_json": 1, "missing_field": 1}
    assert manifest["inputs"][0]["records_read"] == 7 and manifest["inputs"][0]["dropped"] == counts["dropped"]


def test_bad_input_raises_with_file_and_line_and_leaves_nothing(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text('{"text": "ok"}\n{"text": "fine"}\n{"text": "x",}\n')
    with pytest.raises(InputError) as info:
        run(make(tmp_path, inputs=[{"path": str(src)}]), tmp_path / "out", workers=1)
    assert "docs.jsonl, line 3: malformed JSON" in str(info.value) and "on_error: skip" in str(info.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()


def test_output_is_atomic_and_overwrite_is_explicit(tmp_path):
    recipe = make(tmp_path, packing={"seq_len": 64})
    out = tmp_path / "out"
    run(recipe, out, workers=1)
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        run(recipe, out, workers=1)
    (out / "marker").write_text("old")
    run(recipe, out, workers=1, overwrite=True)
    assert not (out / "marker").exists() and (out / C.MANIFEST_FILE).is_file()
    assert not list(tmp_path.glob("*.incomplete"))
    plain = tmp_path / "mine"
    plain.mkdir()
    with pytest.raises(OutputError, match="is not a dataprep dataset"):
        run(recipe, plain, workers=1, overwrite=True)


def test_trained_tokenizer_is_saved_and_deterministic(tmp_path):
    from dataprep.text.tokenizer import TokenizerSpec, load_tokenizer

    hashes = []
    for workers in (1, 2):
        recipe = make(tmp_path, tokenizer={"train": {"vocab_size": 600}}, packing={"seq_len": 128})
        out = tmp_path / f"out{workers}"
        manifest = run(recipe, out, workers=workers)
        hashes.append((manifest["tokenizer"]["fingerprint"], [s["sha256"] for s in manifest["splits"]["train"]["shards"]]))
        loaded = load_tokenizer(TokenizerSpec(path=str(out / C.TOKENIZER_DIR)), base_dir=tmp_path)
        assert loaded.fingerprint == manifest["tokenizer"]["fingerprint"]
        assert loaded.vocab_size == manifest["tokenizer"]["vocab_size"] <= 600
        ids = flat(rows(out, "train"), C.INPUT_IDS)
        assert ids.max() < loaded.vocab_size
    assert hashes[0] == hashes[1]


def test_special_token_text_in_a_document_is_not_an_eos(tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"text": "before <|endoftext|> after"}) + "\n")
    recipe = make(tmp_path, inputs=[{"path": str(src)}], packing={"seq_len": 64, "remainder": "pad"}, split={"validation": 0.0})
    manifest = run(recipe, tmp_path / "out", workers=1)
    table = rows(tmp_path / "out", "train")
    ids = table.column(C.INPUT_IDS).to_pylist()[0]
    n = table.column(C.SEQ_LENS).to_pylist()[0][0]
    assert ids[: n].count(50256) == 1 and ids[n - 1] == 50256
    assert manifest["counts"]["pad_tokens"] == 64 - n


def test_txt_paragraphs_and_gz_inputs(tmp_path):
    import gzip

    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "a.txt").write_text("First paragraph.\nStill first.\n\nSecond paragraph.\n")
    with gzip.open(folder / "b.txt.gz", "wt") as fh:
        fh.write("Third paragraph.\n\n\nFourth.\n")
    recipe = make(tmp_path, inputs=[{"path": "books", "format": "txt", "txt_unit": "paragraph"}], packing={"seq_len": 16, "remainder": "pad"}, split={"validation": 0.0})
    manifest = run(recipe, tmp_path / "out", workers=1)
    assert manifest["counts"]["records_read"] == 4 and manifest["counts"]["records_written"] == 4
    assert [Path(i["path"]).name for i in manifest["inputs"]] == ["a.txt", "b.txt.gz"]


def test_chunks_are_bounded_by_bytes_and_output_does_not_change(tmp_path):
    """``output.chunk_bytes`` cuts chunks (memory), never the rows: the same rows for any bound (the
    shards' bytes differ only in where their record batches start, one batch per chunk)."""
    from dataprep.read.chunks import split_by_bytes

    batch = pa.RecordBatch.from_arrays([pa.array(["a" * 10, "b" * 30, None, "c" * 5, "d" * 50], pa.large_string()), pa.array(range(5))], names=["text", "line"])
    assert [p.column("line").to_pylist() for p in split_by_bytes(batch, 40)] == [[0, 1, 2], [3], [4]]  # 40, 5, 50 (alone)
    assert [p.num_rows for p in split_by_bytes(batch, 1000)] == [5] and [p.num_rows for p in split_by_bytes(batch, None)] == [5]
    base = {"task": "pretrain", "inputs": [{"path": str(C4)}], "tokenizer": {"path": str(GPT2)}, "packing": {"mode": "wrap", "seq_len": 128}}
    small = run(recipe_from_dict({**base, "output": {"chunk_bytes": 4096}}, base_dir=tmp_path), tmp_path / "small", workers=2)
    large = run(recipe_from_dict(base, base_dir=tmp_path), tmp_path / "large", workers=2)
    import datasets

    for split in C.SPLITS:
        assert datasets.load_from_disk(str(tmp_path / "small"))[split].data.table.equals(datasets.load_from_disk(str(tmp_path / "large"))[split].data.table)
    assert small["counts"] == large["counts"] and small["counts"]["rows"]["train"] > 1000
