"""Check 8, ``--recheck-sources``: re-make source records with the recipe and find them in the rows.

The output stores no per-row provenance, and needs none: the pipeline is deterministic and
works record by record up to packing (normalize, filter, render, tokenize, mask, label, split
by content hash), so the recipe's own chunk worker on one record gives exactly the tokens, loss
mask and label_id that record became, and its split. Packing only places them: a fine-tuning
example or a ``bfd`` piece is one piece of one row, a ``wrap`` document runs from one document
boundary to the next across rows. So each re-made *unit* is looked up by content among the
stored ones (:mod:`.recheck_rows`), and every token, mask value and label is compared::

    manifest -> inputs + recipe + tokenizer -> sample N readable records (seeded; or all)
      -> the recipe's worker on them -> per record: tokens, loss mask, label_id, split
      -> stored unit with the same digest?  -> same loss mask?  same label_id?
         else in the other split?          -> split changed
         else the wrap remainder?          -> the part that was written, token by token
         else a stored unit sharing a half -> the changed tokens, with row and position
         else                              -> stale: the split does not hold it

The ``wrap`` remainder (``remainder: drop``) is the last ``packing.<split>.dropped_tokens``
tokens of the split's document stream: whole documents not stored, and before them at most one
document cut by it, whose head is the split's last, unterminated stored document. Which
records those are is worked out by re-making the last records of the inputs (further back
until the remainder is covered; with ``dedup`` the earlier records' hashes say which of them
are duplicates), so a remainder record is checked exactly, never assumed.

``--sample all`` re-makes every record and replays dedup (first occurrence wins), so each
stored unit must be claimed by exactly one record: a unit no record re-makes is a finding too.
It holds the re-made tokens in memory (about 5 bytes per token).

A preference pair (or KTO example) is one unit: its columns end to end, which column each token
is in compared as the loss mask is, the KTO label as the label (:mod:`.recheck_pairs`).

Before re-making, the inputs' sizes and sha256 and the tokenizer fingerprint are compared with
the manifest: a change there is the usual cause of a stale dataset and is reported as such.
Not re-checkable, and said so in the notes: trained tokenizers are taken from the dataset's own
copy (retraining would need the whole corpus); ``wrap`` with neither EOS nor BOS has no document
marks; MLM, span corruption and few-shot rows depend on other records.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import columns as C
from ..errors import DataprepError
from dataprep.dataset.manifest import Manifest
from dataprep.dataset.manifest_parts import STREAM
from ..read import DROP_REASONS, file_sha256, file_size, resolve_inputs
from dataprep.text.tokenizer import LoadedTokenizer, TokenizerSpec, load_tokenizer
from . import recheck_remake as remaking
from .contract import recipe_of
from .findings import Finding, Findings
from .recheck_match import match
from .recheck_remake import Remade, Setup, Tail

ALL = "all"  # --sample all: every readable record


@dataclass
class Expected:
    """The re-made records and what compare needs to find them."""

    setup: Setup
    records: list[Remade]
    every: bool
    report: Findings
    tails: dict[str, Tail | None] = field(default_factory=dict)

    @property
    def keys(self) -> np.ndarray:
        """Keys for the main pass to watch: none, compare reads the rows itself."""
        return np.zeros(0, dtype=np.uint64)

    def tail(self, split: str) -> Tail | None:
        """The split's wrap remainder, worked out once (see the module docstring)."""
        if split not in self.tails:
            s = self.setup
            if self.every:
                docs = remaking.stream(self.records, dedup=s.dedup)
                self.tails[split] = remaking.tail_of(docs[split], s.dropped[split], complete=True)
            else:
                self.tails[split] = remaking.window_tail(s, split)
        return self.tails[split]


def prepare(manifest: Manifest, out: Path, *, sample: int | str, seed: int, report: Findings) -> Expected | None:
    """Re-make ``sample`` records (``"all"``: every one); findings about changed inputs or tokenizer go to ``report``."""
    setup = _setup(manifest, Path(out), report)
    if setup is None:
        return None
    readable = setup.readable
    every = sample == ALL or int(sample) >= readable
    if every:
        records = list(remaking.remake(setup, None))
        if len(records) != readable:
            why = f"the inputs now give {len(records):,} readable records; the run read {readable:,} (manifest counts)"
            report.add(Finding("recheck_records", why, file=C.MANIFEST_FILE, path="counts.records_read"))
    else:
        picks = np.sort(np.random.default_rng(seed).choice(readable, size=int(sample), replace=False)) if readable > 0 else np.zeros(0, np.int64)
        records = list(remaking.remake(setup, picks.tolist()))
        if len(records) < len(picks):
            why = f"the inputs now give fewer readable records than the {readable:,} the run read: {len(picks) - len(records):,} sampled record(s) are not there"
            report.add(Finding("recheck_records", why, file=C.MANIFEST_FILE, path="counts.records_read"))
    made = Counter(sampled=len(records))
    for record in records:
        if record.refused is not None:
            report.add(Finding("recheck_refused", f"the recipe now refuses this record, which the run accepted: {record.refused}", file=record.source, line=record.line))
        elif not record.units:
            made["dropped_by_recipe"] += 1
    if every:
        remaking.stream(records, dedup=setup.dedup)  # marks the duplicates the run dropped
        made["duplicates"] = sum(r.duplicate for r in records)
    report.stats["recheck"] = {k: v for k, v in made.items() if v or k == "sampled"}
    return Expected(setup, records, every, report)


