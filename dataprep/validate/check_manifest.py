"""Check 1, the files: the manifest against its schema and itself, the folder layout, each shard file.

The manifest is read as JSON first, so that every way it breaks its schema becomes a finding
with its key path (:func:`~dataprep.dataset.manifest.manifest_issues`); one that matches is read
typed (:class:`~dataprep.dataset.manifest.Manifest`) for the rest.

Every shard listed must exist with the recorded size and checksum; a file the manifest does
not list is an extra shard, except the ``cache-*.arrow`` files that ``datasets`` writes beside
the data it maps or filters (``load_from_disk(OUT)["train"].map(...)``): those are counted in a
note, since the dataset is unchanged (``Dataset.cleanup_cache_files()`` removes them).
``state.json`` (what ``datasets.load_from_disk`` reads) must list
the same shards in the same order. The checksum is ``xxh3_128`` when the manifest records
one (about 30 GB/s), else ``sha256`` (about 1.8 GB/s); ``full_hash`` forces sha256.

A dataset with no row, or an empty split its recipe asks for (train always; validation when
``split.validation > 0``), is a finding unless the recorded recipe says ``allow_empty: true``:
``run`` refuses to write one, so it was made by an older dataprep or edited afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import columns as C
from ..dataset.manifest import Manifest, manifest_issues, read_json
from ..dataset.manifest_parts import Shard
from ..errors import InputError, ManifestError
from ..recipe import recipe_hash
from ..schema import iter_issues
from .findings import Finding

MANIFEST = C.MANIFEST_FILE
STATE = "state.json"
DATASET_DICT = "dataset_dict.json"


def load_manifest(out: Path) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The parsed manifest (JSON, unchecked), or None with the finding that says why there is none."""
    if not (out / MANIFEST).is_file():
        why = f"{out} has no {MANIFEST}: it is not a dataset dataprep finished writing"
        return None, [Finding("manifest_missing", why, file=MANIFEST)]
    try:
        return read_json(out), []
    except InputError as exc:
        return None, [Finding("manifest_unreadable", f"cannot read it as JSON: {exc.reason_message}", file=MANIFEST)]


def typed_manifest(manifest: dict[str, Any]) -> tuple[Manifest | None, list[Finding]]:
    """The manifest, typed; or None with the finding that names the keys its record refuses
    (after :func:`iter_manifest_issues` found none, only a key no schema rule covers)."""
    try:
        return Manifest.from_dict(manifest), []
    except ManifestError as exc:
        return None, [Finding("manifest_schema", exc.reason_message, file=MANIFEST, path=exc.location)]


def iter_manifest_issues(manifest: Any) -> Iterator[Finding]:
    """The manifest against ``manifest.schema.json``, its recipe against ``recipe.schema.json``
    and its ``recipe_hash``: the one place validate reads the raw JSON (to name every key that
    breaks the schema; everything after reads the typed :class:`Manifest`)."""
    for issue in manifest_issues(manifest):
        yield Finding("manifest_schema", issue.message, file=MANIFEST, path=issue.where)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("recipe"), dict):
        return
    for issue in iter_issues(manifest["recipe"], "recipe"):
        yield Finding("manifest_schema", issue.message, file=MANIFEST, path=f"recipe.{issue.where}")
    recorded = manifest.get("recipe_hash")
    actual = recipe_hash(manifest["recipe"])
    if isinstance(recorded, str) and recorded != actual:
        why = f"recipe_hash is {recorded[:16]}... but the recorded recipe hashes to {actual[:16]}...: the recipe was edited after the run"
        yield Finding("manifest_recipe_hash", why, file=MANIFEST, path="recipe_hash")


def iter_consistency(manifest: Manifest) -> Iterator[Finding]:
    """Totals that the manifest states twice must agree (shards vs counts vs packing); and no
    empty dataset or split (:func:`iter_empty`)."""
    counts, packing = manifest.counts, manifest.packing
    tokens = 0
    for split in C.SPLITS:
        rows, content = manifest.splits[split].rows, manifest.splits[split].tokens
        tokens += content
        for path, stated in ((f"counts.rows.{split}", counts.rows[split]), (f"packing.{split}.rows", packing[split].rows)):
            if stated != rows:
                yield Finding("manifest_inconsistent", f"{path} is {stated:,} but the {split} shards list {rows:,} rows", file=MANIFEST, path=path)
        if packing[split].content_tokens != content:
            why = f"packing.{split}.content_tokens is {packing[split].content_tokens:,} but the {split} shards list {content:,} tokens"
            yield Finding("manifest_inconsistent", why, file=MANIFEST, path=f"packing.{split}.content_tokens")
    if counts.tokens != tokens:
        yield Finding("manifest_inconsistent", f"counts.tokens is {counts.tokens:,} but the shards list {tokens:,}", file=MANIFEST, path="counts.tokens")
    pad = sum(packing[s].pad_tokens for s in C.SPLITS)
    if counts.pad_tokens != pad:
        yield Finding("manifest_inconsistent", f"counts.pad_tokens is {counts.pad_tokens:,} but packing says {pad:,}", file=MANIFEST, path="counts.pad_tokens")
    written, dropped = counts.records_written, sum(counts.dropped.values())
    if counts.records_read != written + dropped:
        why = f"records_read {counts.records_read:,} != records_written {written:,} + dropped {dropped:,}"
        yield Finding("manifest_inconsistent", why, file=MANIFEST, path="counts.records_read")
    if written != counts.documents.total:
        why = f"records_written {written:,} != documents train + validation {counts.documents.total:,}"
        yield Finding("manifest_inconsistent", why, file=MANIFEST, path="counts.records_written")
    yield from iter_empty(manifest)


