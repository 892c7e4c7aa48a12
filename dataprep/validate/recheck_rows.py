"""The stored side of ``--recheck-sources``: every unit of a split, keyed, and the ones a re-made unit may be.

A *unit* is what one source record became in the rows: a fine-tuning example or a ``bfd``
piece (one piece of one row), a preference row (:mod:`.recheck_pairs`), or a ``wrap`` document: the content stream (pad pieces left out)
from one document boundary to the next, across rows, batches and shards. A boundary is a piece
that ends with EOS (``add_eos``), or, without EOS, one that starts with BOS.

Every unit gets three vectorized keys (:func:`.units.unit_keys`: its length and 4 of its
tokens): of the whole unit, of its first half and of its second half. A unit whose whole key
or either half key is a re-made unit's is digested (xxh3_128) and kept::

    stored unit --keys--> digest is a re-made unit's?  yes -> by_digest (loss mask digest, label_id)
                                                       no  -> near: its tokens, for the re-made
                                                              unit found nowhere (one changed token
                                                              changes at most one half key)

With ``--sample all`` every unit is kept, so a unit no record re-makes is found too.

Places: a unit starts at an offset of its split's content stream; the offset where each row's
content starts turns any offset into (shard, row, position), across rows for ``wrap``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import xxhash

from dataprep.dataset.manifest import Manifest

from .check_rows import RowBatch
from .check_tokens import Pieces
from .recheck_pairs import cuts as pair_cuts
from .recheck_pairs import stored_units as pair_units
from .units import unit_keys

NEAR_LIMIT = 100_000  # near candidates kept per split (--sample all on a thoroughly stale dataset)


def keys3(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, cuts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys of whole units, of their first halves and of their second halves (a 1-token unit: all
    three the same); lengths must be positive. ``cuts``: where each unit's halves meet (preference
    pairs: the prompt's end, in ``[1, length - 1]``); default the middle."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if not len(lengths):
        empty = np.zeros(0, dtype=np.uint64)
        return empty, empty, empty
    if cuts is None:
        half = np.maximum(lengths // 2, 1)
        cut = np.minimum(half, lengths - 1)
    else:
        half = cut = np.asarray(cuts, dtype=np.int64)
    return unit_keys(ids, starts, lengths), unit_keys(ids, starts, half), unit_keys(ids, starts + cut, np.maximum(lengths - cut, 1))


def digest(values: np.ndarray | None) -> bytes | None:
    return None if values is None else xxhash.xxh3_128_digest(np.ascontiguousarray(values))


@dataclass
class Wanted:
    """What the re-made units are: keys to keep stored units by, their digests and variants."""

    whole: np.ndarray | None  # sorted keys; None keeps every stored unit (--sample all)
    first: np.ndarray
    second: np.ndarray
    digests: set[bytes]
    triples: set[tuple]  # (digest, mask digest, label)
    variants: Counter  # digest -> distinct triples with it


@dataclass
class Stored:
    """One stored unit that was kept: where it starts in its split's content stream, and what it holds."""

    start: int
    length: int
    digest: bytes
    mask_digest: bytes | None
    label: int | None
    first: int
    second: int
    tokens: np.ndarray | None = None  # near candidates and the partial last document
    mask: np.ndarray | None = None  # when a mask may have to be shown position by position
    claimed: bool = False


