"""Read dataprep's Arrow output into PyTorch batches: memory-mapped rows, seeded order, collation.

Three parts, usable alone or together::

    ArrowRows(path, "train")          one split, memory-mapped: row i -> numpy views, no copy
    StepSampler(n, batch_size=, seed=, start_step=, rank=, world_size=)
                                      batch k = this rank's rows of a seeded permutation; a pure
                                      function of (seed, k, rank), so resuming at step k needs no
                                      saved state (dataprep.train.sampler)
    Collator(pad_id=)                 rows -> input_ids, labels, position_ids, document_ids,
                                      cu_seqlens (and, on request, a block-causal attention mask)

``Batches`` chains the three into an ``IterableDataset`` of ready batches, with ``state_dict()``.
For Hugging Face ``Trainer`` (and any ``model(**batch)``): ``HFRows`` + ``HFCollator``
(:mod:`dataprep.train.hf_collate`). Work per batch is a
few numpy operations per *row* and per *batch*; nothing loops over tokens in Python.

A packed row of two examples and a pad piece (fine-tuning, ``assistant_masks`` 1 = target), as the
collator returns it. ``labels`` follow the Hugging Face convention: aligned with ``input_ids``,
the model shifts them, so ``labels[t]`` is what position ``t - 1`` must predict::

    input_ids       = [ 5  6  7  8 |  9 10 11 | 0  0]      seq_lengths = [4, 3, 2], num_pad = 2
    assistant_masks = [ 0  0  1  1 |  0  1  1 | 0  0]
    labels          = [-100 -100 7 8 | -100 10 11 | -100 -100]
    position_ids    = [ 0  1  2  3 |  0  1  2 | 0  1]
    document_ids    = [ 0  0  0  0 |  1  1  1 | 2  2]      (pad is a segment of its own)
    cu_seqlens   = [0, 4, 7, 9]                         (over the flattened batch)

Each piece's first token is never a label, even in pretraining rows (where every other token
is): nothing before it in its own segment predicts it, so no loss crosses a boundary. Pad is
never a label, and attends only to pad, so no row of the attention mask is empty.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset, get_worker_info

from dataprep import columns as C
from dataprep.dataset.manifest import Manifest
from dataprep.dataset.reader import Dataset, open_dataset
from dataprep.errors import ConfigError, DataError
from dataprep.train.hf_collate import HFCollator, hf_row
from dataprep.train.sampler import StepSampler

Row = dict[str, Any]  # input_ids, seq_lengths, num_pad (+ assistant_masks, labels, label_id | label_ids): numpy views

__all__ = ["ArrowRows", "Batches", "Collator", "DatasetInfo", "HFCollator", "HFRows", "StepSampler", "hf_row", "read_info"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a trainer needs from a dataset's manifest.

    Attributes:
        dataset: the opened dataset (manifest, memory-mapped splits, tokenizer).
        task: ``pretrain`` or ``sft``.
        name: the recipe's name.
        seq_len: the longest row.
        vocab_size: the tokenizer's vocabulary size.
        pad_id: the id that fills pad pieces.
        stop_ids: the tokens that end an answer (``sft.stop_token_ids``, else EOS); may be empty.
        labels: label -> id for classification datasets, else None.
    """

    dataset: Dataset
    task: str
    name: str
    seq_len: int
    vocab_size: int
    pad_id: int
    stop_ids: tuple[int, ...]
    labels: dict[str, int] | None

    @property
    def path(self) -> Path:
        return self.dataset.path

    @property
    def manifest(self) -> Manifest:
        """The dataset's manifest, typed."""
        return self.dataset.manifest


