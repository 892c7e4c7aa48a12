"""``DEST/export.json``: where an export came from and what it holds.

::

    {"export": "dataprep.export/1", "format": "megatron", "split": "all", "dataprep_version": "0.1.0",
     "dataset": {"path": "/abs/out/demo-pretrain", "manifest_sha256": "...", "recipe_hash": "...",
                 "format": "dataprep.pretrain/1", "task": "pretrain", "layout": "stream",
                 "tokenizer_fingerprint": "...", "vocab_size": 955},
     "splits": {"train": {"rows": 214, "tokens": 27392, "documents": 544, "dtype": "uint16",
                          "files": {"train.bin": {"bytes": 54784, "sha256": "..."}, ...}}},
     "files": {"meta.pkl": {...}}}

``manifest_sha256`` is the digest of the dataset's ``manifest.json`` bytes, which hold every
shard's sha256: it names the exact dataset an export was made from. The export's own files are
listed with their digests, so ``sha256sum`` can check a copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dataprep import columns as C
from dataprep import storage
from dataprep._version import __version__
from dataprep.dataset.reader import Dataset
from dataprep.export.base import Written

FILE = "export.json"
FORMAT = "dataprep.export/1"


def provenance(ds: Dataset, fmt: str, split: str, dest: Path, written: dict[str, Written], shared: list[str]) -> dict[str, Any]:
    """The ``export.json`` object of an export in ``dest`` (its files already written)."""
    m = ds.manifest
    splits = {}
    for name, w in written.items():
        entry: dict[str, Any] = {"rows": w.rows, "tokens": w.tokens}
        if w.documents is not None:
            entry["documents"] = w.documents
        entry.update(w.extra)
        entry["files"] = _files(dest, w.files)
        splits[name] = entry
    return {
        "export": FORMAT,
        "format": fmt,
        "split": split,
        "dataprep_version": __version__,
        "dataset": {
            "path": str(ds.path.resolve()),
            "manifest_sha256": storage.sha256_file(ds.path / C.MANIFEST_FILE),
            "recipe_hash": m.recipe_hash,
            "format": m.format,
            "task": m.task,
            "layout": m.rows.layout,
            "tokenizer_fingerprint": m.tokenizer.fingerprint,
            "vocab_size": m.tokenizer.vocab_size,
        },
        "splits": splits,
        "files": _files(dest, shared),
    }


def _files(dest: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    return {name: {"bytes": (dest / name).stat().st_size, "sha256": storage.sha256_file(dest / name)} for name in names}