class SplitUnits:
    """Reads one split's shards in order into kept :class:`Stored` units and a table of row places.

    Args:
        split: The split name, for places.
        wanted: What the re-made units are.
        documents: ``wrap``: units are documents; else each content piece is one.
        eos, bos: Document marks (documents mode): EOS ends a document; without it BOS starts one.
        remainder: ``wrap`` documents: the split dropped a final partial row, so its last,
            unterminated document is :attr:`partial` rather than a unit.
        pairs: Preference rows: each row is one unit, its columns end to end, a segment per
            token in the loss mask's place (:func:`.recheck_pairs.stored_units`).
    """

    def __init__(self, split: str, wanted: Wanted, *, documents: bool, eos: int | None, bos: int | None, remainder: bool, pairs: bool = False):
        self.split = split
        self.pairs = pairs  # preference rows: one unit per row, segments in the mask's place
        self.wanted = wanted
        self.documents = documents
        self.eos, self.bos = eos, bos
        self.remainder = remainder
        self.by_digest: dict[bytes, list[Stored]] = defaultdict(list)
        self.near: list[Stored] = []
        self.units = 0
        self.skipped_rows = 0  # structurally unsound rows (the row checks report them)
        self.not_kept = 0  # near candidates over NEAR_LIMIT
        self.partial: Stored | None = None
        self.offset = 0  # content tokens read so far
        self.files: list[str] = []
        self._row_starts: list[np.ndarray] = []
        self._row_files: list[np.ndarray] = []
        self._row_numbers: list[np.ndarray] = []
        self._carry = np.zeros(0, dtype=np.int32)  # documents mode: the open document so far

    # --- reading -------------------------------------------------------------------------

    def add_shard(self, name: str, path: Path) -> str | None:
        """Read one shard; a reason when it cannot be read (the shard checks report it too)."""
        self.files.append(name)
        if not path.is_file():
            return "missing"
        try:
            reader = pa.ipc.open_stream(pa.BufferReader(pa.memory_map(str(path)).read_buffer()))
            first = 0
            for batch in reader:
                self._add_batch(batch, first)
                first += batch.num_rows
        except (pa.ArrowInvalid, OSError, KeyError, ValueError, IndexError) as exc:
            return f"unreadable ({exc})"
        return None

    def _add_batch(self, batch: pa.RecordBatch, first: int) -> None:
        if any(c.null_count or getattr(c, "values", c).null_count for c in batch.columns):
            self.skipped_rows += batch.num_rows
            return
        if self.pairs:
            self._add_pairs(batch, first)
            return
        rows = RowBatch.from_batch(batch, first)
        good = sound(rows)
        if not good.all():
            self.skipped_rows += int((~good).sum())
            rows = rows.take(good)
        if not rows.n:
            return
        pieces = Pieces.of(rows)
        content = np.flatnonzero(~pieces.pad)
        starts, lens = pieces.start[content], pieces.end[content] - pieces.start[content]
        ids, mask = rows.ids, rows.mask
        if pieces.pad.any():
            flat = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()), dtype=np.int64)
            ids = ids[flat]
            mask = None if mask is None else mask[flat]
        at = np.cumsum(lens) - lens  # piece starts in the batch's content stream
        row_content = rows.lengths() - rows.num_pad
        self._row_starts.append(self.offset + np.cumsum(row_content) - row_content)
        self._row_files.append(np.full(rows.n, len(self.files) - 1, dtype=np.int64))
        self._row_numbers.append(rows.row)
        if self.documents:
            self._documents(ids, at, lens)
        else:
            labels = None
            if rows.label_id is not None:
                labels = rows.label_id[pieces.row[content]]
            elif rows.label_ids is not None:
                labels = rows.label_ids  # one per content piece, in order (checked by sound())
            self._keep(ids, mask, at, lens, labels, base=self.offset)
        self.offset += len(ids)

    def _add_pairs(self, batch: pa.RecordBatch, first: int) -> None:
        """Preference rows: one unit per row (an empty row, which the row checks report, is skipped)."""
        ids, segments, lens, labels, prompts = pair_units(batch)
        numbers = np.arange(batch.num_rows, dtype=np.int64) + first
        at = np.cumsum(lens) - lens
        self._row_starts.append(self.offset + at)
        self._row_files.append(np.full(batch.num_rows, len(self.files) - 1, dtype=np.int64))
        self._row_numbers.append(numbers)
        keep = np.flatnonzero(lens > 0)
        self.skipped_rows += batch.num_rows - len(keep)
        cuts = pair_cuts(prompts[keep], lens[keep])  # the halves meet at the prompt's end
        self._keep(ids, segments, at[keep], lens[keep], None if labels is None else labels[keep], base=self.offset, cuts=cuts)
        self.offset += len(ids)

    def _documents(self, ids: np.ndarray, at: np.ndarray, lens: np.ndarray) -> None:
        if self.eos is not None:
            cuts = (at + lens)[ids[at + lens - 1] == self.eos]  # a document ends with the piece holding its EOS
        else:
            cuts = at[ids[at] == self.bos]  # a document starts with the piece holding its BOS
        shift = len(self._carry)
        stream = np.concatenate([self._carry, ids]) if shift else ids
        bounds = np.unique(np.concatenate([[0], cuts + shift]))
        starts, ends = bounds[:-1], bounds[1:]
        base = self.offset - shift
        self._keep(stream, None, starts, ends - starts, None, base=base)
        self._carry = stream[int(bounds[-1]) :].copy()

    def finish(self) -> None:
        """Close the split: its last open document is a unit, or the partial one the remainder cut."""
        if not (self.documents and len(self._carry)):
            return
        base = self.offset - len(self._carry)
        if not self.remainder:
            self._keep(self._carry, None, np.zeros(1, np.int64), np.array([len(self._carry)]), None, base=base)
            return
        whole, first, second = keys3(self._carry, np.zeros(1, np.int64), np.array([len(self._carry)]))
        self.partial = Stored(base, len(self._carry), digest(self._carry), None, None, int(first[0]), int(second[0]), tokens=self._carry)

    def _keep(self, ids, mask, starts, lens, labels, *, base: int, cuts: np.ndarray | None = None) -> None:
        """Digest the units whose keys are wanted; keep them by digest, or as near candidates."""
        w = self.wanted
        self.units += len(lens)
        whole, first, second = keys3(ids, starts, lens, cuts)
        if w.whole is None:
            chosen = np.arange(len(lens))
        else:
            chosen = np.flatnonzero(np.isin(whole, w.whole) | np.isin(first, w.first) | np.isin(second, w.second))
        for i in chosen.tolist():
            a, n = int(starts[i]), int(lens[i])
            tokens = ids[a : a + n]
            piece_mask = None if mask is None else mask[a : a + n]
            unit = Stored(base + a, n, digest(tokens), digest(piece_mask), None if labels is None else int(labels[i]), int(first[i]), int(second[i]))
            if unit.digest in w.digests:
                if w.variants[unit.digest] != 1 or (unit.digest, unit.mask_digest, unit.label) not in w.triples:
                    unit.mask = None if piece_mask is None else piece_mask.copy()
                self.by_digest[unit.digest].append(unit)
            elif len(self.near) < NEAR_LIMIT:
                unit.tokens, unit.mask = tokens.copy(), None if piece_mask is None else piece_mask.copy()
                self.near.append(unit)
            else:
                self.not_kept += 1

    # --- places --------------------------------------------------------------------------

    def place(self, offset: int) -> tuple[str, int, int]:
        """(shard, row, position) of a content-stream offset."""
        if len(self._row_starts) != 1:  # joined once
            parts = (self._row_starts, self._row_files, self._row_numbers)
            self._row_starts, self._row_files, self._row_numbers = ([np.concatenate(p) if p else np.zeros(0, np.int64)] for p in parts)
        starts, files, numbers = self._row_starts[0], self._row_files[0], self._row_numbers[0]
        r = max(int(np.searchsorted(starts, offset, side="right")) - 1, 0)
        return f"{self.split}/{self.files[int(files[r])]}", int(numbers[r]), int(offset - starts[r])

    def unclaimed(self) -> list[Stored]:
        """Kept units no re-made unit claimed (``--sample all``), in stream order."""
        units = [u for group in self.by_digest.values() for u in group if not u.claimed]
        units += [u for u in self.near if not u.claimed]
        if self.partial is not None and not self.partial.claimed:
            units.append(self.partial)
        return sorted(units, key=lambda u: u.start)


