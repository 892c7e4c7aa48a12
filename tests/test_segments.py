"""``packing.segment_tokens``: the train split packed and written in segments beside the ordered stage.

``wrap`` writes exactly the rows of one stream (every count too); ``bfd`` packs each segment on
its own; either way the shards are byte-identical for any worker count, ``validate`` re-makes
every record in them, and a segment whose partial row disagrees with the stage's stops the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dataprep.build import segments
from dataprep.build.run import run
from dataprep.build.segments import Piece, next_carry
from dataprep.errors import RecipeError
from dataprep.pack.wrap import WrapPacker
from dataprep.recipe import recipe_from_dict
from dataprep.validate.check_dataset import validate_dataset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
C4 = DATA / "corpora" / "c4_demo.jsonl"
GPT2 = DATA / "tokenizers" / "gpt2"
BERT = DATA / "tokenizers" / "bert-base-cased"


def recipe(tmp_path: Path, *, tokenizer: Path = GPT2, **packing):
    return recipe_from_dict({
        "task": "pretrain", "inputs": [{"path": str(C4)}],
        "tokenizer": {"path": str(tokenizer), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
        if tokenizer == GPT2 else {"path": str(tokenizer), "add_eos": True},
        "packing": {"seq_len": 256, **packing},
        # small shards: a 40k-token segment rolls into several of its own
        "output": {"chunk_records": 40, "shard_bytes": 60_000},
        "split": {"validation": 0.05},
    }, base_dir=tmp_path)


def train_rows(out: Path) -> pa.Table:
    manifest = json.loads((out / "manifest.json").read_text())
    return pa.concat_tables(pa.ipc.open_stream((out / "train" / s["file"]).read_bytes()).read_all()
                            for s in manifest["splits"]["train"]["shards"])


def same_facts(a: dict, b: dict) -> None:
    """Everything but the shard files and the run: the counts, the packing, the inputs, validation's shards."""
    for key in ("counts", "packing", "inputs", "rows", "tokenizer"):
        assert a[key] == b[key], key
    assert a["splits"]["validation"] == b["splits"]["validation"]


def shards(manifest: dict) -> list[str]:
    return [s["sha256"] for s in manifest["splits"]["train"]["shards"]]


@pytest.mark.parametrize("tokenizer,remainder", [(GPT2, "drop"), (BERT, "pad")], ids=["gpt2-drop", "bert-pad"])
def test_wrap_segments_write_the_rows_of_one_stream(tmp_path, tokenizer, remainder):
    one = run(recipe(tmp_path, tokenizer=tokenizer, remainder=remainder), tmp_path / "one", workers=1)
    seg = recipe(tmp_path, tokenizer=tokenizer, remainder=remainder, segment_tokens=40_000)
    by1 = run(seg, tmp_path / "seg1", workers=1)
    by3 = run(seg, tmp_path / "seg3", workers=3)
    assert shards(by1) == shards(by3)  # byte-identical whatever the worker count
    assert train_rows(tmp_path / "seg1").equals(train_rows(tmp_path / "one"))  # row for row, token for token
    same_facts(by1, one)  # split_documents, unknown tokens per input, the last row's padding: the stream's
    assert len(shards(by1)) > len(shards(one))  # each segment wrote its own shards
    assert any(n.startswith("data-") for n in (s["file"] for s in by1["splits"]["train"]["shards"]))
    if tokenizer == BERT:
        assert one["counts"]["unknown_tokens"]["train"] > 0  # counted on the segment threads, per input too
    assert not list((tmp_path / "seg1" / "train").glob("*.tmp"))


def test_bfd_segments_are_the_same_for_any_worker_count_and_recheck_clean(tmp_path):
    one = run(recipe(tmp_path, mode="bfd"), tmp_path / "one", workers=1)
    seg = recipe(tmp_path, mode="bfd", segment_tokens=40_000)
    by1 = run(seg, tmp_path / "seg1", workers=1)
    by2 = run(seg, tmp_path / "seg2", workers=2)
    assert shards(by1) == shards(by2)
    assert by1["counts"]["documents"] == one["counts"]["documents"]
    assert by1["counts"]["tokens"] == one["counts"]["tokens"]  # every kept token written: only the rows differ
    assert by1["packing"]["train"]["split_documents"] == one["packing"]["train"]["split_documents"]
    assert by1["counts"]["packing_efficiency"] > 0.98
    report = validate_dataset(tmp_path / "seg1", recheck="all")
    assert report.ok, report.to_text()
    assert report.stats["recheck"]["sampled"] == by1["counts"]["records_read"]


def test_wrap_segments_recheck_every_record(tmp_path):
    manifest = run(recipe(tmp_path, segment_tokens=40_000), tmp_path / "seg", workers=2)
    report = validate_dataset(tmp_path / "seg", recheck="all")
    assert report.ok, report.to_text()
    assert report.stats["recheck"]["sampled"] == manifest["counts"]["records_read"]


