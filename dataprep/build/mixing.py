"""A mixture run's two halves: collect every kept document per source and split on disk, then draw
the mixture from them into the packers (the rates, samples and interleaving: :mod:`dataprep.pack.mixture`).

The ordered stage hands :meth:`Mixing.add` what it would have packed: documents after dedup, with
their split. They go to flat files in the run's work folder (tokens, per-token extras, per-document
lengths, input file, stats), appended in input order and read back memory-mapped, so the collected
corpus never sits in memory. :meth:`Mixing.draw` then resolves each source's rate from its available
training tokens and feeds the packers block by block, counting what it wrote per source and split
(the manifest's ``mixture``) and every document it left out (drop reason ``mixture``).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dataprep import columns as C
from dataprep.pack.mixture import MIXTURE, MixtureSpec, Stream, pass_masks, schedule, train_rates, validation_rates

log = logging.getLogger("dataprep.run")

MIXTURE_DIR = "mixture.incomplete"  # in the run's work folder: the collected documents, removed after the draw
BATCH_TOKENS = 1 << 20  # drawn tokens handed to the packer at once
TOKENS, LENGTHS, FILE, UNKNOWN = "tokens", "lengths", "file", "unknown"  # the spool's own columns
EXTRA, STAT = "x.", "s."  # spool column prefixes: a per-token extra, a per-document stat
REPEAT_WARN = 4  # epochs of one source over which the run warns


class Spool:
    """Append-only flat files, one per column, for one source and split."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.dtypes: dict[str, np.dtype] = {}
        self.handles: dict[str, Any] = {}
        self.docs = 0  # documents appended
        self.mapped: dict[str, np.ndarray] = {}  # columns read back (memory-mapped)

    def append(self, columns: dict[str, np.ndarray], docs: int) -> None:
        """Append ``docs`` documents' columns. A per-document stat (``s.`` name) may be new (earlier
        documents get zeros) or absent (these get zeros): which stats a chunk has depends on its data,
        e.g. the languages it holds."""
        for name in [n for n in self.dtypes if n.startswith(STAT) and n not in columns]:
            columns[name] = np.zeros(docs, dtype=np.int64)
        for name, values in columns.items():
            if name not in self.handles:
                self.dtypes[name] = values.dtype
                self.handles[name] = open(self.folder / f"{name}.bin", "wb")  # noqa: SIM115 - closed in close()
                if name.startswith(STAT) and self.docs:
                    self.handles[name].write(np.zeros(self.docs, dtype=values.dtype).tobytes())
            self.handles[name].write(np.ascontiguousarray(values, dtype=self.dtypes[name]).tobytes())
        self.docs += docs

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()

    def state(self) -> dict[str, Any]:
        """Flush every column to disk (fsync) and say how long each is: what a checkpoint records."""
        for handle in self.handles.values():
            handle.flush()
            os.fsync(handle.fileno())
        return {"docs": self.docs, "dtypes": dict(self.dtypes),
                "sizes": {name: handle.tell() for name, handle in self.handles.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state`: each column cut back to its recorded length (a crash may have
        written past it) and reopened for appending."""
        self.docs, self.dtypes = state["docs"], dict(state["dtypes"])
        for name, size in state["sizes"].items():
            handle = open(self.folder / f"{name}.bin", "r+b")  # noqa: SIM115 - closed in close()
            handle.truncate(size)
            handle.seek(size)
            self.handles[name] = handle

    def read(self, name: str) -> np.ndarray:
        """A column, memory-mapped once (empty when nothing was appended); after :meth:`close`."""
        if name not in self.mapped:
            path = self.folder / f"{name}.bin"
            if name not in self.dtypes or path.stat().st_size == 0:
                self.mapped[name] = np.zeros(0, dtype=self.dtypes.get(name, np.int64))
            else:
                self.mapped[name] = np.memmap(path, dtype=self.dtypes[name], mode="r")
        return self.mapped[name]


class Mixing:
    """The ordered stage's mixture: :meth:`add` collects, :meth:`draw` writes the mix.

    Args:
        spec: the recipe's mixture.
        entries: the run's input files' recipe entries (``InputFile.entry``), by file index.
        folder: where the collected documents go (in the run's work folder; removed after the draw).
        block: tokens per interleaved block (about one row).
        unk_id: the tokenizer's unknown-token id (counted per written token), or None.
    """

    def __init__(self, spec: MixtureSpec, entries: list[int], folder: Path, *, block: int, unk_id: int | None):
        self.spec = spec
        owner = spec.source_of_entries(max(e for source in spec.sources for e in source.entries) + 1)
        self.source_of_file = [owner[e] for e in entries]
        self.folder = folder
        self.block = max(1, block)
        self.unk_id = unk_id
        self.spools = {(s, split): Spool(folder / f"{s}-{split}") for s in range(len(spec.sources)) for split in C.SPLITS}
        self.report: list[dict[str, Any]] = []  # per source, after draw(): the manifest's mixture.sources

    def state(self) -> dict[str, Any]:
        """The collected documents' extent, per source and split (their files are flushed first)."""
        return {key: spool.state() for key, spool in self.spools.items()}

    def restore(self, state: dict[str, Any]) -> None:
        for key, spool in self.spools.items():
            spool.restore(state[key])

    def add(self, split: str, file: int, tokens: np.ndarray, lengths: np.ndarray, extras: dict[str, np.ndarray],
            stats: dict[str, np.ndarray]) -> None:
        """Collect documents of input file ``file`` kept for ``split``."""
        columns = {TOKENS: tokens, LENGTHS: lengths.astype(np.int64), FILE: np.full(len(lengths), file, np.int32)}
        if self.unk_id is not None and len(lengths):
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            columns[UNKNOWN] = np.add.reduceat((tokens == self.unk_id).astype(np.int64), starts)
        columns.update({f"{EXTRA}{name}": values for name, values in extras.items()})
        columns.update({f"{STAT}{name}": values.astype(np.int64) for name, values in stats.items()})
        self.spools[self.source_of_file[file], split].append(columns, len(lengths))

    def draw(self, pack: Callable[[str, np.ndarray, np.ndarray, dict[str, np.ndarray]], None], stage: Any) -> None:
        """Draw every split's mixture into ``pack(split, tokens, lengths, extras)``; count documents,
        stats, unknown tokens, per-file figures and the ``mixture`` drops into ``stage``."""
        for spool in self.spools.values():
            spool.close()
        sources = range(len(self.spec.sources))
        available = [int(self.spools[s, "train"].read(LENGTHS).sum()) for s in sources]
        rates = {"train": train_rates(self.spec, available)}
        rates["validation"] = validation_rates(rates["train"])
        for source, rate in zip(self.spec.sources, rates["train"]):
            if rate > REPEAT_WARN:
                log.warning("mixture source %s is repeated %.1f times: beyond about %d epochs repeated tokens are worth "
                            "much less than new ones (Muennighoff et al. 2023, Scaling Data-Constrained Language Models); "
                            "fix: more data for it, or a lower weight or tokens", source.name, rate, REPEAT_WARN)
        self.report = [{"name": s.name, "requested": s.requested} for s in self.spec.sources]
        for k, split in enumerate(C.SPLITS):
            self._draw_split(k, split, rates[split], pack, stage)
        for split in C.SPLITS:  # shares of the split's tokens, asked and drawn
            entries = [r[split] for r in self.report]
            asked, drawn = sum(e["requested_tokens"] for e in entries), sum(e["tokens"] for e in entries)
            for e in entries:
                e["requested_share"] = e["requested_tokens"] / asked if asked else 0.0
                e["share"] = e["tokens"] / drawn if drawn else 0.0
        for spool in self.spools.values():
            spool.mapped.clear()  # unmapped, so the folder's disk space comes back now
        shutil.rmtree(self.folder, ignore_errors=True)

    def _draw_split(self, k: int, split: str, rates: list[float], pack, stage) -> None:
        spools = [self.spools[s, split] for s in range(len(rates))]
        lengths = [sp.read(LENGTHS) for sp in spools]
        streams = [Stream(np.asarray(n), pass_masks(np.asarray(n), rate, (self.spec.seed, k, s)))
                   for s, (n, rate) in enumerate(zip(lengths, rates))]
        offsets = [np.concatenate([[0], np.cumsum(n)]) for n in lengths]
        occurrences = [np.zeros(len(n), dtype=np.int64) for n in lengths]
        batch: list[tuple[int, int, int, np.ndarray | None]] = []
        pending = 0
        for source, start, stop, mask in schedule(streams, self.block):
            occurrences[source][start:stop] += 1 if mask is None else mask
            batch.append((source, start, stop, mask))
            pending += int(offsets[source][stop] - offsets[source][start])  # a bound (a sample draws fewer)
            if len(batch) >= 64 or pending >= BATCH_TOKENS:
                self._flush(split, batch, spools, offsets, pack)
                batch, pending = [], 0
        self._flush(split, batch, spools, offsets, pack)
        for s, (spool, count) in enumerate(zip(spools, occurrences)):
            self._count(s, split, spool, count, stage)
            entry = self.report[s][split]
            entry["epochs"] = rates[s]
            entry["requested_tokens"] = round(rates[s] * entry["available_tokens"])

    def _flush(self, split, batch, spools, offsets, pack) -> None:
        if not batch:
            return
        tokens, lengths, extras = [], [], {}
        for source, start, stop, mask in batch:
            spool, at = spools[source], offsets[source]
            n = np.asarray(spool.read(LENGTHS)[start:stop])
            piece = slice(int(at[start]), int(at[stop]))
            keep = None if mask is None else np.repeat(mask, n)
            lengths.append(n if mask is None else n[mask])
            for name in [TOKENS] + [c for c in spool.dtypes if c.startswith(EXTRA)]:
                values = np.asarray(spool.read(name)[piece])
                values = values if keep is None else values[keep]
                (tokens.append(values) if name == TOKENS else extras.setdefault(name[len(EXTRA):], []).append(values))
        pack(split, np.concatenate(tokens), np.concatenate(lengths), {k: np.concatenate(v) for k, v in extras.items()})

    def _count(self, s: int, split: str, spool: Spool, count: np.ndarray, stage) -> None:
        """What source ``s`` wrote to ``split``: into the stage's counters and :attr:`report`."""
        lengths, files = np.asarray(spool.read(LENGTHS)), np.asarray(spool.read(FILE))
        drawn = count > 0
        stage.documents[split] += int(drawn.sum())
        for name in spool.dtypes:
            if name.startswith(STAT):
                stage.stats[name[len(STAT):]] += int((np.asarray(spool.read(name)) * count).sum())
        if UNKNOWN in spool.dtypes:
            unknown = np.asarray(spool.read(UNKNOWN))
            stage.unknown[split] += int((unknown * count).sum())
            _add(stage.source_unknown, files[drawn], unknown[drawn])
        _add(stage.source_documents, files[drawn], np.ones(int(drawn.sum()), np.int64))
        _add(stage.source_tokens, files[drawn], lengths[drawn])
        left_out = Counter(files[~drawn].tolist())
        for file, n in left_out.items():
            stage.source_drops.setdefault(file, Counter())[MIXTURE] += n
        stage.drops[MIXTURE] += int((~drawn).sum())
        self.report[s][split] = {
            "available_documents": len(lengths), "available_tokens": int(lengths.sum()),
            "documents": int(drawn.sum()), "occurrences": int(count.sum()), "tokens": int((lengths * count).sum()),
        }


def _add(counter: Counter, keys: np.ndarray, values: np.ndarray) -> None:
    """``counter[key] += value`` for every pair (keys repeat)."""
    if len(keys):
        sums = np.bincount(keys, weights=values, minlength=0)
        for key in np.flatnonzero(sums):
            counter[int(key)] += int(sums[key])
