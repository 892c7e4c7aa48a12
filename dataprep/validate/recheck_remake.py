"""Re-making source records for ``--recheck-sources``: the recipe's own chunk worker, record by record.

A batch of wanted records goes through the worker at once; when it keeps fewer examples than
records (a record filtered or refused), each half is re-made again, down to single records,
so each result is tied to its record (file, line). Pretraining ``bfd`` cuts a document longer than
``seq_len`` into ``seq_len`` pieces, as :class:`~dataprep.pack.bfd.BfdPacker` does: one unit each.
A preference pair (or KTO example) is one unit: its flat prompt + responses, the worker's
segment per token in the mask's place and the KTO label in the label's (:mod:`.recheck_pairs`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .. import columns as C
from ..dataset.manifest import Manifest
from ..dataset.manifest_parts import EXAMPLES, PIECES, STREAM
from ..errors import DataprepError
from dataprep.text.filters import DUPLICATE, content_hashes
from ..read import read_batches, read_records
from . import recheck_pairs as pairs
from .contract import ROW_SCHEMAS

WORK_RECORDS = 256  # records per worker call: a dropped record costs about 3x this in re-work


@dataclass
class Unit:
    """One re-made unit: what one record (or one bfd piece of it) must be in the rows."""

    record: Remade
    tokens: np.ndarray
    mask: np.ndarray | None
    label: int | None
    digest: bytes = b""  # set by the matcher, with the mask's digest and the half keys
    mask_digest: bytes | None = None
    first: int = 0
    second: int = 0


@dataclass
class Remade:
    """One readable record, re-made: its split, content hash and units (none: the recipe drops it)."""

    index: int  # among the readable records, in input order
    source: str
    line: str
    split: str = "train"
    hash: bytes = b""
    units: list[Unit] = field(default_factory=list)
    refused: str | None = None  # the recipe raises on it
    duplicate: bool = False  # --sample all: an earlier record has the same content (dedup dropped it)

    @property
    def length(self) -> int:
        return sum(len(u.tokens) for u in self.units)


@dataclass
class Setup:
    """The recipe, tokenizer, inputs and worker that re-make records, and the dataset's facts."""

    recipe: Any
    tokenizer: Any
    files: list
    labels: tuple[str, ...] | None
    worker: Any
    out: Path
    manifest: Manifest
    eos: int | None
    bos: int | None
    readable: int = 0

    @staticmethod
    def build(recipe, tokenizer, files, labels, **facts) -> Setup:
        """Raises DataprepError when the worker cannot be built (a chat template that no longer compiles)."""
        from dataprep.tasks import pretrain
        from dataprep.tasks.sft.worker import SftWorker

        if recipe.task == "pretrain":
            worker = pretrain.chunk_worker(recipe, tokenizer)
        elif recipe.task == pairs.TASK:  # run's worker, over run's fine-tuning view of the recipe
            from dataprep.tasks.preference.task import as_sft, spec_of
            from dataprep.tasks.preference.worker import preference_worker

            spec = spec_of(recipe)
            worker = preference_worker(as_sft(recipe, spec), spec, tokenizer, files)
        else:
            worker = SftWorker(recipe, tokenizer, files, labels)
        return Setup(recipe, tokenizer, files, labels, worker, **facts)

    @property
    def mode(self) -> str:
        return self.recipe.packing.mode

    @property
    def documents(self) -> bool:
        """Units are wrap documents (else examples or bfd pieces): the manifest's ``rows.layout``."""
        return self.manifest.rows.layout == STREAM

    @property
    def pairs(self) -> bool:
        """Units are preference pairs or KTO examples (:mod:`.recheck_pairs`)."""
        return self.recipe.task == pairs.TASK

    @property
    def kto(self) -> bool:
        return self.pairs and ROW_SCHEMAS.get(self.manifest.format) == pairs.KTO_ROWS

    @property
    def examples(self) -> bool:
        """Units are fine-tuning examples (``rows.layout: examples``)."""
        return self.manifest.rows.layout == EXAMPLES

    @property
    def dedup(self) -> bool:
        return self.recipe.filter.dedup == "exact"

    @property
    def dropped(self) -> dict[str, int]:
        """Per split, the wrap remainder's tokens (0 unless ``remainder: drop`` cut a row)."""
        return {s: self.manifest.packing[s].dropped_tokens if self.documents else 0 for s in C.SPLITS}

    def read(self, index: int, file) -> Iterator[pa.RecordBatch]:
        from dataprep.tasks.sft.records import fields_for

        r = self.recipe
        if r.task == "pretrain":
            return read_batches(file, index, batch_size=r.output.chunk_records, on_error="skip", drops=Counter())
        if self.pairs:
            from dataprep.tasks.preference.task import spec_of
            from dataprep.tasks.preference.worker import fields_for as pair_fields

            fields = pair_fields(spec_of(r), file.entry)
        else:
            fields = fields_for(r, file.entry)
        return read_records(file, index, fields=fields, batch_size=r.output.chunk_records, on_error="skip", drops=Counter())


