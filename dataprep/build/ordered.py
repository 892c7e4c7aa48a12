"""The ordered stage: dedup, split, pack and write chunk results, in input order.

Workers send one :class:`ChunkResult` per input chunk; this stage sees them in input
order whatever the worker count, which is what makes shards byte-identical for any
``--workers``. It is shared by every task: a task supplies its packer factory and the
function that turns packed rows into an Arrow batch.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep.build.mixing import Mixing
from dataprep.build.near_dup import NearDupIndex
from dataprep.build.segments import Piece, Segments
from dataprep.build.seen_set import SeenSet
from dataprep.build.write import SplitWriter
from dataprep.pack.layout import gather_documents
from dataprep.pack.rows import PackedRows
from dataprep.tasks.base import ChunkResult
from dataprep.text.filters import DUPLICATE, NEAR_DUPLICATE
from dataprep.text.minhash import MinhashSpec


NO_TOKENS = "no_tokens"  # a kept document that encodes to no token at all: nothing to write
SAMPLES_PER_SOURCE = 5  # drop locations kept per input file, for the end-of-run messages
# Documents a split buffers before its packer takes them: a chunk's validation share is a few thousand
# tokens, and each packer.add and write has a fixed cost (~0.2 ms: 60% of this stage's own time per token
# at 1% validation). Rows do not depend on how documents are split into add() calls, nor the shards on
# how rows are split into writes, so the output is the same bytes.
FEED_TOKENS = 1 << 20
EXAMPLES_PER_REASON = 3  # dropped documents the manifest shows per filter reason


class OrderedStage:
    """Dedup (first occurrence wins), split, pack and write, one chunk result at a time.

    Args:
        writers: one :class:`SplitWriter` per split name.
        make_packer: builds a fresh packer (one per split).
        to_batch: turns packed rows into the Arrow batch the writer stores.
        dedup: drop a document whose hash was already seen (counted as ``duplicate``); a
            :class:`MinhashSpec`: that, then a document whose MinHash signature is near an earlier
            kept one's (counted as ``near_duplicate``; :mod:`dataprep.build.near_dup`).
        unk_id: the tokenizer's unknown-token id: its occurrences among the written documents'
            tokens are counted per split (:attr:`unknown`) and per input (:attr:`source_unknown`).
        mixing: a recipe with a mixture: the kept documents are collected there and drawn into the
            packers by :meth:`finish` (:mod:`dataprep.build.mixing`), which also counts them.
        segments: ``packing.segment_tokens``: the train split's documents are packed and written in
            segments on other threads (:mod:`dataprep.build.segments`); this stage only counts them.
    """

    def __init__(
        self,
        writers: dict[str, SplitWriter],
        *,
        make_packer: Callable[[], Any],
        to_batch: Callable[[PackedRows], pa.RecordBatch],
        dedup: bool | MinhashSpec,
        unk_id: int | None = None,
        mixing: Mixing | None = None,
        segments: Segments | None = None,
    ):
        self.writers = writers
        self.packers = {split: make_packer() for split in writers}
        self.to_batch = to_batch
        self.dedup = bool(dedup)
        self.near = NearDupIndex(dedup) if isinstance(dedup, MinhashSpec) else None
        self.seen = SeenSet()  # exact dedup, in bounded memory (spills sorted runs to disk)
        self.new_seen: list[bytes] = []  # seen since the last checkpoint, in order (a checkpoint appends them)
        self.documents: Counter = Counter()
        self.drops: Counter = Counter()
        self.stats: Counter = Counter()  # doc_stats summed over written documents
        self.source_documents: Counter = Counter()  # input file index -> documents written
        self.source_tokens: Counter = Counter()  # input file index -> their tokens, before packing
        self.source_drops: dict[int, Counter] = {}  # input file index -> records the workers dropped, by reason
        self.drop_samples: dict[int, list[tuple[str, str, str]]] = {}  # input file index -> first drop locations
        self.unk_id = unk_id
        self.unknown: Counter = Counter()  # split -> unknown-token ids written
        self.source_unknown: Counter = Counter()  # input file index -> unknown-token ids written
        self.mixing = mixing
        self.segments = segments
        if segments is not None:
            segments.on_unknown = self._segment_unknown
        self.feed: dict[str, list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]] = {s: [] for s in writers}
        self.contaminated: list[tuple[str, str, str]] = []  # decontaminate: (set, item, location), in input order
        self.examples: dict[str, list[dict[str, str]]] = {}  # drop reason -> its first documents (location, text cut short)

    def add(self, result: ChunkResult) -> None:
        """Dedup, split, pack and write one chunk result."""
        self.drops.update(result.drops)
        self.source_drops.setdefault(result.source, Counter()).update(result.drops)
        samples = self.drop_samples.setdefault(result.source, [])
        samples.extend(result.drop_samples[: SAMPLES_PER_SOURCE - len(samples)])
        self.contaminated.extend(result.contaminated)
        for reason, where, text in result.examples:  # the first few of each reason, in input order
            if len(shown := self.examples.setdefault(reason, [])) < EXAMPLES_PER_REASON:
                shown.append({"document": where, "text": text})
        n = len(result.hashes)
        if n == 0:
            return
        keep = result.lengths > 0
        empty = n - int(keep.sum())
        if empty:  # the packers would skip them: they are dropped, never "written"
            self.drops[NO_TOKENS] += empty
            self.source_drops[result.source][NO_TOKENS] += empty
        if self.dedup:
            todo = np.flatnonzero(keep)
            digests = result.hashes if len(todo) == n else [result.hashes[i] for i in todo.tolist()]
            new = self.seen.first_seen(digests)
            keep[todo[~new]] = False
            self.new_seen.extend(itertools.compress(digests, new.tolist()))
            duplicates = int(n - empty - keep.sum())
            if duplicates:
                self.drops[DUPLICATE] += duplicates
                self.source_drops[result.source][DUPLICATE] += duplicates
        if self.near is not None and result.signatures is not None:
            near = self.near.drop_mask(result.signatures, keep)
            if near.any():
                keep &= ~near
                self.drops[NEAR_DUPLICATE] += int(near.sum())
                self.source_drops[result.source][NEAR_DUPLICATE] += int(near.sum())
        for split, in_split in (("train", ~result.validation), ("validation", result.validation)):
            docs = keep & in_split
            if not docs.any():
                continue
            if split == "train" and self.segments is not None:  # gathered, packed and counted on a segment thread
                self.documents[split] += int(docs.sum())
                self.segments.add(Piece(result.source, result.tokens, result.lengths, None if docs.all() else docs,
                                        result.extras))
                self.segments.poll()  # adopt the segments written meanwhile, in order
                continue
            # by the documents' ranges, not a mask over every token of the chunk (validation is a few)
            tokens, lengths, extras = gather_documents(result.tokens, result.lengths, None if docs.all() else docs,
                                                       result.extras)
            if self.mixing is not None:  # counted when drawn
                self.mixing.add(split, result.source, tokens, lengths, extras,
                                {name: values[docs] for name, values in result.doc_stats.items()})
                continue
            self.documents[split] += int(docs.sum())
            if self.unk_id is not None:
                unknown = int(np.count_nonzero(tokens == self.unk_id))
                self.unknown[split] += unknown
                self.source_unknown[result.source] += unknown
            self._feed(split, tokens, lengths, extras)
        if self.mixing is not None:
            return
        for name, values in result.doc_stats.items():
            self.stats[name] += int(values[keep].sum())
        self.source_documents[result.source] += int(keep.sum())
        self.source_tokens[result.source] += int(result.lengths[keep].sum())

    # State a checkpoint keeps (the writers and the dedup set are saved on their own).
    _STATE = ("packers", "documents", "drops", "stats", "source_documents", "source_tokens", "source_drops",
              "drop_samples", "unknown", "source_unknown", "contaminated", "examples")

    def state(self) -> dict[str, Any]:
        """What :meth:`restore` needs to go on exactly where this stage is (picklable; the near-duplicate
        index's signatures are saved on their own, see :mod:`dataprep.build.checkpoint`). Packs and
        writes the documents it buffered first: take the writers' state after this."""
        for split in self.feed:
            self._pack(split)
        state = {name: getattr(self, name) for name in self._STATE}
        if self.near is not None:
            state["near"] = self.near.state()
        if self.mixing is not None:
            state["mixing"] = self.mixing.state()  # the collected documents' files, flushed, and their lengths
        if self.segments is not None:
            state["segments"] = self.segments.state()
        return state

    def restore(self, state: dict[str, Any], seen: np.ndarray) -> None:
        """Continue from a checkpoint: ``state`` and its dedup digests (uint8 ``[n, 16]``, in order)."""
        for name in self._STATE:
            setattr(self, name, state[name])
        self.seen, self.new_seen = SeenSet(limit=self.seen.limit), []
        self.seen.add_all(seen)
        if self.near is not None:
            self.near.restore(state["near"], state["near_signatures"])
        if self.mixing is not None:
            self.mixing.restore(state["mixing"])
        if self.segments is not None:
            self.segments.restore(state["segments"])

    def settled(self) -> bool:
        """Whether a checkpoint may be taken now: always, but with segments only between two of them
        (after the ones in flight are written and adopted)."""
        if self.segments is None:
            return True
        if not self.segments.idle():
            return False
        self.segments.drain()
        return True

    def _segment_unknown(self, unknown: Counter) -> None:
        self.unknown["train"] += sum(unknown.values())
        self.source_unknown.update(unknown)

    def near_duplicates(self) -> dict[str, int] | None:
        """The manifest's ``counts.near_duplicates`` (None without ``dedup: minhash``)."""
        return None if self.near is None else self.near.stats()

    def finish(self) -> None:
        for split in self.feed:
            self._pack(split)
        if self.segments is not None:
            self.segments.finish()
        if self.mixing is not None:
            self.mixing.draw(lambda split, t, n, x: self._write(split, self.packers[split].add(t, n, x or None)), self)
        for split, packer in self.packers.items():
            self._write(split, packer.finish())

    def _feed(self, split: str, tokens: np.ndarray, lengths: np.ndarray, extras: dict[str, np.ndarray]) -> None:
        """Buffer documents for ``split``'s packer; it takes them once :data:`FEED_TOKENS` are here."""
        self.feed[split].append((tokens, lengths, extras))
        if sum(len(t) for t, _, _ in self.feed[split]) >= FEED_TOKENS:
            self._pack(split)

    def _pack(self, split: str) -> None:
        """``split``'s buffered documents through its packer, and the rows it completes to the writer."""
        parts, self.feed[split] = self.feed[split], []
        if not parts:
            return
        tokens, lengths = (np.concatenate([p[i] for p in parts]) if len(parts) > 1 else parts[0][i] for i in (0, 1))
        extras = {k: np.concatenate([p[2][k] for p in parts]) if len(parts) > 1 else parts[0][2][k] for k in parts[0][2]}
        self._write(split, self.packers[split].add(tokens, lengths, extras or None))

    def _write(self, split: str, rows: PackedRows) -> None:
        if rows.num_rows:
            self.writers[split].write(self.to_batch(rows))

    def pack_stats(self) -> dict[str, Any]:
        stats = {split: packer.stats for split, packer in self.packers.items()}
        if self.segments is not None:
            stats["train"] = self.segments.stats
        return {split: s.as_dict() for split, s in stats.items()}
