"""The shard layout: record batches of a fixed number of rows, so shard bytes depend on the rows
alone (never on how the input was chunked), and shards roll between record batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dataprep import columns as C
from dataprep.build.run import run
from dataprep.recipe import load_recipe, recipe_from_dict
from dataprep.build.write import SplitWriter, batch_rows

from .conftest import DATA, RECIPES

C4 = DATA / "corpora" / "c4_demo.jsonl"
GPT2 = DATA / "tokenizers" / "gpt2"


def rows_batch(first: int, n: int, seq_len: int = 8, pad_last: bool = False) -> pa.RecordBatch:
    """``n`` rows of ``seq_len`` tokens: row r holds r*seq_len ... (r+1)*seq_len - 1."""
    ids = np.arange(first * seq_len, (first + n) * seq_len, dtype=np.int32)
    num_pad = np.zeros(n, dtype=np.int32)
    seq_lens = [[seq_len]] * n
    if pad_last:
        num_pad[-1] = 3
        seq_lens[-1] = [seq_len - 3, 3]
    offsets = pa.array(np.arange(0, (n + 1) * seq_len, seq_len, dtype=np.int32))
    return pa.RecordBatch.from_arrays(
        [pa.ListArray.from_arrays(offsets, pa.array(ids)), pa.array(seq_lens, pa.list_(pa.int32())), pa.array(num_pad)],
        schema=C.PRETRAIN_ROW_SCHEMA,
    )


def write_split(folder, pieces: list[tuple[int, int]], *, rows: int, shard_bytes: int = 1 << 30) -> list[dict]:
    writer = SplitWriter(folder, C.PRETRAIN_ROW_SCHEMA, shard_bytes=shard_bytes, batch_rows=rows)
    for first, n in pieces:
        writer.write(rows_batch(first, n, pad_last=first + n == 23))
    return writer.close()


def record_batches(path) -> list[pa.RecordBatch]:
    return list(pa.ipc.open_stream(pa.memory_map(str(path))))


def test_record_batches_have_exactly_batch_rows_rows(tmp_path):
    shards = write_split(tmp_path / "a", [(0, 3), (3, 1), (4, 11), (15, 8)], rows=5)
    batches = record_batches(tmp_path / "a" / shards[0]["file"])
    assert [b.num_rows for b in batches] == [5, 5, 5, 5, 3]
    table = pa.Table.from_batches(batches)
    assert table.column(C.INPUT_IDS).to_pylist() == [list(range(r * 8, r * 8 + 8)) for r in range(23)]
    assert table.column(C.NUM_PAD).to_pylist() == [0] * 22 + [3]
    assert shards[0]["rows"] == 23 and shards[0]["tokens"] == 23 * 8 - 3  # content tokens: the pad piece is not counted


def test_shard_bytes_do_not_depend_on_the_incoming_batches(tmp_path):
    one = write_split(tmp_path / "one", [(0, 23)], rows=4, shard_bytes=600)
    many = write_split(tmp_path / "many", [(0, 1), (1, 2), (3, 9), (12, 1), (13, 10)], rows=4, shard_bytes=600)
    assert len(one) > 2  # rolled between record batches
    assert one == many
    for shard in one:
        assert (tmp_path / "one" / shard["file"]).read_bytes() == (tmp_path / "many" / shard["file"]).read_bytes()


def test_batch_rows_follows_batch_tokens_and_small_shards():
    assert batch_rows(seq_len=2048, batch_tokens=4 << 20, shard_bytes=256 << 20) == 2048
    assert batch_rows(seq_len=256, batch_tokens=4 << 20, shard_bytes=40000) == 2  # 625 tokens: 1/16 of the shard
    assert batch_rows(seq_len=4096, batch_tokens=1024, shard_bytes=256 << 20) == 1  # always at least one row


def shard_hashes(manifest: dict) -> dict[str, list[str]]:
    return {split: [s["sha256"] for s in manifest["splits"][split]["shards"]] for split in C.SPLITS}


@pytest.mark.parametrize("mode", ["wrap", "bfd"])
def test_pretraining_shards_do_not_depend_on_the_chunking(tmp_path, mode):
    def recipe(chunk_records: int, chunk_bytes: int):
        return recipe_from_dict(
            {
                "task": "pretrain",
                "inputs": [{"path": str(C4)}],
                "tokenizer": {"path": str(GPT2)},
                "packing": {"mode": mode, "seq_len": 256, "buffer_tokens": 5000, "remainder": "pad"},
                "split": {"validation": 0.1},
                "output": {"chunk_records": chunk_records, "chunk_bytes": chunk_bytes, "shard_bytes": 40000, "batch_tokens": 4096},
            },
            base_dir=tmp_path,
        )

    small = run(recipe(37, 4096), tmp_path / "small", workers=1)
    large = run(recipe(1000, 1 << 22), tmp_path / "large", workers=1)
    assert len(shard_hashes(small)["train"]) > 1
    assert shard_hashes(small) == shard_hashes(large)


def test_fine_tuning_shards_do_not_depend_on_the_chunking(tmp_path):
    def recipe(chunk_records: int):
        return load_recipe(RECIPES / "dialogsum.yaml", [f"output.chunk_records={chunk_records}", "output.shard_bytes=200000"])

    small = run(recipe(64), tmp_path / "small", workers=1)
    large = run(recipe(5000), tmp_path / "large", workers=1)
    assert shard_hashes(small) == shard_hashes(large)
