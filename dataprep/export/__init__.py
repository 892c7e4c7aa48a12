"""Export a built dataset to the files other trainers read: ``dataprep export OUT --to FORMAT``.

This package owns the exporters and nothing else: it reads a dataset through
:func:`dataprep.dataset.reader.open_dataset` (the typed manifest, the memory-mapped splits, the
tokenizer) and never imports the code that built it (``dataprep.tasks``, ``dataprep.build``).

::

    export.run.export(OUT, FORMAT)        checks, refuses, writes DEST.incomplete, renames it to DEST
      base.Exporter                       one per format: name, refusal(manifest, columns), write(ds, split, dest)
        megatron.Megatron                 Megatron-LM / NeMo indexed dataset: SPLIT.bin + SPLIT.idx (MMIDIDX)
        nanogpt.NanoGPT                   nanoGPT: train.bin / val.bin (uint16 or uint32) + meta.pkl
        mds.Mds                           MosaicML streaming: SPLIT/ shards written by MDSWriter
        parquet.Parquet                   SPLIT.parquet: the rows as they are, every column
        jsonl.Jsonl                       SPLIT.jsonl: every column plus decoded text and targets
      pieces                              rows -> content tokens, pieces and whole documents, one batch at a time
      provenance                          DEST/export.json: where the export came from and what it holds

Every exporter streams over the split's record batches (a batch at a time, never a split in
Python lists). Formats that hold only tokens (Megatron, nanoGPT) refuse a dataset whose rows
carry more than tokens (a loss mask, labels, class labels): they would drop what trains the model.
"""

from dataprep.export.base import Exporter
from dataprep.export.run import EXPORTERS, export

__all__ = ["EXPORTERS", "Exporter", "export"]
