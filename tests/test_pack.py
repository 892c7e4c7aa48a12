"""Packing: exact small examples, plus hypothesis checks of the invariants other modules rely on."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep import columns
from dataprep.errors import ConfigError
from dataprep.pack import layout
from dataprep.pack.bfd import BfdPacker
from dataprep.pack.rows import PackedRows, PackStats, RowBlocks
from dataprep.pack.wrap import WrapPacker

PAD = -1  # document tokens below are all >= 1, so pads are recognizable
EXTRAS = {"pos": np.int64, columns.LOSS_MASK: np.uint8}


# --- helpers -------------------------------------------------------------------------


def make_docs(lens: list[int]) -> list[np.ndarray]:
    """Documents whose tokens are their global position + 1: every token is unique."""
    ends = np.cumsum([0] + list(lens))
    return [np.arange(a, b, dtype=np.int64) + 1 for a, b in zip(ends[:-1], ends[1:])]


def batch(docs: list[np.ndarray], *, extras: bool = False):
    tokens = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64)
    doc_lens = np.array([len(d) for d in docs], dtype=np.int64)
    if not extras:
        return tokens, doc_lens, None
    return tokens, doc_lens, {"pos": tokens - 1, columns.LOSS_MASK: (tokens % 3 == 0).astype(np.uint8)}


def feed(packer, docs: list[np.ndarray], cuts: list[int] = (), *, extras: bool = False) -> PackedRows:
    """All rows from adding ``docs`` in batches split at ``cuts``, then finish()."""
    bounds = [0, *sorted(cuts), len(docs)]
    parts = [packer.add(*batch(docs[a:b], extras=extras)) for a, b in zip(bounds[:-1], bounds[1:])]
    parts.append(packer.finish())
    return PackedRows.concat(parts, packer.extra_dtypes)


def rows_of(p: PackedRows) -> list[tuple[list[int], list[int], int]]:
    return [(p.row(i).tolist(), p.pieces(i).tolist(), int(p.num_pad[i])) for i in range(p.num_rows)]


def check_layout(p: PackedRows) -> None:
    """Structural invariants every PackedRows must hold."""
    assert p.input_ids.dtype == np.int32 and p.seq_lens.dtype == np.int32 and p.num_pad.dtype == np.int32
    assert p.row_offsets.dtype == np.int64 and p.seq_offsets.dtype == np.int64
    assert len(p.row_offsets) == len(p.seq_offsets) == p.num_rows + 1 == len(p.num_pad) + 1
    assert p.row_offsets[0] == 0 and p.row_offsets[-1] == len(p.input_ids)
    assert p.seq_offsets[0] == 0 and p.seq_offsets[-1] == len(p.seq_lens)
    assert (p.seq_lens > 0).all(), "no zero-length pieces"
    for i in range(p.num_rows):
        pieces = p.pieces(i)
        assert len(pieces) >= 1
        assert pieces.sum() == len(p.row(i))
        if p.num_pad[i]:
            assert pieces[-1] == p.num_pad[i]
            assert (p.row(i)[-p.num_pad[i] :] == PAD).all()
    assert all(len(v) == len(p.input_ids) for v in p.extras.values())


def check_extras(p: PackedRows) -> None:
    """Extras travel with their tokens; pads carry 0."""
    assert p.extras["pos"].dtype == np.int64 and p.extras[columns.LOSS_MASK].dtype == np.uint8
    real = p.input_ids != PAD
    assert (p.extras["pos"][real] == p.input_ids[real] - 1).all()
    assert (p.extras[columns.LOSS_MASK][real] == (p.input_ids[real] % 3 == 0)).all()
    assert (p.extras["pos"][~real] == 0).all() and (p.extras[columns.LOSS_MASK][~real] == 0).all()


def ref_wrap(lens: list[int], seq_len: int, remainder: str):
    """Plain-Python wrap: rows, the dropped token count, and how many docs a row end cuts."""
    flat = [t for d in make_docs(lens) for t in d.tolist()]
    doc_ends = set(np.cumsum([n for n in lens if n]).tolist())
    rows = []
    for start in range(0, len(flat), seq_len):
        row = flat[start : start + seq_len]
        end = start + len(row)
        cuts = sorted({e for e in doc_ends if start < e < end} | {end})
        pieces = np.diff([start, *cuts]).tolist()
        rows.append((row, pieces, 0))
    dropped = 0
    if rows and len(rows[-1][0]) < seq_len:
        row, pieces, _ = rows.pop()
        if remainder == "pad":
            n_pad = seq_len - len(row)
            rows.append((row + [PAD] * n_pad, pieces + [n_pad], n_pad))
        else:
            dropped = len(row)
    kept = len(rows) * seq_len
    ends = np.cumsum([n for n in lens if n]).tolist()
    starts = [e - n for e, n in zip(ends, [n for n in lens if n])]
    split = sum(any(a < r < b for r in range(seq_len, kept + 1, seq_len)) for a, b in zip(starts, ends))
    return rows, dropped, split


def ref_bfd(lens: list[int], seq_len: int, buffer_tokens: int, pad_rows: bool):
    """Plain-Python BFD, one document at a time: the rows as lists of item ids (their tokens)."""
    docs = [d for d in make_docs(lens) if len(d)]
    buffer: list[list[int]] = []
    rows: list[list[list[int]]] = []

    def pack(final: bool) -> None:
        nonlocal buffer
        order = sorted(range(len(buffer)), key=lambda i: (-len(buffer[i]), i))
        bins: list[list[int]] = []
        for i in order:
            fits = [b for b in range(len(bins)) if sum(len(buffer[j]) for j in bins[b]) + len(buffer[i]) <= seq_len]
            if fits:
                best = min(fits, key=lambda b: (seq_len - sum(len(buffer[j]) for j in bins[b]), b))
                bins[best].append(i)
            else:
                bins.append([i])
        fill = [sum(len(buffer[j]) for j in b) for b in bins]
        kept: set[int] = set()
        if not final:
            total = 0
            for b in sorted(range(len(bins)), key=lambda b: (fill[b], b)):
                if total + fill[b] > buffer_tokens // 4:
                    break
                total += fill[b]
                kept.add(b)
        rows.extend([[buffer[i] for i in bins[b]] for b in range(len(bins)) if b not in kept])
        buffer = [buffer[i] for i in sorted(i for b in kept for i in bins[b])]

    for d in docs:
        buffer.extend(d[k : k + seq_len].tolist() for k in range(0, len(d), seq_len))
        if sum(map(len, buffer)) >= buffer_tokens:
            pack(final=False)
    if buffer:
        pack(final=True)
    out = []
    for items in rows:
        tokens = [t for it in items for t in it]
        pieces = [len(it) for it in items]
        n_pad = seq_len - len(tokens) if pad_rows else 0
        out.append((tokens + [PAD] * n_pad, pieces + ([n_pad] if n_pad else []), n_pad))
    return out


@st.composite
def stream(draw, *, max_len: int = 40, max_docs: int = 25):
    """(doc lengths, cut points splitting them into add() batches)."""
    lens = draw(st.lists(st.integers(0, max_len), max_size=max_docs))
    cuts = draw(st.lists(st.integers(0, len(lens)), max_size=4))
    return lens, cuts


# --- wrap ----------------------------------------------------------------------------


def test_wrap_small_example_drop():
    w = WrapPacker(seq_len=4)
    out = feed(w, [np.array([1, 2, 3]), np.array([4, 5]), np.array([6, 7, 8, 9, 10])])
    assert rows_of(out) == [([1, 2, 3, 4], [3, 1], 0), ([5, 6, 7, 8], [1, 3], 0)]
    assert w.stats.as_dict() == {
        "seq_len": 4, "documents": 3, "content_tokens": 8, "pad_tokens": 0, "rows": 2,
        "dropped_tokens": 2, "dropped_rows": 1, "split_documents": 2, "efficiency": 1.0,
    }  # fmt: skip


def test_wrap_small_example_pad():
    w = WrapPacker(seq_len=4, remainder="pad", pad_id=0)
    first = w.add(np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), np.array([3, 2, 5]))
    assert rows_of(first) == [([1, 2, 3, 4], [3, 1], 0), ([5, 6, 7, 8], [1, 3], 0)]
    assert rows_of(w.finish()) == [([9, 10, 0, 0], [2, 2], 2)]
    assert (w.stats.content_tokens, w.stats.pad_tokens, w.stats.rows) == (10, 2, 3)
    assert w.stats.efficiency == pytest.approx(10 / 12)


def test_wrap_doc_spanning_several_rows_and_calls():
    w = WrapPacker(seq_len=3)
    assert w.add(np.array([1]), np.array([1])).num_rows == 0
    out = w.add(np.arange(2, 10), np.array([8]))  # a doc of 8 after a doc of 1: 9 tokens, 3 rows
    assert rows_of(out) == [([1, 2, 3], [1, 2], 0), ([4, 5, 6], [3], 0), ([7, 8, 9], [3], 0)]
    assert w.stats.split_documents == 1  # cut twice, counted once
    assert w.finish().num_rows == 0 and w.stats.dropped_tokens == 0


def test_wrap_zero_length_docs_and_empty_input():
    w = WrapPacker(seq_len=2, remainder="pad", pad_id=0)
    assert w.add(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)).num_rows == 0
    out = w.add(np.array([5, 6, 7]), np.array([0, 2, 0, 0, 1, 0]))
    assert rows_of(out) == [([5, 6], [2], 0)]
    assert rows_of(w.finish()) == [([7, 0], [1, 1], 1)]
    assert w.stats.documents == 2
    empty = WrapPacker(seq_len=8)
    assert feed(empty, []).num_rows == 0 and empty.stats.rows == 0 and empty.stats.efficiency == 0.0


def test_wrap_seq_len_one():
    w = WrapPacker(seq_len=1)
    out = feed(w, [np.array([1, 2]), np.array([3])])
    assert rows_of(out) == [([1], [1], 0), ([2], [1], 0), ([3], [1], 0)]
    assert w.stats.split_documents == 1 and w.stats.dropped_tokens == 0


def test_wrap_config_errors():
    with pytest.raises(ConfigError, match="pad token"):
        WrapPacker(seq_len=8, remainder="pad")
    with pytest.raises(ConfigError, match="'drop', 'pad'"):
        WrapPacker(seq_len=8, remainder="keep")
    for bad in (0, -3, 2.5):
        with pytest.raises(ConfigError, match="seq_len"):
            WrapPacker(seq_len=bad)
    with pytest.raises(ConfigError, match="clash"):
        WrapPacker(seq_len=8, extra_dtypes={columns.INPUT_IDS: np.int32})


def test_add_rejects_inconsistent_arrays():
    w = WrapPacker(seq_len=4, extra_dtypes={columns.LOSS_MASK: np.uint8})
    with pytest.raises(ValueError, match="sum to"):
        w.add(np.arange(5), np.array([2, 2]), {columns.LOSS_MASK: np.ones(5)})
    with pytest.raises(ValueError, match="extras"):
        w.add(np.arange(4), np.array([4]))
    with pytest.raises(ValueError, match="shape"):
        w.add(np.arange(4), np.array([4]), {columns.LOSS_MASK: np.ones(3)})


@settings(max_examples=150, deadline=None)
@given(stream(), st.integers(1, 12), st.sampled_from(["drop", "pad"]))
def test_wrap_matches_reference(data, seq_len, remainder):
    lens, cuts = data
    w = WrapPacker(seq_len=seq_len, remainder=remainder, pad_id=PAD, extra_dtypes=EXTRAS)
    out = feed(w, make_docs(lens), cuts, extras=True)
    check_layout(out)
    check_extras(out)
    expected, dropped, split = ref_wrap(lens, seq_len, remainder)
    assert rows_of(out) == expected
    assert (np.diff(out.row_offsets) == seq_len).all()
    # No token lost: the rows are the stream, less the dropped tail, plus the pad.
    content = out.input_ids[out.input_ids != PAD]
    assert np.array_equal(content, np.arange(1, len(content) + 1))
    s = w.stats
    assert s.dropped_tokens == dropped and s.dropped_rows == int(dropped > 0)
    assert s.content_tokens + s.dropped_tokens == sum(lens)
    assert s.content_tokens + s.pad_tokens == s.rows * seq_len == len(out.input_ids)
    assert s.pad_tokens == int(out.num_pad.sum()) and s.rows == out.num_rows
    assert s.documents == sum(1 for n in lens if n)
    assert s.split_documents == split


@settings(max_examples=100, deadline=None)
@given(stream(max_len=30), st.integers(1, 10), st.sampled_from(["drop", "pad"]))
def test_wrap_independent_of_batching(data, seq_len, remainder):
    lens, cuts = data
    docs = make_docs(lens)
    one, many, single = (WrapPacker(seq_len=seq_len, remainder=remainder, pad_id=PAD) for _ in range(3))
    expected = rows_of(feed(one, docs))
    assert rows_of(feed(many, docs, cuts)) == expected
    assert rows_of(feed(single, docs, list(range(len(docs))))) == expected  # one doc per add()
    assert one.stats == many.stats == single.stats
    assert feed(one, []).num_rows == 0  # finish() left the packer empty


# --- bfd -----------------------------------------------------------------------------


def test_bfd_small_example():
    toks = np.concatenate([np.full(n, c) for n, c in zip([5, 3, 6, 2, 4], [1, 2, 3, 4, 5])])
    b = BfdPacker(seq_len=8, buffer_tokens=1000, pad_id=0)
    assert b.add(toks, np.array([5, 3, 6, 2, 4])).num_rows == 0  # buffer not full yet
    out = b.finish()
    assert rows_of(out) == [
        ([3, 3, 3, 3, 3, 3, 4, 4], [6, 2], 0),
        ([1, 1, 1, 1, 1, 2, 2, 2], [5, 3], 0),
        ([5, 5, 5, 5, 0, 0, 0, 0], [4, 4], 4),
    ]
    assert (b.stats.content_tokens, b.stats.pad_tokens, b.stats.rows) == (20, 4, 3)


def test_bfd_unpadded_rows_and_split_long():
    b = BfdPacker(seq_len=4, buffer_tokens=100, pad_rows=False)
    out = feed(b, [np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), np.array([11, 12])])
    # The 10-token doc becomes pieces 4, 4, 2; the 2-piece goes with the other 2-token doc.
    assert rows_of(out) == [([1, 2, 3, 4], [4], 0), ([5, 6, 7, 8], [4], 0), ([9, 10, 11, 12], [2, 2], 0)]
    assert b.stats.split_documents == 1 and b.stats.pad_tokens == 0


def test_bfd_rounds_keep_least_filled_rows():
    def pieces(p: PackedRows) -> list[list[int]]:
        return [r[1] for r in rows_of(p)]

    # buffer_tokens=8: a round runs once the buffer holds >= 8 tokens, at a document end.
    b = BfdPacker(seq_len=8, buffer_tokens=8, pad_id=0)
    docs = make_docs([5, 2, 1, 7, 6])
    assert rows_of(b.add(*batch(docs[:3]))) == [([1, 2, 3, 4, 5, 6, 7, 8], [5, 2, 1], 0)]
    # 7 + 6 = 13 tokens: two rows; neither fill (7, 6) is <= 8 // 4, so nothing is kept.
    assert pieces(b.add(*batch(docs[3:]))) == [[7, 1], [6, 2]]
    assert b.finish().num_rows == 0

    # buffer_tokens=40: the round runs at the doc that brings the buffer to 41 tokens. Rows
    # [8] x4, [7], [2]; the least-filled rows [2] and [7] (2 + 7 <= 40 // 4) go back to the buffer.
    b = BfdPacker(seq_len=8, buffer_tokens=40, pad_id=0)
    assert pieces(b.add(*batch(make_docs([8, 8, 8, 8, 7, 2])))) == [[8], [8], [8], [8]]
    assert b.add(*batch(make_docs([0, 1]))).num_rows == 0  # 10 tokens buffered
    # finish(): 7, 2, 1 sorted; the 1 best-fits next to the 7.
    assert pieces(b.finish()) == [[7, 1], [2, 6]]
    assert b.stats.rows == 6 and b.stats.content_tokens == 42


def test_bfd_config_errors():
    with pytest.raises(ConfigError, match="pad token"):
        BfdPacker(seq_len=8, buffer_tokens=64)
    with pytest.raises(ConfigError, match="buffer_tokens"):
        BfdPacker(seq_len=8, buffer_tokens=0, pad_id=0)
    b = BfdPacker(seq_len=8, buffer_tokens=64, pad_id=0, split_long=False)
    with pytest.raises(ConfigError, match="9 tokens, more than packing seq_len 8"):
        b.add(np.arange(12), np.array([3, 9]))


def test_bfd_empty_and_seq_len_one():
    b = BfdPacker(seq_len=4, buffer_tokens=8, pad_id=0)
    assert feed(b, []).num_rows == 0 and b.stats.rows == 0 and b.stats.efficiency == 0.0
    b = BfdPacker(seq_len=1, buffer_tokens=2, pad_id=0)
    out = feed(b, [np.array([1, 2]), np.array([3])], [1])
    assert sorted(out.input_ids.tolist()) == [1, 2, 3] and (out.seq_lens == 1).all()
    assert (out.num_pad == 0).all() and b.stats.split_documents == 1 and b.stats.efficiency == 1.0


@settings(max_examples=150, deadline=None)
@given(stream(), st.integers(1, 16), st.integers(1, 80), st.booleans())
def test_bfd_matches_reference(data, seq_len, buffer_tokens, pad_rows):
    lens, cuts = data
    b = BfdPacker(seq_len=seq_len, buffer_tokens=buffer_tokens, pad_id=PAD, pad_rows=pad_rows, extra_dtypes=EXTRAS)
    out = feed(b, make_docs(lens), cuts, extras=True)
    check_layout(out)
    check_extras(out)
    assert rows_of(out) == ref_bfd(lens, seq_len, buffer_tokens, pad_rows)
    lengths = np.diff(out.row_offsets)
    assert (lengths <= seq_len).all()
    if pad_rows:
        assert (lengths == seq_len).all()
    else:
        assert (out.num_pad == 0).all()
    # No token lost or duplicated (tokens are unique), and each doc/piece stays contiguous.
    content = out.input_ids[out.input_ids != PAD]
    assert np.array_equal(np.sort(content), np.arange(1, sum(lens) + 1))
    pieces = []
    for i in range(out.num_rows):
        ends = np.cumsum(out.pieces(i))
        pieces += [out.row(i)[a:e].tolist() for a, e in zip(ends - out.pieces(i), ends)]
    if pad_rows:
        pieces = [p for p in pieces if p[0] != PAD]
    expected = [d[k : k + seq_len].tolist() for d in make_docs(lens) for k in range(0, len(d), seq_len)]
    assert sorted(pieces) == sorted(expected)
    s = b.stats
    assert s.content_tokens == sum(lens) and s.dropped_tokens == 0 and s.rows == out.num_rows
    assert s.pad_tokens == int(out.num_pad.sum()) == len(out.input_ids) - sum(lens)
    if pad_rows:
        assert s.content_tokens + s.pad_tokens == s.rows * seq_len
    assert s.split_documents == sum(n > seq_len for n in lens)


@settings(max_examples=100, deadline=None)
@given(stream(), st.integers(1, 16), st.integers(1, 80))
def test_bfd_independent_of_batching(data, seq_len, buffer_tokens):
    lens, cuts = data
    docs = make_docs(lens)
    one, many, single = (BfdPacker(seq_len=seq_len, buffer_tokens=buffer_tokens, pad_id=PAD) for _ in range(3))
    expected = rows_of(feed(one, docs))
    assert rows_of(feed(many, docs, cuts)) == expected
    assert rows_of(feed(single, docs, list(range(len(docs))))) == expected
    assert one.stats == many.stats == single.stats


def test_bfd_efficiency_large_buffer():
    rng = np.random.default_rng(0)
    docs = make_docs(rng.integers(1, 301, size=2000).tolist())
    b = BfdPacker(seq_len=1024, buffer_tokens=1 << 30, pad_id=PAD)
    out = feed(b, docs, list(range(0, 2000, 97)))
    assert b.stats.efficiency > 0.98
    assert np.array_equal(np.sort(out.input_ids[out.input_ids != PAD]), np.arange(1, b.stats.content_tokens + 1))
    # A bounded buffer still packs well.
    bounded = BfdPacker(seq_len=1024, buffer_tokens=64 * 1024, pad_id=PAD)
    feed(bounded, docs)
    assert bounded.stats.efficiency > 0.95


# --- PackedRows / PackStats ----------------------------------------------------------


def test_to_record_batch_schema_and_zero_copy():
    w = WrapPacker(seq_len=4, remainder="pad", pad_id=PAD, extra_dtypes=EXTRAS)
    out = feed(w, make_docs([3, 2, 5]), extras=True)
    rb = out.to_record_batch()
    assert rb.schema.names == [columns.INPUT_IDS, columns.SEQ_LENS, columns.NUM_PAD, "pos", columns.LOSS_MASK]
    assert rb.schema.remove(4).remove(3) == columns.PRETRAIN_ROW_SCHEMA
    assert rb.schema.field(columns.LOSS_MASK).type == pa.list_(pa.uint8())
    assert rb.schema.field("pos").type == pa.list_(pa.int64())
    assert rb.to_pylist()[2] == {
        columns.INPUT_IDS: [9, 10, PAD, PAD], columns.SEQ_LENS: [2, 2], columns.NUM_PAD: 2,
        "pos": [8, 9, 0, 0], columns.LOSS_MASK: [1, 0, 0, 0],
    }  # fmt: skip
    values = rb.column(columns.INPUT_IDS).values.to_numpy(zero_copy_only=True)
    assert np.shares_memory(values, out.input_ids)
    empty = PackedRows.empty({columns.LOSS_MASK: np.uint8}).to_record_batch()
    assert empty.num_rows == 0 and empty.schema.field(columns.LOSS_MASK).type == pa.list_(pa.uint8())


def test_concat_and_stats_helpers():
    w = WrapPacker(seq_len=2)
    a = w.add(np.array([1, 2, 3]), np.array([3]))
    b = w.add(np.array([4, 5, 6]), np.array([1, 2]))
    joined = PackedRows.concat([a, PackedRows.empty(), b])
    assert rows_of(joined) == [([1, 2], [2], 0), ([3, 4], [1, 1], 0), ([5, 6], [2], 0)]
    assert PackedRows.concat([]).num_rows == 0
    assert PackStats(seq_len=4).efficiency == 0.0
    assert PackStats(seq_len=4, rows=2, content_tokens=6).as_dict()["efficiency"] == 0.75


@settings(max_examples=60, deadline=None)
@given(stream(), st.integers(1, 16), st.integers(1, 80), st.booleans())
def test_bfd_slice_copies_equal_index_gathers(data, seq_len, buffer_tokens, pad_rows):
    """The two ways rows are laid out (a copy per range for long rows, one gather for short ones) agree."""
    from unittest import mock

    lens, cuts = data
    outs = []
    for threshold in (1, 10**9):  # every range by slices / every range by one gather
        with mock.patch.object(layout, "_SLICE_COPY_MIN_MEAN", threshold):
            b = BfdPacker(seq_len=seq_len, buffer_tokens=buffer_tokens, pad_id=PAD, pad_rows=pad_rows, extra_dtypes=EXTRAS)
            outs.append(feed(b, make_docs(lens), cuts, extras=True))
    sliced, gathered = outs
    for field in ("input_ids", "row_offsets", "seq_lens", "seq_offsets", "num_pad"):
        assert np.array_equal(getattr(sliced, field), getattr(gathered, field)), field
    assert all(np.array_equal(sliced.extras[k], gathered.extras[k]) for k in EXTRAS)


def _rows(lengths: list[int], start: int = 0) -> PackedRows:
    """One single-piece row per length, tokens counting up from ``start``, with a mask extra."""
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    ids = np.arange(start, start + offsets[-1], dtype=np.int32)
    return PackedRows(input_ids=ids, row_offsets=offsets, seq_lens=np.array(lengths, dtype=np.int32),
                      seq_offsets=np.arange(len(lengths) + 1, dtype=np.int64), num_pad=np.zeros(len(lengths), dtype=np.int32),
                      extras={"loss_mask": ids % 2})


def test_split_then_concat_gives_the_rows_back():
    rows = _rows([3, 1, 4, 2])
    head, tail = rows.split(1)
    assert (head.num_rows, tail.num_rows) == (1, 3)
    assert tail.row(0).tolist() == [3] and tail.row(2).tolist() == [8, 9] and tail.row_offsets[0] == 0
    assert tail.extras["loss_mask"].tolist() == (np.arange(3, 10) % 2).tolist()
    again = PackedRows.concat([head, tail])
    for name in ("input_ids", "row_offsets", "seq_lens", "seq_offsets", "num_pad"):
        assert getattr(again, name).tolist() == getattr(rows, name).tolist()


def test_row_blocks_cut_any_stream_into_the_same_blocks():
    def blocks(parts: list[list[int]]) -> list[tuple[int, list[int]]]:
        cutter, out, start = RowBlocks(3), [], 0
        for i, lengths in enumerate(parts):
            for first, block in cutter.add(_rows(lengths, start), final=i == len(parts) - 1):
                out.append((first, block.input_ids.tolist()))
            start += sum(lengths)
        return out

    one = blocks([[2, 1, 3, 1, 1, 2, 2]])
    many = blocks([[2], [1, 3, 1, 1], [], [2, 2]])
    assert one == many
    assert [first for first, _ in one] == [0, 3, 6] and one[-1][1] == [10, 11]  # the last block: one row


def test_pack_stats_add_sums_every_counter_and_refuses_another_row_length():
    from dataprep.pack.rows import PackStats

    total = PackStats(seq_len=8, documents=2, content_tokens=12, rows=2, pad_tokens=4)
    total.add(PackStats(seq_len=8, documents=1, content_tokens=8, rows=1, dropped_tokens=3, dropped_rows=1, split_documents=1))
    assert total == PackStats(seq_len=8, documents=3, content_tokens=20, pad_tokens=4, rows=3, dropped_tokens=3,
                              dropped_rows=1, split_documents=1)
    with pytest.raises(ValueError, match="16-token rows added to those of 8-token rows"):
        total.add(PackStats(seq_len=16))
