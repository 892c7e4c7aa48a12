"""Megatron-LM / NeMo indexed dataset: ``SPLIT.bin`` (token ids) + ``SPLIT.idx`` (MMIDIDX index).

One Megatron document per dataprep document (:mod:`dataprep.export.pieces` says how documents are
found in the rows), each one sequence, so Megatron's shuffler moves whole documents and its
``--data-path DEST/train`` reads them as ``tools/preprocess_data.py`` would have written them.
Pads are not written. Ids are ``uint16`` when the vocabulary has fewer than 65,500 ids, else
``int32`` (Megatron's own ``DType.optimal_dtype``).

The index, as megatron-core's ``_IndexWriter`` writes it (little-endian)::

    b"MMIDIDX\\x00\\x00"  <Q version 1  <B dtype code (8 uint16, 4 int32)
    <Q sequences  <Q documents + 1
    int32[sequences] lengths  int64[sequences] byte offsets into .bin  int64[documents + 1] 0, 1, ..., n

Written here with numpy (a few lines), read back in the tests with megatron-core's own
``IndexedDataset``, so the reader that checks the files shares no code with their writer.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from dataprep.dataset.manifest_parts import STREAM
from dataprep.dataset.reader import Dataset
from dataprep.export.base import TokensOnly, Written, log
from dataprep.export.pieces import Documents, batches, content

MAGIC = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
UINT16_BELOW = 65500  # megatron.core.datasets.indexed_dataset.DType.optimal_dtype


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size < UINT16_BELOW else np.int32)


class Megatron(TokensOnly):
    name = "megatron"
    summary = "Megatron-LM / NeMo indexed dataset (SPLIT.bin + SPLIT.idx; --data-path DEST/SPLIT)"

    def write(self, ds: Dataset, split: str, dest: Path) -> Written:
        m = ds.manifest
        dtype = token_dtype(m.tokenizer.vocab_size)
        docs = Documents(m)
        lengths: list[np.ndarray] = []
        written = Written(files=[f"{split}.bin", f"{split}.idx"], documents=0, extra={"dtype": dtype.name})
        with open(dest / f"{split}.bin", "wb") as fh:
            for batch in batches(ds, split):
                c = content(batch)
                fh.write(c.tokens.astype(dtype).tobytes())
                lengths.append(docs.add(c))
                written.rows += c.rows
                written.tokens += len(c.tokens)
        lengths.append(docs.finish())
        doc_lens = np.concatenate(lengths) if lengths else np.empty(0, dtype=np.int64)
        write_index(dest / f"{split}.idx", doc_lens, dtype)
        written.documents = len(doc_lens)
        _check_documents(ds, split, written.documents)
        return written


def write_index(path: Path, doc_lens: np.ndarray, dtype: np.dtype) -> None:
    """The ``.idx`` of documents of ``doc_lens`` tokens, one sequence each."""
    n = len(doc_lens)
    pointers = np.concatenate([[0], np.cumsum(doc_lens[:-1], dtype=np.int64)]) * dtype.itemsize if n else np.empty(0)
    with open(path, "wb") as fh:
        fh.write(MAGIC + struct.pack("<Q", 1) + struct.pack("<B", DTYPE_CODES[dtype]))
        fh.write(struct.pack("<Q", n) + struct.pack("<Q", n + 1))
        fh.write(doc_lens.astype(np.int32).tobytes())
        fh.write(np.asarray(pointers, dtype=np.int64).tobytes())
        fh.write(np.arange(n + 1, dtype=np.int64).tobytes())


def _check_documents(ds: Dataset, split: str, found: int) -> None:
    """Say where the documents written are not the dataset's documents (never silently)."""
    m = ds.manifest
    stated = m.packing[split].documents
    if m.rows.cut_documents and m.rows.layout != STREAM:
        log.warning(
            "%s %s: %s documents were cut into pieces that lie apart in the rows (rows.cut_documents); "
            "each piece is written as its own Megatron document (%s written)",
            ds.path, split, f"{m.packing[split].split_documents:,}", f"{found:,}",
        )
    elif found != stated:
        pack = m.packing[split]
        if not (m.rows.ends_with_eos or m.rows.starts_with_bos):
            why = "documents that end exactly at a row's end are joined with the next (the rows have no EOS or BOS to tell)"
        elif pack.dropped_tokens:
            why = f"packing.remainder: drop left out the last {pack.dropped_tokens:,} tokens, with the documents in them"
        else:
            why = "an EOS or BOS inside a document at a row's end"
        log.warning("%s %s: %s Megatron documents written for %s dataset documents: %s",
                    ds.path, split, f"{found:,}", f"{stated:,}", why)
