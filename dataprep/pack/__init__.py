"""Packing token sequences into fixed-length rows.

Both packers take batches of documents as a flat token array plus document lengths (BOS/EOS
already included) and return :class:`~dataprep.pack.rows.PackedRows`; their output depends only
on the stream of documents, not on how it was split into ``add()`` calls.

- ``rows``: :class:`PackedRows` (rows stored flat with offsets, with their pieces), ``RowBlocks``
  (re-cuts a stream of rows into blocks of a fixed number of rows, for seeded per-row work) and
  ``PackStats`` (a packer's counters).
- ``layout``: what both packers share: checks of their options and ``add()`` batches, and
  ``build_rows`` (content pieces laid out row after row, padded to ``seq_len`` when asked).
- ``wrap``: ``WrapPacker`` (pretraining): concatenate and cut every ``seq_len`` tokens; a
  document may run on into the next row.
- ``bfd``: ``BfdPacker`` (fine-tuning): best-fit decreasing over a bounded buffer; no document
  straddles two rows.
"""