def read_info(path: str | Path | Dataset) -> DatasetInfo:
    """The facts about the dataset at ``path`` that training needs, as its manifest states them
    (:class:`~dataprep.dataset.manifest.Manifest`; shard checksums are not checked).

    Raises:
        InputError: ``path`` is not a dataprep dataset, or its manifest does not match its schema.
    """
    ds = path if isinstance(path, Dataset) else open_dataset(path)
    facts = ds.manifest
    tok = facts.tokenizer
    pad_id = facts.padding.pad_token_id
    if pad_id is None:
        pad_id = tok.special_ids.get("pad", tok.eos_id) or 0
    # an example's targets end at a stop id; with none stated (pretraining, masking: generation) EOS ends them
    stops = facts.stop_ids or ((tok.eos_id,) if tok.eos_id is not None else ())
    return DatasetInfo(
        dataset=ds,
        task=facts.task,
        name=facts.recipe.get("name", ds.path.name),
        seq_len=facts.rows.length,
        vocab_size=tok.vocab_size,
        pad_id=int(pad_id),
        stop_ids=tuple(int(t) for t in stops),
        labels=None if facts.sft is None or facts.sft.labels is None else dict(facts.sft.labels),
    )


class _Column:
    """One column of one record batch as numpy views: flat ``values`` and ``offsets`` for lists."""

    def __init__(self, array: pa.Array):
        if pa.types.is_list(array.type):
            self.offsets = array.offsets.to_numpy()
            self.values = array.values.to_numpy(zero_copy_only=True)
        else:
            self.offsets = None
            self.values = array.to_numpy(zero_copy_only=True)

    def get(self, i: int) -> Any:
        if self.offsets is None:
            return int(self.values[i])
        return self.values[self.offsets[i] : self.offsets[i + 1]]


class ArrowRows(TorchDataset):
    """One split of a dataprep dataset, memory-mapped; ``rows[i]`` is a dict of numpy views.

    The shards are the Arrow IPC streams the manifest lists. Nothing is copied: the
    views point into the page cache, so opening a large split is instant and costs no memory.

    Args:
        path: the dataset folder (the one holding ``manifest.json``), or an opened one.
        split: ``train`` or ``validation``.
        columns: columns to read (default: every column the loader knows).

    Raises:
        InputError: not a dataset, no such split, or a shard that is not an Arrow stream.
    """

    def __init__(self, path: str | Path | Dataset, split: str = "train", *, columns: Sequence[str] | None = None):
        ds = path if isinstance(path, Dataset) else open_dataset(path)
        table = ds.table(split)  # memory-mapped, shards in manifest order; kept alive by the views' buffers
        wanted = set(columns or (C.INPUT_IDS, C.SEQ_LENS, C.NUM_PAD, C.LOSS_MASK, C.LABEL_ID, C.LABEL_IDS))
        self.split = split
        self._table = table
        batches = table.to_batches()
        self._batches = [{n: _Column(b.column(n)) for n in b.schema.names if n in wanted} for b in batches]
        self.columns = tuple(self._batches[0]) if self._batches else ()
        self._starts = np.concatenate(([0], np.cumsum([b.num_rows for b in batches], dtype=np.int64)))

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i: int) -> Row:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows")
        i %= len(self)
        b = int(np.searchsorted(self._starts, i, side="right")) - 1
        local = i - int(self._starts[b])
        return {name: col.get(local) for name, col in self._batches[b].items()}

    def __getitems__(self, indices: Sequence[int]) -> list[Row]:
        # torch's DataLoader calls this with a whole batch of indices: one call, not B
        return [self[int(i)] for i in indices]

    def num_tokens(self) -> int:
        """Tokens in the split, pad included."""
        return int(sum(b[C.INPUT_IDS].offsets[-1] - b[C.INPUT_IDS].offsets[0] for b in self._batches))


class HFRows(ArrowRows):
    """A split whose rows are ``input_ids``, ``labels``, ``position_ids`` (:func:`~dataprep.train.hf_collate.hf_row`):
    the keys a Hugging Face model's ``forward`` names, so ``Trainer`` keeps them with its default
    ``remove_unused_columns=True``. Collate with :class:`~dataprep.train.hf_collate.HFCollator`.

    Args: as :class:`ArrowRows`.
    """

    def __getitem__(self, i: int) -> Row:
        return hf_row(super().__getitem__(i))