def remake(setup: Setup, picks: Iterable[int] | None) -> Iterator[Remade]:
    """The picked readable records (ascending indices; None: all), re-made, in input order."""
    from dataprep.tasks.sft.records import location

    wanted = None if picks is None else iter(picks)
    target = None if wanted is None else next(wanted, None)
    seen = 0
    for index, file in enumerate(setup.files):
        if wanted is not None and target is None:
            return
        for batch in setup.read(index, file):
            n = batch.num_rows
            if wanted is None:
                local = list(range(n))
            else:
                local = []
                while target is not None and target < seen + n:
                    local.append(target - seen)
                    target = next(wanted, None)
            if local:
                sub = batch if len(local) == n else batch.take(pa.array(local))
                lines = [location(file, line) for line in sub.column(C.LINE).to_pylist()]
                for a in range(0, len(local), WORK_RECORDS):
                    part = sub.slice(a, WORK_RECORDS)
                    yield from _work(setup, index, file.location, part, [seen + i for i in local[a : a + WORK_RECORDS]], lines[a : a + WORK_RECORDS])
            seen += n
            if wanted is not None and target is None:
                return


def _work(setup: Setup, index: int, source: str, batch: pa.RecordBatch, indices: list[int], lines: list[str]) -> Iterator[Remade]:
    """Re-make a batch of records; when the worker keeps fewer examples than records (or raises),
    each half again, down to the record it dropped (or refuses)."""
    refused = None
    try:
        result = setup.worker((index, batch))
    except DataprepError as exc:
        result, refused = None, str(exc)
    if result is not None and len(result.lengths) == batch.num_rows:
        offsets = np.concatenate(([0], np.cumsum(result.lengths))).tolist()
        for k, (i, line) in enumerate(zip(indices, lines)):
            yield _fill(setup, Remade(i, source, line), result, k, offsets[k], offsets[k + 1])
    elif batch.num_rows == 1:
        yield Remade(indices[0], source, lines[0], refused=refused)  # dropped by the recipe, or refused
    else:
        half = batch.num_rows // 2
        yield from _work(setup, index, source, batch.slice(0, half), indices[:half], lines[:half])
        yield from _work(setup, index, source, batch.slice(half), indices[half:], lines[half:])


