"""A dataset built by ``run``, opened for reading: its manifest, its splits as Arrow tables, its tokenizer.

Shards are Arrow IPC streams, memory-mapped here, so opening a split costs no copy and a
column scan touches only the pages it reads::

    ds = open_dataset("out/demo-sft")
    ds.manifest.counts.tokens             # the manifest, typed (dataprep.dataset.manifest.Manifest)
    ds.table("train").column("input_ids")  # one pa.Table per split (shards concatenated, in order)
    ds.tokenizer()                        # the dataset's copy in OUT/tokenizer (Manifest.tokenizer_path)
    ds.polars("train")                    # the same rows as a polars DataFrame; ds.lazy("train") a LazyFrame

polars' ``read_ipc``/``scan_ipc`` read the Arrow IPC *file* format, and the shards are streams
(what ``datasets`` writes and reads), so :meth:`Dataset.polars` hands polars the memory-mapped
table instead (``pl.from_arrow``: no file is read again; polars widens the 32-bit list offsets
to its own). ``pl.read_ipc_stream(shard)`` reads one shard as well.

Used by ``inspect``, ``report`` and ``dataprep.open``; nothing here writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from dataprep import columns as C
from dataprep.errors import InputError, TokenizerError
from dataprep.dataset.manifest import Manifest
from dataprep.text.tokenizer import LoadedTokenizer, TokenizerSpec, load_tokenizer

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger("dataprep.dataset")

_SPEC_KEYS = {"lowercase", "bos_token", "eos_token", "pad_token", "add_bos", "add_eos", "split_special_tokens", "reference"}


@dataclass
class Dataset:
    """An opened dataset folder. Build with :func:`open_dataset`.

    Attributes:
        path: the folder.
        manifest: ``manifest.json``, typed (:class:`~dataprep.dataset.manifest.Manifest`).
    """

    path: Path
    manifest: Manifest
    _tables: dict[str, pa.Table] = field(default_factory=dict, repr=False)

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def seq_len(self) -> int:
        """The longest a row may be (``rows.length``)."""
        return self.manifest.rows.length

    @property
    def splits(self) -> list[str]:
        return list(C.SPLITS)

    def table(self, split: str) -> pa.Table:
        """The rows of ``split``, shards concatenated in manifest order (memory-mapped).

        Raises:
            InputError: no such split, or a shard that is missing or not an Arrow stream.
        """
        if split not in self.splits:
            raise InputError(str(self.path), None, f"no split {split!r}", f"choose one of {self.splits}")
        if split not in self._tables:
            parts = [self._read_shard(split, shard.file) for shard in self.manifest.splits[split].shards]
            self._tables[split] = pa.concat_tables(parts) if parts else pa.table({})
        return self._tables[split]

    def _read_shard(self, split: str, name: str) -> pa.Table:
        file = self.path / split / name
        try:
            with pa.ipc.open_stream(pa.memory_map(str(file))) as reader:
                return reader.read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(
                str(file), None, f"cannot read the shard as an Arrow stream ({exc})",
                "rebuild the dataset with `dataprep run ... --overwrite`",
            ) from exc

    def polars(self, split: str = "train") -> pl.DataFrame:
        """The rows of ``split`` as a polars DataFrame, from the memory-mapped table.

        Example::

            df = dataprep.open_dataset("out/demo-sft").polars("train")
            df.select(pl.col("input_ids").list.len().mean())

        Raises:
            InputError: as :meth:`table`.
        """
        import polars as pl

        return pl.from_arrow(self.table(split), rechunk=False)

    def lazy(self, split: str = "train") -> pl.LazyFrame:
        """The rows of ``split`` as a polars LazyFrame (over :meth:`polars`' frame: the data stays
        memory-mapped; a query reads only the columns it uses)."""
        return self.polars(split).lazy()

    def tokenizer(self, path: str | Path | None = None) -> LoadedTokenizer:
        """Load the dataset's tokenizer, with the recipe's special-token options.

        Args:
            path: load this tokenizer instead (e.g. the dataset moved to another machine).

        Raises:
            TokenizerError: the tokenizer cannot be found or read (the message says where it looked).
        """
        m = self.manifest
        if path is None:
            path = m.tokenizer_path(self.path)
        options = {k: v for k, v in (m.recipe.get("tokenizer") or {}).items() if k in _SPEC_KEYS}
        try:
            tokenizer = load_tokenizer(TokenizerSpec(path=str(path), **options), base_dir=self.path)
        except TokenizerError as exc:
            raise TokenizerError(f"{exc}\n  fix: pass --tokenizer PATH to use a copy of the dataset's tokenizer") from exc
        if tokenizer.fingerprint != m.tokenizer.fingerprint:
            log.warning(
                "%s: this tokenizer differs from the one the dataset was built with (fingerprint %s, manifest %s); "
                "decoded text may be wrong", path, tokenizer.fingerprint[:12], m.tokenizer.fingerprint[:12],
            )
        return tokenizer


def open_dataset(path: str | Path) -> Dataset:
    """Open the dataset folder ``path`` (it must hold ``manifest.json``).

    Raises:
        InputError: the folder is not a dataprep dataset, or its manifest is not JSON or does not
            match its schema.
    """
    path = Path(path)
    return Dataset(path=path, manifest=Manifest.load(path))
