"""The one interface every format implements, and what the token-only formats share.

An :class:`Exporter` says whether it can carry a dataset (:meth:`Exporter.refusal`) and writes one
split into a folder (:meth:`Exporter.write`), returning what it wrote (:class:`Written`), which
goes into the export's provenance. :func:`dataprep.export.run.export` does the rest (checks,
the ``.incomplete`` folder, the rename, ``export.json``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dataprep import columns as C
from dataprep.dataset.manifest import Manifest
from dataprep.dataset.reader import Dataset

log = logging.getLogger("dataprep.export")

TOKEN_COLUMNS = frozenset({C.INPUT_IDS, C.SEQ_LENS, C.NUM_PAD})  # what a token file can carry
ROW_FORMATS = ("mds", "parquet", "jsonl")  # the formats that keep every column


@dataclass
class Written:
    """What one split's export holds: its files (names in the export folder) and counts.

    Attributes:
        files: the files written, relative to the export folder.
        rows: the dataset rows read.
        tokens: content tokens written (pads excluded), or every token where the format keeps rows whole.
        documents: Megatron documents (None where the format has none).
        extra: anything else the format states (dtype, ...), recorded in ``export.json``.
    """

    files: list[str] = field(default_factory=list)
    rows: int = 0
    tokens: int = 0
    documents: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Exporter:
    """One output format. Subclasses set :attr:`name` and implement :meth:`write`."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help and errors
    carries_all_columns: ClassVar[bool] = True

    def refusal(self, manifest: Manifest, columns: list[str]) -> str | None:
        """Why this format cannot carry the dataset (``columns``: its rows' columns), or None."""
        return None

    def write(self, ds: Dataset, split: str, dest: Path) -> Written:
        """Write ``split`` of ``ds`` into the folder ``dest``; return what was written."""
        raise NotImplementedError

    def finish(self, ds: Dataset, dest: Path, written: dict[str, Written]) -> list[str]:
        """After every split: write any file that covers them all; return its names."""
        return []


class TokensOnly(Exporter):
    """A format that stores token ids alone: it refuses rows that carry anything more."""

    carries_all_columns = False

    def refusal(self, manifest: Manifest, columns: list[str]) -> str | None:
        extra = sorted(set(columns) - TOKEN_COLUMNS)
        if not extra:
            return None
        return (
            f"the rows carry {', '.join(extra)} besides their tokens ({manifest.format}), and {self.name} "
            f"files hold token ids only: exporting would silently drop what trains the model"
        )

