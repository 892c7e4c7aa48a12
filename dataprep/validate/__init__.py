"""``dataprep validate``: prove a dataset (or its raw inputs) before a training run.

Two entry points, both returning :class:`Findings` (a report of :class:`Finding` s: what, where,
why) and never raising for bad data:

- :func:`validate_dataset` checks a folder ``dataprep run`` wrote (:mod:`.check_dataset`):
  the manifest and every shard file, row types, token ids, row structure, document or example
  boundaries, train/validation overlap, and optionally re-made source records (:mod:`.recheck`).
- :func:`validate_inputs` checks raw input records with ``run``'s own code, streamed
  (:mod:`.check_inputs`): with a recipe, its readers and workers in a check-only mode that
  reports exactly what ``run`` would drop or stop on (:mod:`.check_recipe`); with a record kind
  (``--as``), its readers alone.

Modules: ``findings`` (Finding, Findings), ``contract`` (what a manifest promises), ``check_manifest``
(check 1), ``check_rows`` (2-4), ``check_tokens`` (5-6), ``units`` (7), ``recheck`` (8),
``check_dataset`` (runs 1-8), ``check_recipe`` and ``check_inputs`` (raw inputs).
"""

from .check_dataset import validate_dataset
from .check_inputs import INPUT_KINDS, validate_inputs
from .findings import Finding, Findings

__all__ = ["INPUT_KINDS", "Finding", "Findings", "validate_dataset", "validate_inputs"]