def _fill(setup: Setup, record: Remade, result, k: int, a: int, b: int) -> Remade:
    """Record ``k`` of a chunk result (its tokens ``a:b``): split, hash and units."""
    record.split = "validation" if bool(result.validation[k]) else "train"
    record.hash = result.hashes[k]
    tokens = np.ascontiguousarray(result.tokens[a:b], dtype=np.int32)
    mask = result.extras.get(C.SEGMENT if setup.pairs else C.LOSS_MASK)
    mask = None if mask is None else np.ascontiguousarray(mask[a:b], dtype=np.uint8)
    labels = result.extras.get(C.KTO_LABEL if setup.pairs else C.LABEL_ID)
    label = None if labels is None or a == b else int(labels[a])
    if not len(tokens):
        return record  # nothing to write (the packers skip empty documents)
    L = setup.recipe.packing.seq_len
    if setup.manifest.rows.layout == PIECES and len(tokens) > L:
        record.units = [Unit(record, tokens[i : i + L], None, None) for i in range(0, len(tokens), L)]
    else:
        record.units = [Unit(record, tokens, mask, label)]
    return record


# --- the stream of stored documents, and the wrap remainder --------------------------------


def stream(records: list[Remade], *, dedup: bool, seen: set[bytes] | None = None) -> dict[str, list[Remade]]:
    """The records the ordered stage writes, per split, in order: with ``dedup`` the first of each
    content hash (``seen``: hashes of earlier records); marks the others ``duplicate``."""
    seen = set() if seen is None else seen
    out: dict[str, list[Remade]] = {s: [] for s in C.SPLITS}
    for record in records:
        if not record.units:
            continue
        if dedup:
            record.duplicate = record.hash in seen
            if record.duplicate:
                continue
            seen.add(record.hash)
        out[record.split].append(record)
    return out


@dataclass
class Tail:
    """A split's wrap remainder: the records it holds whole, and the one it cut (with the tokens stored)."""

    records: set[tuple[str, str]] = field(default_factory=set)
    hashes: set[bytes] = field(default_factory=set)
    cut: tuple[str, str, int] | None = None
    short: int | None = None  # the re-made stream is this many tokens, fewer than the remainder


def tail_of(docs: list[Remade], dropped: int, *, complete: bool) -> Tail | None:
    """The remainder of ``dropped`` tokens at the end of ``docs`` (a split's last written records,
    in order); None when ``docs`` do not reach back past it and are not the ``complete`` stream."""
    tail, total = Tail(), 0
    for record in reversed(docs):
        if total == dropped:
            return tail  # the remainder starts exactly after this record, which is stored whole
        n = record.length
        tail.hashes.add(record.hash)
        if total + n > dropped:
            tail.cut = (record.source, record.line, total + n - dropped)
            return tail
        tail.records.add((record.source, record.line))
        total += n
    if total == dropped:
        return tail
    if complete:
        tail.short = total
        return tail
    return None


def window_tail(setup: Setup, split: str) -> Tail | None:
    """The split's remainder from the last records of the inputs, going back until it is covered."""
    n, size = setup.readable, 256
    while True:
        low = max(n - size, 0)
        records = list(remake(setup, range(low, n)))
        seen = earlier_hashes(setup, low) if setup.dedup and low > 0 else set()
        tail = tail_of(stream(records, dedup=setup.dedup, seen=seen)[split], setup.dropped[split], complete=low == 0)
        if tail is not None:
            return tail
        size *= 4


def earlier_hashes(setup: Setup, upto: int) -> set[bytes]:
    """Content hashes of the records the recipe keeps among the first ``upto`` readable ones
    (pretraining: normalize and filter only, as the worker does before tokenizing)."""
    if not setup.manifest.counts.dropped.get(DUPLICATE):
        return set()  # the run dropped no duplicate: nothing earlier can make one
    if setup.examples:
        return {r.hash for r in remake(setup, range(upto)) if r.units}
    from dataprep.tasks.pretrain import clean_texts

    hashes: set[bytes] = set()
    seen = 0
    for index, file in enumerate(setup.files):
        for batch in setup.read(index, file):
            if seen >= upto:
                return hashes
            batch = batch.slice(0, upto - seen)
            seen += batch.num_rows
            hashes.update(content_hashes(clean_texts(batch, setup.recipe, Counter())))
    return hashes