def sound(rows: RowBatch) -> np.ndarray:
    """Rows whose geometry can be trusted (pieces sum to the row, a valid pad piece, one mask value
    per token, one label per example); the row checks report the others."""
    lengths = rows.lengths()
    ok = lengths > 0
    cumulative = np.concatenate(([0], np.cumsum(rows.seq_lens)))
    ok &= cumulative[rows.seq_starts[1:]] - cumulative[rows.seq_starts[:-1]] == lengths
    bad_piece = np.flatnonzero(rows.seq_lens <= 0)
    ok[np.searchsorted(rows.seq_starts, bad_piece, side="right") - 1] = False
    per_row = np.diff(rows.seq_starts)
    ok &= (rows.num_pad >= 0) & (rows.num_pad < np.maximum(lengths, 1)) & (per_row > 0)
    padded = np.flatnonzero(ok & (rows.num_pad > 0))
    ok[padded[rows.seq_lens[rows.seq_starts[padded + 1] - 1] != rows.num_pad[padded]]] = False
    if rows.mask_starts is not None:
        ok &= np.diff(rows.mask_starts) == lengths
    if rows.label_starts is not None:
        ok &= np.diff(rows.label_starts) == per_row - (rows.num_pad > 0)
    return ok


@dataclass
class Scan:
    """Both splits, read."""

    splits: dict[str, SplitUnits] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def scan(out: Path, manifest: Manifest, wanted: Wanted, *, documents: bool, eos: int | None, bos: int | None, remainder: dict[str, bool], pairs: bool = False) -> Scan:
    """Every shard of both splits, in manifest order."""
    result = Scan()
    for split in ("train", "validation"):
        units = SplitUnits(split, wanted, documents=documents, eos=eos, bos=bos, remainder=remainder[split], pairs=pairs)
        for entry in manifest.splits[split].shards:
            problem = units.add_shard(entry.file, out / split / entry.file)
            if problem:
                result.problems.append(f"{split}/{entry.file} {problem}")
        units.finish()
        result.splits[split] = units
    return result
