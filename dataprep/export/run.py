"""``export(OUT, FORMAT)``: check, refuse what a format cannot carry, write atomically, record provenance.

The export is written into ``DEST.incomplete/`` and renamed to ``DEST`` only when every file and
``export.json`` are there, so a folder named ``DEST`` is always a whole export (as ``run`` does
with its output). ``DEST`` defaults to ``OUT-FORMAT`` beside the dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from dataprep import columns as C
from dataprep.dataset.reader import open_dataset
from dataprep.errors import ConfigError, OutputError
from dataprep.export.base import ROW_FORMATS, Exporter, Written
from dataprep.export.jsonl import Jsonl
from dataprep.export.mds import Mds
from dataprep.export.megatron import Megatron
from dataprep.export.nanogpt import NanoGPT
from dataprep.export.parquet import Parquet
from dataprep.export.provenance import FILE, provenance

EXPORTERS: dict[str, type[Exporter]] = {e.name: e for e in (Megatron, NanoGPT, Mds, Parquet, Jsonl)}
SPLIT_CHOICES = (*C.SPLITS, "all")


def default_dest(out: str | Path, fmt: str) -> Path:
    """``OUT-FORMAT`` beside the dataset folder ``OUT``."""
    out = Path(out)
    return out.with_name(f"{out.name}-{fmt}")


def export(out: str | Path, fmt: str, *, split: str = "all", dest: str | Path | None = None,
           overwrite: bool = False) -> dict[str, Any]:
    """Export the dataset ``out`` as ``fmt`` into ``dest``; return the provenance written beside it.

    Args:
        out: a dataset folder ``dataprep run`` wrote.
        fmt: one of :data:`EXPORTERS` (``megatron``, ``nanogpt``, ``mds``, ``parquet``, ``jsonl``).
        split: ``train``, ``validation`` or ``all``.
        dest: the export folder (default: ``OUT-FORMAT`` beside ``out``).
        overwrite: replace an earlier export at ``dest``.

    Raises:
        ConfigError: an unknown format or split, or a format that cannot carry the rows (a loss
            mask or labels in a token-only format; the message names the formats that can).
        ConfigError: also ``dest`` inside the dataset folder.
        OutputError: ``dest`` exists (without ``overwrite``), or is not an export.
        InputError: ``out`` is not a dataset.
    """
    if fmt not in EXPORTERS:
        choices = "; ".join(f"{name}: {e.summary}" for name, e in EXPORTERS.items())
        raise ConfigError(f"unknown export format {fmt!r}", fix=f"choose one of {choices}")
    if split not in SPLIT_CHOICES:
        raise ConfigError(f"unknown split {split!r}", fix=f"choose one of {', '.join(SPLIT_CHOICES)}")
    ds = open_dataset(out)
    exporter = EXPORTERS[fmt]()
    splits = list(C.SPLITS) if split == "all" else [split]
    columns = sorted({name for s in splits for name in ds.table(s).schema.names})
    refused = exporter.refusal(ds.manifest, columns)
    if refused:
        raise ConfigError(f"{out}: cannot export as {fmt}: {refused}",
                          fix=f"export with --to {' / '.join(ROW_FORMATS)}, which keep every column")
    dest = Path(dest) if dest is not None else default_dest(out, fmt)
    if dest.resolve().is_relative_to(ds.path.resolve()):
        raise ConfigError(f"--out {dest} is inside the dataset {out}, whose files validate checks",
                          fix=f"export beside it, e.g. --out {default_dest(out, fmt)}")
    _check_dest(dest, overwrite=overwrite)
    tmp = dest.with_name(dest.name + C.INCOMPLETE_SUFFIX)
    if tmp.exists():  # left by an export that did not finish: ours by its name
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    written: dict[str, Written] = {}
    for s in splits:
        written[s] = exporter.write(ds, s, tmp)
    shared = exporter.finish(ds, tmp, written)
    record = provenance(ds, fmt, split, tmp, written, shared)
    (tmp / FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return record


def _check_dest(dest: Path, *, overwrite: bool) -> None:
    """Refuse an existing ``dest`` unless ``overwrite``, and never delete what is not an export."""
    if not dest.exists():
        return
    if not overwrite:
        raise OutputError(f"{dest} already exists", fix="pass --overwrite to replace it, or choose another --out")
    if not (dest / FILE).is_file():
        raise OutputError(f"{dest} exists and is not a dataprep export (no {FILE}); refusing to delete it even with --overwrite",
                          fix="remove it yourself or choose another --out")