def iter_empty(manifest: Manifest) -> Iterator[Finding]:
    """No row at all (``empty_dataset``), or none in a split the recipe asks for (``empty_split``),
    unless the recorded recipe has ``allow_empty: true``."""
    recipe = manifest.recipe
    if recipe.get("allow_empty") is True:
        return
    counts = manifest.counts
    rows = {split: manifest.splits[split].rows for split in C.SPLITS}
    allow = "set `allow_empty: true` in the recipe if an empty output is what you want, and run again"
    if not any(rows.values()):
        dropped = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.dropped.items(), key=lambda kv: -kv[1])) or "none"
        why = (f"the dataset has no row: {counts.records_read:,} records read, {counts.records_written:,} written "
               f"(dropped: {dropped})")
        yield Finding("empty_dataset", why, file=MANIFEST, path="counts.rows", expected=f"at least one row, or {allow}")
        return
    validation = (recipe.get("split") or {}).get("validation", 0)
    wanted = {"train": "train is always wanted", "validation": f"split.validation is {validation}"}
    for split, reason in wanted.items():
        if split == "validation" and not validation > 0:
            continue
        documents = counts.documents[split]
        if rows[split] == 0 or documents == 0:
            why = f"the {split} split has {rows[split]:,} rows from {documents:,} documents, and the recipe asks for it ({reason})"
            yield Finding("empty_split", why, file=MANIFEST, path=f"splits.{split}", split=split,
                          expected=f"rows in the {split} split, or {allow}")


DATASETS_CACHE = "cache-*.arrow"  # what `datasets` names the results of .map / .filter it caches


def iter_layout(out: Path, manifest: Manifest, notes: list[str] | None = None) -> Iterator[Finding]:
    """Missing and extra shards, ``state.json`` and ``dataset_dict.json`` against the manifest.

    ``datasets`` cache files not listed in the manifest are not findings: their count per split
    goes into ``notes`` (one line), when given.
    """
    cached: dict[str, int] = {}
    try:
        splits = json.loads((out / DATASET_DICT).read_text(encoding="utf-8")).get("splits")
    except (OSError, ValueError, AttributeError) as exc:
        splits = None
        yield Finding("layout", f"cannot read {DATASET_DICT} ({exc}); datasets.load_from_disk needs it", file=DATASET_DICT)
    if splits is not None and list(splits) != list(C.SPLITS):
        yield Finding("layout", f"lists splits {splits}, expected {list(C.SPLITS)}", file=DATASET_DICT)
    for split in C.SPLITS:
        listed = [s.file for s in manifest.splits[split].shards]
        folder = out / split
        for name in listed:
            if not (folder / name).is_file():
                yield Finding("shard_missing", "listed in the manifest but not on disk", file=f"{split}/{name}", split=split)
        on_disk = sorted(p.name for p in folder.glob("*.arrow")) if folder.is_dir() else []
        cache = {p.name for p in folder.glob(DATASETS_CACHE)} - set(listed) if folder.is_dir() else set()
        if cache:
            cached[split] = len(cache)
        for name in sorted(set(on_disk) - set(listed) - cache):
            yield Finding("shard_extra", "on disk but not listed in the manifest (left by another run?)", file=f"{split}/{name}", split=split)
        try:
            state = json.loads((folder / STATE).read_text(encoding="utf-8"))
            files = [entry["filename"] for entry in state["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            yield Finding("layout", f"cannot read the shard list ({exc}); datasets.load_from_disk needs it", file=f"{split}/{STATE}", split=split)
            continue
        if files != listed:
            yield Finding("layout", f"lists shards {files}, the manifest {listed}", file=f"{split}/{STATE}", split=split)
    if cached and notes is not None:
        where = ", ".join(f"{split} {n:,}" for split, n in cached.items())
        notes.append(f"ignored {sum(cached.values()):,} datasets cache file(s) ({DATASETS_CACHE}, left by datasets' .map or "
                     f".filter; not part of the dataset): {where}; Dataset.cleanup_cache_files() removes them")


def checksum_of(entry: Shard, *, full_hash: bool) -> tuple[str, str]:
    """(algorithm, expected hex digest) to verify a shard with: xxh3_128 when recorded, else sha256."""
    if entry.xxh3_128 and not full_hash:
        return "xxh3_128", entry.xxh3_128
    return "sha256", entry.sha256


def iter_shard_size(size: int, entry: Shard, *, name: str, split: str) -> Iterator[Finding]:
    if size != entry.bytes:
        cut = "truncated" if size < entry.bytes else "grown"
        yield Finding("shard_size", f"{size:,} bytes, the manifest says {entry.bytes:,} ({cut})", file=name, split=split)


def iter_shard_checksum(actual: str, algorithm: str, expected: str, *, name: str, split: str) -> Iterator[Finding]:
    if actual != expected:
        why = f"{algorithm} is {actual[:16]}..., the manifest says {expected[:16]}...: the file changed after the run"
        yield Finding("shard_checksum", why, file=name, split=split)