def compare(expected: Expected, hashed: Any = None) -> list[Finding]:
    """Each re-made unit against the stored ones: tokens, split, loss mask, label_id (see the module docstring).

    ``hashed`` (the main pass's unit digests) is not used: the recheck reads the rows itself,
    keeping near misses and every mask and label it must compare.
    """
    return match(expected)


# --- set-up ------------------------------------------------------------------------------


def _setup(manifest: Manifest, out: Path, report: Findings) -> Setup | None:
    base = manifest.recipe_folder()
    if base is None:
        report.notes.append("recheck skipped: cannot tell which folder the recipe's relative paths were resolved against (the manifest has no recipe_dir)")
        return None
    try:
        recipe = recipe_of(manifest, base_dir=base)
        files = resolve_inputs(recipe.inputs, base_dir=base)
        tokenizer = _tokenizer(manifest, out)
    except DataprepError as exc:
        report.add(Finding("recheck_unavailable", f"cannot rebuild the recipe's inputs or tokenizer: {exc}", file=C.MANIFEST_FILE))
        return None
    report.extend(_changed_inputs(manifest, files))
    if tokenizer.fingerprint != manifest.tokenizer.fingerprint:
        why = f"the tokenizer at {tokenizer.source} has fingerprint {tokenizer.fingerprint[:16]}..., the dataset was made with {manifest.tokenizer.fingerprint[:16]}..."
        report.add(Finding("tokenizer_changed", why, file=C.MANIFEST_FILE, path="tokenizer.fingerprint"))
    if manifest.objective is not None or manifest.fewshot is not None:
        what = f"objective {manifest.objective.name}" if manifest.objective is not None else "few-shot prompts"
        report.notes.append(f"recheck skipped: rows of {what} are not re-made record by record (masks, spans and demonstrations depend on other records)")
        return None
    rows = manifest.rows  # what the run stated: how documents sit in the rows, and how they are framed
    eos = manifest.tokenizer.eos_id if rows.ends_with_eos else None
    bos = manifest.tokenizer.bos_id if rows.starts_with_bos else None
    if rows.layout == STREAM and eos is None and bos is None:
        report.notes.append("recheck skipped: wrap rows without EOS or BOS have no document boundaries to find documents by")
        return None
    if manifest.tokenizer.trained:
        report.notes.append("recheck uses the tokenizer saved in the dataset (a trained tokenizer is not retrained)")
    labels = manifest.sft.labels if manifest.sft is not None else None
    labels = None if labels is None else tuple(sorted(labels, key=labels.get))
    try:
        setup = Setup.build(recipe, tokenizer, files, labels, out=out, manifest=manifest, eos=eos, bos=bos)
    except DataprepError as exc:
        report.add(Finding("recheck_unavailable", f"cannot build the recipe's worker: {exc}", file=C.MANIFEST_FILE))
        return None
    counts = manifest.counts
    setup.readable = counts.records_read - sum(counts.dropped.get(r, 0) for r in DROP_REASONS)
    return setup


def _tokenizer(manifest: Manifest, out: Path) -> LoadedTokenizer:
    """The tokenizer the manifest names: the copy saved in the dataset, or its recorded source."""
    spec = dict(manifest.recipe.get("tokenizer", {}))
    spec.pop("train", None)
    spec["path"] = manifest.tokenizer_path(out)
    return load_tokenizer(TokenizerSpec(**spec), base_dir=out, warn=False)  # the run warned already


def _changed_inputs(manifest: Manifest, files) -> list[Finding]:
    findings = []
    same = (lambda p: p if "://" in p else os.path.normpath(p))
    recorded = {same(manifest.resolve(entry.path)): entry for entry in manifest.inputs}
    now = {same(f.location): f for f in files}
    for path in sorted(set(recorded) - set(now)):
        findings.append(Finding("source_changed", "read by the run, but no longer among the recipe's inputs", file=path))
    for path in sorted(set(now) - set(recorded)):
        findings.append(Finding("source_changed", "among the recipe's inputs now, but not read by the run", file=path))
    for path, file in now.items():
        entry = recorded.get(path)
        if entry is None or (not file.url and file.path.is_dir()):
            continue
        size = file_size(file)
        if size != entry.bytes or file_sha256(file) != entry.sha256:
            findings.append(Finding("source_changed", f"changed since the run ({size:,} bytes now, {entry.bytes:,} then, or different content)", file=file.location))
    return findings