class Collator:
    """Rows -> a batch of tensors, padded to the longest row (or ``pad_to``).

    Returns ``input_ids``, ``labels``, ``position_ids``, ``document_ids`` (``[B, T]`` int64),
    ``cu_seqlens`` (int32, every segment of the flattened batch, pad included), ``max_seqlen``
    (int), ``num_tokens`` (non-pad tokens), ``num_targets`` (labels that are not
    ``IGNORE_INDEX``), and, with ``attention_mask=True``, a ``[B, 1, T, T]`` bool block-causal
    mask (True = may attend) for ``scaled_dot_product_attention``. Rows with ``label_id`` or
    ``label_ids`` (classification) add ``class_labels`` and ``class_positions`` (flat indices into
    ``B * T``: the last prompt token of each example, whose hidden state a head reads).

    A row may carry ``label_values`` (same length as ``input_ids``): labels are then taken from it
    instead of ``input_ids``; the mask proof uses this to change labels without changing inputs.

    Args:
        pad_id: id written into padding.
        pad_to: pad every batch to this length (default: the longest row of the batch).
        attention_mask: also return the dense block-causal mask.
    """

    def __init__(self, *, pad_id: int, pad_to: int | None = None, attention_mask: bool = False):
        self.pad_id, self.pad_to, self.attention_mask = pad_id, pad_to, attention_mask

    def __call__(self, rows: Sequence[Mapping[str, Any]], *, step: int | None = None) -> dict[str, Any]:
        # ``step`` (the batch number, from Batches) is unused here; collators that draw randomness
        # per batch (dynamic MLM masks) seed from it
        ids = [np.asarray(r[C.INPUT_IDS], dtype=np.int64) for r in rows]
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        T = int(max(lengths.max(initial=1), self.pad_to or 0))
        B = len(rows)
        input_ids = np.full((B, T), self.pad_id, dtype=np.int64)
        values = input_ids.copy()
        target = np.zeros((B, T), dtype=bool)
        pieces, pad_piece = [], []
        for b, r in enumerate(rows):
            n = lengths[b]
            input_ids[b, :n] = ids[b]
            values[b, :n] = r.get("label_values", ids[b])
            target[b, :n] = np.asarray(r[C.LOSS_MASK], dtype=bool) if C.LOSS_MASK in r else True
            seq = np.asarray(r[C.SEQ_LENS], dtype=np.int64)
            pad = np.zeros(len(seq), dtype=bool)
            if int(r.get(C.NUM_PAD, 0)) > 0:
                pad[-1] = True
                target[b, n - int(r[C.NUM_PAD]) : n] = False
            pieces.append(seq)
            pad_piece.append(pad)
            if n < T:  # the collator's own padding is one more pad piece
                pieces.append(np.array([T - n]))
                pad_piece.append(np.array([True]))
        seg_lens = np.concatenate(pieces)
        seg_pad = np.concatenate(pad_piece)
        if seg_lens.sum() != B * T:
            raise DataError("a row's seq_lengths do not sum to its length; the dataset is damaged", fix="run `dataprep validate` on it, and build it again")
        ends = np.cumsum(seg_lens)
        starts = ends - seg_lens
        seg_of_token = np.repeat(np.arange(len(seg_lens)), seg_lens)
        flat_target = target.reshape(-1)
        flat_target[starts] = False  # each piece's first token: nothing in its segment predicts it
        labels = np.where(target, values, C.IGNORE_INDEX)
        batch: dict[str, Any] = {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "position_ids": torch.from_numpy((np.arange(B * T) - starts[seg_of_token]).reshape(B, T)),
            "document_ids": torch.from_numpy(seg_of_token.reshape(B, T)),
            "cu_seqlens": torch.from_numpy(np.concatenate(([0], ends)).astype(np.int32)),
            "max_seqlen": int(seg_lens.max()),
            "num_tokens": int(seg_lens[~seg_pad].sum()),
            "num_targets": int(flat_target.sum()),
        }
        if self.attention_mask:
            doc = batch["document_ids"]
            causal = torch.ones(T, T, dtype=torch.bool).tril()
            batch["attention_mask"] = ((doc[:, :, None] == doc[:, None, :]) & causal)[:, None]
        if rows and (C.LABEL_ID in rows[0] or C.LABEL_IDS in rows[0]):
            batch.update(self._classes(rows, flat_target, starts[~seg_pad], ends[~seg_pad]))
        return batch

    @staticmethod
    def _classes(rows: Sequence[Mapping[str, Any]], flat_target: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> dict[str, torch.Tensor]:
        labels = np.concatenate([np.atleast_1d(np.asarray(r.get(C.LABEL_IDS, r.get(C.LABEL_ID)))) for r in rows])
        if len(labels) != len(starts):
            raise DataError(f"{len(labels)} class labels for {len(starts)} examples; the dataset is damaged", fix="run `dataprep validate` on it, and build it again")
        # the head reads the token before an example's first target: the end of its prompt
        where = np.append(np.flatnonzero(flat_target), np.iinfo(np.int64).max)
        first = np.minimum(where[np.searchsorted(where, starts)], ends)  # no target: read its last token
        return {"class_labels": torch.from_numpy(labels.astype(np.int64)), "class_positions": torch.from_numpy(first - 1)}


class Batches(IterableDataset):
    """Collated batches of one split in :class:`StepSampler` order: the loader in one object.

    With a ``DataLoader(batches, batch_size=None, num_workers=W)``, worker ``w`` builds steps
    ``start_step + w``, ``+ W``, ...; the DataLoader takes them round-robin, so the order is the
    same for any ``W``. :meth:`state_dict` is the position after the last batch handed out by
    iterating this object, or :meth:`loader` (which counts in this process whatever the workers);
    :meth:`load_state_dict` continues from it, mid-epoch included, with the identical stream.

    Args:
        rows: the split.
        collator: turns rows into tensors.
        batch_size: rows per batch (per rank).
        seed: seed of the order.
        start_step: the first batch (resume here).
        num_steps: how many batches (None: forever; one pass when not shuffling).
        shuffle: False: file order (evaluation).
        rank, world_size: this rank's share of every global batch (:class:`StepSampler`).
    """

    def __init__(self, rows: ArrowRows, collator: Collator, *, batch_size: int, seed: int = 0, start_step: int = 0,
                 num_steps: int | None = None, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.rows, self.collator = rows, collator
        self.sampler = StepSampler(len(rows), batch_size=batch_size, seed=seed, start_step=start_step,
                                   num_steps=num_steps, shuffle=shuffle, rank=rank, world_size=world_size)
        self.taken = 0  # batches handed out since start_step, counted in the process that iterates

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for n, indices in enumerate(self.sampler):
            if n % workers == worker and (indices or self.sampler.shuffle):
                batch = self.collator(self.rows.__getitems__(indices), step=self.sampler.start_step + n)
                if info is None:
                    self.taken = n + 1
                yield batch

    def loader(self, *, num_workers: int = 0, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Batches from a ``DataLoader`` with ``num_workers`` workers, counted for :meth:`state_dict`."""
        if num_workers == 0:
            yield from self
            return
        from torch.utils.data import DataLoader

        for n, batch in enumerate(DataLoader(self, batch_size=None, num_workers=num_workers, **kwargs)):
            self.taken = n + 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands: the next step, and what fixes the order (checked on load)."""
        s = self.sampler
        stop = None if s.num_steps is None else s.start_step + s.num_steps
        return {"step": s.start_step + self.taken, "stop": stop, "seed": s.seed, "batch_size": s.batch_size,
                "shuffle": s.shuffle, "rank": s.rank, "world_size": s.world_size, "num_rows": s.num_rows}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (:meth:`state_dict`): the next batch is the one that would have come next.

        Raises:
            ConfigError: ``state`` was saved for another order (seed, batch size, ranks or split size).
        """
        s = self.sampler
        mine = self.state_dict()
        differ = [k for k in ("seed", "batch_size", "shuffle", "rank", "world_size", "num_rows") if state[k] != mine[k]]
        if differ:
            raise ConfigError("the loader state was saved for another order: " + ", ".join(f"{k} {state[k]} != {mine[k]}" for k in differ)
                              + "; build Batches with the saved settings to resume")
        s.start_step, self.taken = int(state["step"]), 0
        s.num_steps = None if state["stop"] is None else int(state["stop"]) - s.start_step

    def __len__(self) -> int:
        return len(self.sampler)
