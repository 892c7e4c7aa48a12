"""Check 8, ``--recheck-sources``: re-make a sample of source records and find them in the dataset.

The output stores no per-row provenance, and needs none: the pipeline is deterministic and
works record by record up to packing (normalize, filter, render, tokenize, mask, split by
content hash), so running the recipe's own chunk worker on one record gives exactly the
tokens (and loss mask) that record became, and which split it went to. Packing only places
those tokens: a fine-tuning example or a ``bfd`` document is one piece, a ``wrap`` document
runs from after one EOS to its own EOS. So each re-made unit is looked up by content in the
stored units (:mod:`.units` hashes every unit whose key is wanted), and must be there::

    manifest inputs + recipe + tokenizer -> sample N readable records (seeded, uniform)
      -> the recipe's worker on each record -> tokens, mask, split
      -> the same tokens in that split?  the same loss mask?

Before sampling, the inputs' sizes and sha256 and the tokenizer fingerprint are compared with
the manifest: a change there is the usual cause of a stale dataset and is reported as such.
Not re-checkable, and said so in the notes: trained tokenizers are taken from the dataset's own
copy (retraining would need the whole corpus); ``wrap`` without EOS has no document marks; a
document in the dropped final remainder of a split is not stored at all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import columns as C
from ..errors import DataprepError
from ..read import DROP_REASONS, file_sha256, file_size, read_batches, read_records, resolve_inputs
from .contract import manifest_tokenizer, recipe_dir, recipe_of
from .findings import Finding, Report
from .units import Hashed, digest, key_of


@dataclass
class Unit:
    """One re-made unit and where its record came from."""

    source: str
    line: str
    split: str
    tokens: np.ndarray
    mask: np.ndarray | None
    key: int = 0
    digest: bytes = b""
    mask_digest: bytes | None = None


@dataclass
class Expected:
    units: list[Unit] = field(default_factory=list)
    dropped_tokens: dict[str, int] = field(default_factory=dict)  # per split: the wrap remainder not stored

    @property
    def keys(self) -> np.ndarray:
        return np.unique(np.asarray([u.key for u in self.units], dtype=np.uint64))


def prepare(manifest: dict[str, Any], out: Path, *, sample: int, seed: int, report: Report) -> Expected | None:
    """Re-make ``sample`` records; findings about changed inputs or tokenizer go to ``report``."""
    base = recipe_dir(manifest)
    if base is None:
        report.notes.append("recheck skipped: cannot tell which folder the recipe's relative paths were resolved against (the manifest has no recipe_dir)")
        return None
    try:
        recipe = recipe_of(manifest, base_dir=base)
        files = resolve_inputs(recipe.inputs, base_dir=base)
        tokenizer = manifest_tokenizer(manifest, out)
    except DataprepError as exc:
        report.add(Finding("recheck_unavailable", f"cannot rebuild the recipe's inputs or tokenizer: {exc}", file=C.MANIFEST_FILE))
        return None
    report.extend(_changed_inputs(manifest, files))
    if tokenizer.fingerprint != manifest["tokenizer"]["fingerprint"]:
        why = f"the tokenizer at {manifest['tokenizer']['source']} has fingerprint {tokenizer.fingerprint[:16]}..., the dataset was made with {manifest['tokenizer']['fingerprint'][:16]}..."
        report.add(Finding("tokenizer_changed", why, file=C.MANIFEST_FILE, path="tokenizer.fingerprint"))
    if manifest.get("objective") or recipe.task == "fewshot":
        what = f"objective {manifest['objective']['name']}" if manifest.get("objective") else "few-shot prompts"
        report.notes.append(f"recheck skipped: rows of {what} are not re-made record by record (masks, spans and demonstrations depend on other records)")
        return None
    if recipe.task == "pretrain" and recipe.packing.mode == "wrap" and not (recipe.tokenizer.add_eos and tokenizer.eos_id is not None):
        report.notes.append("recheck skipped: wrap rows without EOS have no document boundaries to find documents by")
        return None
    if manifest["tokenizer"]["trained"]:
        report.notes.append("recheck uses the tokenizer saved in the dataset (a trained tokenizer is not retrained)")
    counts = manifest["counts"]
    readable = counts["records_read"] - sum(counts["dropped"].get(r, 0) for r in DROP_REASONS)
    picks = np.sort(np.random.default_rng(seed).choice(readable, size=min(sample, readable), replace=False)) if readable > 0 else np.zeros(0, np.int64)
    expected = Expected(dropped_tokens={s: manifest["packing"][s]["dropped_tokens"] for s in C.SPLITS})
    made = Counter()
    for source, line, result in _remake(recipe, tokenizer, files, manifest, picks):
        made["sampled"] += 1
        if isinstance(result, _Failed):
            report.add(Finding("recheck_refused", f"the recipe now refuses this record, which the run accepted: {result.message}", file=source, line=line))
            continue
        if not len(result.lengths):
            made["dropped_by_recipe"] += 1
            continue
        split = "validation" if bool(result.validation[0]) else "train"
        mask = result.extras.get(C.LOSS_MASK)
        tokens = result.tokens
        if recipe.task == "pretrain" and recipe.packing.mode == "bfd" and len(tokens) > recipe.packing.seq_len:
            cuts = range(0, len(tokens), recipe.packing.seq_len)  # a long document is stored in seq_len pieces
            pieces = [(tokens[i : i + recipe.packing.seq_len], None) for i in cuts]
        else:
            pieces = [(tokens, mask)]
        for ids, piece_mask in pieces:
            unit = Unit(source, line, split, ids, piece_mask, key_of(ids), digest(ids), None if piece_mask is None else digest(piece_mask))
            expected.units.append(unit)
    report.stats["recheck"] = dict(made)
    return expected


def _changed_inputs(manifest: dict[str, Any], files) -> list[Finding]:
    findings = []
    recorded = {entry["path"]: entry for entry in manifest["inputs"]}
    now = [f.location for f in files]
    for path in sorted(set(recorded) - set(now)):
        findings.append(Finding("source_changed", "read by the run, but no longer among the recipe's inputs", file=path))
    for path in sorted(set(now) - set(recorded)):
        findings.append(Finding("source_changed", "among the recipe's inputs now, but not read by the run", file=path))
    for file in files:
        entry = recorded.get(file.location)
        if entry is None or (not file.url and file.path.is_dir()):
            continue
        size = file_size(file)
        if size != entry["bytes"] or file_sha256(file) != entry["sha256"]:
            findings.append(Finding("source_changed", f"changed since the run ({size:,} bytes now, {entry['bytes']:,} then, or different content)", file=file.location))
    return findings


def _remake(recipe, tokenizer, files, manifest, picks: np.ndarray):
    """(file, line, ChunkResult) for each picked readable record, in input order."""
    from .. import pretrain, sft

    if recipe.task == "pretrain":
        work = pretrain.chunk_worker(recipe, tokenizer)
    else:
        labels = manifest["sft"]["labels"]
        labels = None if labels is None else tuple(sorted(labels, key=labels.get))
        work = sft.SftWorker(recipe, tokenizer, files, labels)
    seen = 0
    wanted = iter(picks.tolist())
    target = next(wanted, None)
    for index, file in enumerate(files):
        if target is None:
            return
        if recipe.task == "pretrain":
            batches = read_batches(file, index, batch_size=recipe.output.chunk_records, on_error="skip", drops=Counter())
        else:
            batches = read_records(file, index, fields=sft.fields_for(recipe, file.entry), batch_size=recipe.output.chunk_records, on_error="skip", drops=Counter())
        for batch in batches:
            while target is not None and target < seen + batch.num_rows:
                one = batch.slice(target - seen, 1)
                line = sft.location(file, one.column(C.LINE)[0].as_py())
                try:
                    result = work((index, one))
                except DataprepError as exc:
                    yield file.location, line, _Failed(str(exc))
                else:
                    yield file.location, line, result
                target = next(wanted, None)
            seen += batch.num_rows
            if target is None:
                return


@dataclass
class _Failed:
    """A record the recipe now refuses (it was accepted when the dataset was made)."""

    message: str
    lengths: tuple = ()


def compare(expected: Expected, hashed: dict[str, Hashed]) -> list[Finding]:
    """Each re-made unit against the stored ones: same tokens, same split, same loss mask."""
    index = {split: {d: i for i, d in enumerate(h.digests)} for split, h in hashed.items()}
    findings = []
    for unit in expected.units:
        where = {"file": unit.source, "line": unit.line}
        i = index[unit.split].get(unit.digest)
        if i is not None:
            stored = hashed[unit.split]
            if unit.mask_digest is not None and stored.masks[i] != unit.mask_digest:
                why = f"re-makes the example stored at {stored.place(i)} with the same tokens but a different loss mask: the template or masking changed since the run"
                findings.append(Finding("recheck_mask", why, **where))
            continue
        other = "train" if unit.split == "validation" else "validation"
        j = index[other].get(unit.digest)
        if j is not None:
            why = f"re-makes a unit stored in {other} ({hashed[other].place(j)}), but its content hash now puts it in {unit.split}: the split salt or fraction changed"
            findings.append(Finding("recheck_split", why, **where))
            continue
        if len(unit.tokens) <= expected.dropped_tokens.get(unit.split, 0):
            continue  # may lie in the split's dropped remainder, which is not stored
        head = " ".join(map(str, unit.tokens[:8].tolist()))
        why = f"re-makes {len(unit.tokens):,} tokens ({head} ...) that the {unit.split} split does not hold: the dataset is stale (tokenizer, template, normalization or code changed since the run)"
        findings.append(Finding("recheck_tokens", why, **where))
    return findings
