"""``validate_dataset(out)``: every check on a dataset ``dataprep run`` built, in one read of each shard.

::

    manifest.json -> schema, recipe hash, totals (check 1)       folder -> missing / extra shards, state.json
    tokenizer files -> digests, vocab size, special roles (9)
    for each split (smaller first), shards on worker threads:
        read the shard once -> size + checksum (1) -> Arrow stream -> column types (2)
        per record batch: ids < vocab (3) -> row structure (4) -> documents (5) or examples (6)
                          -> unknown tokens (9) -> unit keys, digests of watched units (7, 8)
        rows and tokens read vs the manifest (1)
    train vs validation digests (7); sampled source records re-made vs stored units (8)

Every check yields findings with what (kind), where (split, shard, row, position) and why.
Threads share the work shard by shard: numpy, Arrow and the hashes release the GIL.

Besides its one pass over the tokens, validate does a fixed amount of numpy work per record batch
(each a few dozen calls on per-row and per-piece arrays). ``run`` writes record batches of about
4M token slots (``output.batch_tokens``), which keeps that work small; a shard written in small
batches (an older dataprep wrote one per 4 MiB input chunk) validates correctly, only slower.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .. import columns as C
from ..dataset.manifest import Manifest
from ..dataset.manifest_parts import CORRUPTED, EXAMPLES, PIECES, STREAM, Shard
from .check_manifest import (
    checksum_of,
    iter_consistency,
    iter_layout,
    iter_manifest_issues,
    iter_shard_checksum,
    iter_shard_size,
    load_manifest,
    typed_manifest,
)
from .check_preference import COUNTS, PREFERENCE_ROWS, check_preference, iter_stated, pair_stats, prompt_in_both_splits
from .check_rows import RowBatch, Scope, _list, check_nulls, check_schema, check_structure, check_vocab
from .check_objectives import check_fewshot, check_mlm, check_span
from .check_tokenizer import bound, check_tokenizer, count_unknown, unknown_tokens
from .check_tokens import Pieces, check_pretrain, check_sft, special_ids
from .contract import Contract, contract_of
from .findings import Finding, Findings
from .scan import FileScan
from .units import ALL, Hashed, ShardUnits, merge_documents, overlap


@dataclass
class ShardResult:
    findings: list[Finding]
    units: ShardUnits
    rows: int = 0
    tokens: int = 0
    unknown: int = 0  # unknown-token ids (check 9)
    targets: int = 0  # target tokens (fine-tuning) or chosen positions (mlm static)
    maskable: int = 0
    bytes: int = 0
    parts: Counter = field(default_factory=Counter)  # preference: tokens per column, desirable KTO examples


def validate_dataset(out: str | Path, *, max_errors: int = 50, full_hash: bool = False, workers: int = 0, recheck: int = 0, seed: int = 0) -> Findings:
    """Check a dataset folder; every problem becomes a finding, nothing raises for bad data.

    Args:
        out: The folder ``dataprep run --out`` wrote.
        max_errors: Findings kept in the report (all are counted).
        full_hash: Verify sha256 even when the manifest also records the faster xxh3_128.
        workers: Threads reading shards (0: up to 4, one per core).
        recheck: Re-read this many sampled source records, re-make them with the recipe and
            compare with the stored rows (0: off). See :mod:`dataprep.validate.recheck`.
        seed: Seeds the recheck sample.

    Returns:
        The report: findings, counts by kind, stats (rows, tokens, target ratio, seconds) and notes.
    """
    started = time.perf_counter()
    out = Path(out)
    report = Findings(str(out), "dataset", max_errors=max_errors)
    manifest = _read_manifest(out, report)
    if manifest is None:
        return report
    report.extend(iter_consistency(manifest))
    report.extend(iter_layout(out, manifest, report.notes))
    contract = contract_of(manifest, report.notes)
    found_tokenizer, tokenizer = check_tokenizer(manifest, out, report.notes)  # check 9
    report.extend(found_tokenizer)
    contract = bound(contract, tokenizer)
    expected = None
    if recheck:
        from .recheck import prepare

        expected = prepare(manifest, out, sample=recheck, seed=seed, report=report)
    workers = workers or min(os.cpu_count() or 1, 4)
    tokens_per_split = {s: manifest.splits[s].tokens for s in C.SPLITS}
    small, large = sorted(C.SPLITS, key=lambda s: (tokens_per_split[s], s != "validation"))
    hashed: dict[str, Hashed] = {}
    totals: dict[str, Any] = {"bytes": 0, "rows": {}, "tokens": {}, "units": {}, "unknown": {}, "parts": {}}
    targets = content = maskable = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for split in (small, large):
            watch = ALL if split == small else _watch(hashed[small], expected)
            shards = manifest.splits[split].shards
            results = list(pool.map(lambda entry: check_shard(out, split, entry, contract, watch, full_hash, tokenizer.unk_id), shards))
            for result in results:
                report.extend(result.findings)
                totals["bytes"] += result.bytes
                targets += result.targets
                maskable += result.maskable
                content += result.tokens
            totals["rows"][split] = sum(r.rows for r in results)
            totals["tokens"][split] = sum(r.tokens for r in results)
            totals["unknown"][split] = sum(r.unknown for r in results)
            totals["parts"][split] = sum((r.parts for r in results), Counter())
            hashed[split] = merge_documents([r.units for r in results])
            totals["units"][split] = sum(r.units.units for r in results)
    if contract.schema_name in PREFERENCE_ROWS:  # the units are prompts: pairs are split by prompt
        describe = prompt_in_both_splits(out, tokenizer.decode)
        report.extend(overlap(hashed[small], small, hashed[large], large, kind="pref_prompt_in_both_splits", describe=describe))
    else:
        _split_overlap(report, list(overlap(hashed[small], small, hashed[large], large)), contract, manifest)
    stated = manifest.sft.target_tokens if manifest.sft is not None else None
    if stated is not None and stated != targets and report.ok:  # other findings already explain a difference
        why = f"sft.target_tokens is {stated:,} but the rows hold {targets:,} target tokens"
        report.add(Finding("manifest_inconsistent", why, file=C.MANIFEST_FILE, path="sft.target_tokens"))
    if contract.schema_name in PREFERENCE_ROWS and report.ok:
        report.extend(iter_stated(manifest.preference, totals))
    if expected is not None:
        from .recheck import compare

        report.extend(compare(expected, hashed))
    seconds = time.perf_counter() - started
    report.stats.update(_stats(contract, totals, targets, content, seconds))
    if tokenizer.unk_id is not None:
        stats, found_unknown = unknown_tokens(manifest, totals["unknown"], totals["tokens"], tokenizer.unk_id)
        report.stats.update(stats)
        report.extend(found_unknown)
    if maskable:
        report.stats["mlm_chosen_ratio"] = round(targets / maskable, 6)
    return report


def _read_manifest(out: Path, report: Findings) -> Manifest | None:
    """The manifest, typed (check 1: the raw JSON against the schemas first); None when the shard
    and row checks cannot trust it (no manifest, or one that breaks its schema: each issue a finding)."""
    raw, problems = load_manifest(out)
    report.extend(problems)
    if raw is None:
        return None
    issues = list(iter_manifest_issues(raw))
    report.extend(issues)
    if any(f.kind == "manifest_schema" and not (f.path or "").startswith("recipe.") for f in issues):
        report.notes.append("shard and row checks skipped: the manifest does not match its schema, so it cannot be trusted to describe them")
        return None
    manifest, refused = typed_manifest(raw)
    report.extend(refused)
    return manifest


def _split_overlap(report: Findings, found: list[Finding], contract: Contract, manifest: Manifest) -> None:
    """Units in both splits are findings (check 7), unless the units are pieces of documents the
    run says it cut (``rows.layout: pieces``, ``rows.cut_documents``: bfd cuts documents longer
    than seq_len, mlm those longer than a framed piece). Those pieces lie apart, so two different
    documents can end in the same tail piece (or share an aligned stretch): equal pieces in both
    splits are not proof of a leak, and a note says so."""
    if not (found and contract.layout == PIECES and contract.cut_documents):
        report.extend(found)
        return
    pieces = sum(f.count or 1 for f in found)
    split_docs = sum(manifest.packing[s].split_documents for s in C.SPLITS)
    report.notes.append(
        f"split overlap: {pieces:,} piece(s) appear in both splits; with {split_docs:,} documents cut into "
        "pieces (manifest rows.cut_documents, packing.*.split_documents), equal pieces can come from different "
        "documents, so they are not findings; wrap packing compares whole documents"
    )


def _watch(small: Hashed, expected) -> np.ndarray:
    """Sorted unique keys to hash in the larger split."""
    keys = np.unique(np.asarray(small.keys, dtype=np.uint64))
    if expected is not None:
        keys = np.union1d(keys, expected.keys)
    return keys


def check_shard(out: Path, split: str, entry: Shard, contract: Contract, watch, full_hash: bool, unk_id: int | None = None) -> ShardResult:
    """Read one shard once and run checks 1 to 6 on it, collecting its units for 7 and 8."""
    name = f"{split}/{entry.file}"
    scope = Scope(name, split)
    # documents run through the rows and end at their EOS: they are the units; else pieces are
    documents = contract.layout == STREAM and contract.add_eos and contract.eos_id is not None
    units = ShardUnits(name, documents=documents, eos=contract.eos_id, watch=watch)
    result = ShardResult(scope.findings, units)
    path = out / split / entry.file
    if not path.is_file():
        return result  # reported as shard_missing with the layout
    # Memory-mapped, not read: the scan's one pass over every byte is also what brings it in
    # (a read would copy the file first: ~30% of validate's time on a warm page cache).
    data = pa.memory_map(str(path)).read_buffer()
    result.bytes = data.size
    for finding in iter_shard_size(data.size, entry, name=name, split=split):
        scope.add(finding)
    algorithm, expected = checksum_of(entry, full_hash=full_hash)
    scan = FileScan(data, algorithm if data.size == entry.bytes else None, special_ids(contract))
    first = 0
    try:
        reader = pa.ipc.open_stream(pa.BufferReader(data))
        types_ok = check_schema(reader.schema, contract, scope)
        for batch in reader:
            if types_ok:
                result.tokens += _check_batch(batch, first, contract, scope, units, result, scan, unk_id)
            first += batch.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        what = "not an Arrow IPC stream" if first == 0 else f"the Arrow stream breaks off after row {first:,}"
        scope.add(Finding("shard_unreadable", f"{what}: {exc}", file=name, split=split))
        types_ok = False
    digest = scan.hexdigest()
    if digest is not None:
        for finding in iter_shard_checksum(digest, algorithm, expected, name=name, split=split):
            scope.add(finding)
    result.rows = first
    if first != entry.rows:
        scope.add(Finding("shard_rows", f"{first:,} rows, the manifest says {entry.rows:,}", file=name, split=split))
    if types_ok and result.tokens != entry.tokens:
        scope.add(Finding("shard_tokens", f"{result.tokens:,} content tokens, the manifest says {entry.tokens:,}", file=name, split=split))
    scope.close()
    return result


def _check_batch(batch: pa.RecordBatch, first: int, c: Contract, scope: Scope, units: ShardUnits, result: ShardResult, scan: FileScan, unk_id: int | None = None) -> int:
    """Checks 3 to 6 on one batch, then its units; returns its content tokens."""
    if c.schema_name in PREFERENCE_ROWS:  # pairs: their own row checks; their prompts are the units
        if not check_nulls(batch, first, scope):  # the tokens still count (a null label is not a token count problem)
            return sum(len(_list(column)[0]) for column in batch.columns if pa.types.is_list(column.type))
        tokens = check_preference(batch, first, c, scope)
        result.parts += tokens
        result.targets += sum(n for name, n in tokens.items() if name not in (C.PROMPT_IDS, *COUNTS))
        prompts, offsets = _list(batch.column(C.PROMPT_IDS))
        units.add_lists(prompts, offsets, np.arange(batch.num_rows) + first)
        return sum(n for name, n in tokens.items() if name not in COUNTS)
    summary = scan.tokens(batch.column(C.INPUT_IDS).values)
    if not check_nulls(batch, first, scope):
        return 0
    rows = RowBatch.from_batch(batch, first)
    content = int(len(rows.ids) - rows.num_pad.sum())
    check_vocab(rows, c, scope, summary)
    good = check_structure(rows, c, scope)
    whole = bool(good.all())
    if not whole:
        rows = rows.take(good)
    result.unknown += count_unknown(rows, unk_id)
    pieces = Pieces.of(rows)
    if c.layout == CORRUPTED:  # span corruption: sentinels and spans, not document pieces
        check_span(rows, c, scope)
    elif c.layout == EXAMPLES:  # fine-tuning and few-shot
        result.targets += check_sft(rows, pieces, c, scope)
        check_fewshot(rows, c, scope)
    else:  # pretraining documents (stream) or pieces of them
        check_pretrain(rows, pieces, c, scope, summary.counts if whole else None)
        chosen, maskable = check_mlm(rows, pieces, c, scope)
        result.targets += chosen
        result.maskable += maskable
    units.add(rows, pieces)
    return content


def _stats(c: Contract, totals: dict[str, Any], targets: int, content: int, seconds: float) -> dict[str, Any]:
    tokens = sum(totals["tokens"].values())
    stats: dict[str, Any] = {
        "rows": totals["rows"],
        "tokens": totals["tokens"],
        "examples" if c.layout == EXAMPLES else "documents": totals["units"],
    }
    if c.schema_name in PREFERENCE_ROWS:
        stats = pair_stats(c, totals)  # one pair per row, unpacked: pairs and tokens per column
    elif c.layout == EXAMPLES:
        stats["target_ratio"] = round(targets / content, 6) if content else 0.0
        stats["target_tokens"] = targets
        if c.stop_ids is not None:
            stats["stop_token_ids"] = list(c.stop_ids)
    stats["seconds"] = round(seconds, 3)
    stats["tokens_per_second"] = int(tokens / seconds) if seconds else 0
    stats["bytes_read"] = totals["bytes"]
    return stats