def test_the_partial_row_each_segment_leaves_is_the_one_stream_packers(tmp_path):
    """next_carry, from lengths and the last tokens only, against a WrapPacker fed every token."""
    rng = np.random.default_rng(0)
    L = 64
    packer = WrapPacker(seq_len=L)
    carry = (np.zeros(0, np.int32), np.zeros(0, np.int64), {})
    for _ in range(40):
        pieces = []
        for source in range(int(rng.integers(1, 4))):
            lengths = rng.integers(1, 3 * L, size=int(rng.integers(0, 6))).astype(np.int64)
            tokens = rng.integers(0, 1000, size=int(lengths.sum())).astype(np.int32)
            docs = rng.random(len(lengths)) < 0.7 if rng.random() < 0.5 else None
            pieces.append(Piece(source, tokens, lengths, docs, {}))
            kept = lengths if docs is None else lengths[docs]
            packer.add(tokens if docs is None else tokens[np.repeat(docs, lengths)], kept)
        carry = next_carry(carry, pieces, L)
        assert np.array_equal(carry[0], packer._carry) and np.array_equal(carry[1], packer._carry_lens)


def test_a_segment_that_disagrees_with_the_stage_stops_the_run(tmp_path, monkeypatch):
    original = segments.next_carry

    def one_token_short(carry, pieces, seq_len):
        tokens, lens, extras = original(carry, pieces, seq_len)
        if len(tokens) > 1:
            return tokens[1:], np.concatenate([[lens[0] - 1], lens[1:]]), extras
        return tokens, lens, extras

    monkeypatch.setattr(segments, "next_carry", one_token_short)
    with pytest.raises(RuntimeError, match="partial row"):
        run(recipe(tmp_path, segment_tokens=40_000), tmp_path / "bad", workers=2)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("extra,says", [
    ({"objective": "mlm"}, "task: pretrain with objective: clm"),
    ({"inputs": [{"path": str(C4), "group": "web", "weight": 1}], "mixture": {"tokens": 1000}}, "mixture"),
])
def test_segments_are_refused_where_there_is_no_single_stream(tmp_path, extra, says):
    data = {"task": "pretrain", "inputs": [{"path": str(C4)}], "tokenizer": {"path": str(GPT2)},
            "packing": {"seq_len": 256, "segment_tokens": 1000}, **extra}
    with pytest.raises(RecipeError, match="segment_tokens") as caught:
        recipe_from_dict(data, base_dir=tmp_path)
    assert says in str(caught.value)


def test_the_dedup_sets_fast_path_answers_as_the_per_digest_one():
    """SeenSet.first_seen takes set operations in C for a batch with no repeat and nothing seen (what
    keeps the ordered stage cheap per document); batches mixing both paths, with spills to disk, answer
    as a plain set does."""
    from dataprep.build.seen_set import SeenSet

    rng = np.random.default_rng(1)
    pool = [rng.bytes(16) for _ in range(20_000)]
    seen, reference, fast, fresh = SeenSet(limit=300), set(), 0, iter(range(2_000, 20_000, 100))
    for step in range(160):
        if step % 4 == 1:  # never-seen digests, no repeat within the batch: the fast path
            digests = pool[next(fresh):][:100]
        elif step % 4 == 3:  # never-seen digests, each twice, in any order: the fast path's repeats within
            start = next(fresh)
            digests = [pool[start + i] for i in rng.integers(0, 50, size=100)]
        elif step % 4 == 2:  # no repeat within the batch, but some seen before (in memory or on disk)
            digests = [pool[i] for i in rng.choice(2_000, size=100, replace=False)]
        else:  # repeats within the batch and of earlier batches
            digests = [pool[i] for i in rng.integers(0, 2_000, size=100)]
        expected = [d not in reference and not reference.add(d) for d in digests]
        fast += all(expected)
        assert seen.first_seen(digests).tolist() == expected
    assert fast > 20 and len(seen) == len(reference) and seen.disk.runs() > 0


def test_segments_use_the_runner_they_are_given(tmp_path, monkeypatch):
    """Segments.use: the runner an engine offers (as --engine ray's ChunkResults.segment_runner) packs every
    segment, attached once, to the threads' shards; a runner whose attach declines leaves them on threads."""
    from concurrent.futures import Future

    from dataprep.build import run as pipeline
    from dataprep.build.chunk_results import ChunkResults

    class Inline:  # packs each segment at once, in this thread
        capacity = 1

        def __init__(self, accept=True):
            self.accept, self.attached, self.submitted = accept, [], []

        def attach(self, segments_):
            self.attached.append(segments_)
            return self if self.accept else None

        def submit(self, spec, index, carry, pieces, final):
            self.submitted.append(index)
            done = Future()
            done.set_result(segments.pack_segment(spec, index, carry, pieces, final))
            return done

        def close(self):
            pass

    seg = recipe(tmp_path, remainder="pad", segment_tokens=40_000)
    threads = run(seg, tmp_path / "threads", workers=2)
    local = pipeline.run_chunks
    for accept in (True, False):
        offered = Inline(accept)
        # an engine's results that offer a runner, as --engine ray's do; run.py hands it to Segments.use
        monkeypatch.setattr(pipeline, "run_chunks", lambda *a, **k: ChunkResults(local(*a, **k), offered))
        out = run(seg, tmp_path / f"given-{accept}", workers=2)
        assert shards(out) == shards(threads)
        [attached] = offered.attached
        assert offered.submitted == (list(range(attached.index)) if accept else []) and attached.index > 2
        assert isinstance(attached.runner, Inline if accept else segments.ThreadRunner)
        with pytest.raises(RuntimeError, match="once"):
            attached.use(offered)
        handed = list(offered.submitted)
        attached.finish()  # the engine finishes its segments when its input ends, the stage again later: nothing more
        assert offered.submitted == handed
