"""``manifest.json``, typed: the one writer and the one reader of the file ``run`` writes last.

A :class:`Manifest` is a frozen record of every section (:mod:`.manifest_parts`, and a task's own
in :mod:`.manifest_tasks`). The run builds one and writes :meth:`Manifest.to_dict`; every reader
gets one from :meth:`Manifest.load` (or :meth:`Manifest.from_dict`). Both sides check the JSON
against ``schemas/manifest.schema.json``, so a manifest that does not match is refused with every
key that is wrong::

    m = Manifest.load("out/demo-sft")
    m.rows.length, m.rows.fixed_length          # what the run decided about its rows
    m.sft.stop_token_ids, m.sft.labels          # what closes a target; the class-label map
    m.splits.train.shards[0].sha256

    Manifest.load("out/broken")  -> ManifestError: out/broken/manifest.json, counts.tokens: the manifest
                                    does not match its schema: 'x' is not of type 'integer' ...

The JSON keeps the keys earlier versions wrote (a manifest read and written again has the same
bytes). Manifests written before the ``rows`` facts and ``sft.stop_token_ids`` were stated are
read with them filled in as this version's run decides them (:func:`.manifest_parts.legacy_rows`):
the readers never work them out themselves.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataprep import columns as C
from dataprep.dataset import paths
from dataprep.dataset._codec import decode, encode, optional
from dataprep.dataset.manifest_parts import (
    Counts,
    Decontamination,
    Input,
    Mixture,
    Packing,
    Padding,
    Rows,
    Run,
    Splits,
    Tokenizer,
    legacy_rows,
)
from dataprep.dataset.manifest_tasks import Fewshot, Mlm, Preference, Sft, Span
from dataprep.errors import BadKey, InputError, Issue, ManifestError
from dataprep.schema import iter_issues

__all__ = ["Manifest", "as_json", "manifest_issues", "read_json", "section"]

SCHEMA = "manifest"
REBUILD = "rebuild the dataset with `dataprep run RECIPE --out PATH --overwrite`"
CHAT = "chat"


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """Everything ``manifest.json`` holds, in the order it is written.

    Attributes:
        format: the row format (``dataprep.pretrain/2``, ``dataprep.sft/2``, ``dataprep.mlm/2``,
            ``dataprep.span/2``, ``dataprep.fewshot/2``, ``dataprep.preference/1``, ``dataprep.kto/1``).
        recipe: the resolved recipe as the run recorded it (every default filled in).
        task: ``pretrain``, ``sft``, ``fewshot`` or ``preference``.
        seq_len: the longest row (the same as ``rows.length``; kept for older readers).
        rows: what the run decided about its rows.
        sft, fewshot, preference, objective: the task's own sections (None when the task has none).
        run: what differs between two runs of one recipe.
        unicode_version: the Unicode version of the run's normalization (Python's ``unicodedata``).
        created_unix, recipe_dir: only in manifests written before they moved into ``run``.
    """

    format: str
    dataprep_version: str
    unicode_version: str | None = optional()  # the normalization's (unicodedata); absent in older datasets
    created_unix: int | None = optional()
    recipe: dict[str, Any]
    recipe_hash: str
    recipe_dir: str | None = optional()
    task: str
    seq_len: int
    rows: Rows
    tokenizer: Tokenizer
    inputs: tuple[Input, ...]
    padding: Padding
    counts: Counts
    packing: Packing
    splits: Splits
    sft: Sft | None = optional()
    fewshot: Fewshot | None = optional()
    preference: Preference | None = optional()
    objective: Mlm | Span | None = optional()
    mixture: Mixture | None = optional()  # a recipe that mixes its inputs
    decontamination: Decontamination | None = optional()  # a recipe with decontaminate:
    run: Run | None = optional()  # None only while the run builds it (:meth:`portable` adds it)

    # --- reading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, out: str | Path) -> Manifest:
        """The manifest of the dataset folder ``out``.

        Raises:
            InputError: ``out`` holds no manifest, or it is not JSON.
            ManifestError: it does not match its schema (``issues`` names every key that is wrong).
        """
        file = Path(out) / C.MANIFEST_FILE
        return cls.from_dict(read_json(out), source=str(file))

    @classmethod
    def from_dict(cls, d: Any, *, source: str = C.MANIFEST_FILE) -> Manifest:
        """A parsed ``manifest.json``, checked against its schema.

        Raises:
            ManifestError: a key missing, of the wrong type, or unknown (each named with its path).
        """
        issues = list(manifest_issues(d))
        if issues:
            raise _refused(source, issues)
        if "rows" not in d or ("sft" in d and "stop_token_ids" not in d["sft"]):
            d = _with_stated_facts(d)
        try:
            return decode(cls, d, "")
        except BadKey as exc:
            raise _refused(source, [Issue(exc.where, exc.message)]) from exc

    # --- writing ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON the file holds, checked against the schema.

        Raises:
            ManifestError: the manifest does not match its schema (a bug in what built it).
        """
        d = encode(self)
        issues = list(manifest_issues(d))
        if issues:
            raise _refused("the manifest built", issues)
        return d

    def portable(self, recipe: Any, run: dict[str, Any]) -> Manifest:
        """This manifest with the run's own facts in ``run`` and its paths as the recipe wrote
        them (:func:`dataprep.dataset.paths.portable`)."""
        return Manifest.from_dict(paths.portable(encode(self), recipe, run), source="the manifest built")

    # --- facts -----------------------------------------------------------------------------

    @property
    def stop_ids(self) -> tuple[int, ...] | None:
        """The ids that may close an example's targets; None when the dataset does not say
        (not fine-tuning, or a chat dataset made before they were recorded)."""
        return None if self.sft is None else self.sft.stop_token_ids

    @property
    def name(self) -> str:
        """The recipe's name ("" when it has none)."""
        return self.recipe.get("name", "")

    def resolve(self, path: str) -> str:
        """A path the manifest records, usable here (:func:`dataprep.dataset.paths.resolve`)."""
        return paths.resolve(self._paths_view, path)

    def drops_by_input(self, reason: str) -> Counter:
        """Each input's path, as :meth:`resolve` gives it -> its records dropped under ``reason``."""
        return Counter({self.resolve(i.path): i.dropped.get(reason, 0) for i in self.inputs})

    def recipe_folder(self) -> str | None:
        """The folder the recipe's relative paths were resolved against, or None when the manifest
        cannot tell (:func:`dataprep.dataset.paths.recipe_dir`)."""
        return paths.recipe_dir(self._paths_view)

    def tokenizer_path(self, out: str | Path) -> str:
        """Where the dataset's tokenizer loads from (:func:`dataprep.dataset.paths.tokenizer_path`)."""
        return paths.tokenizer_path(self._paths_view, out)

    @functools.cached_property
    def _paths_view(self) -> dict[str, Any]:
        """The parts of the JSON :mod:`dataprep.dataset.paths` reads (made once)."""
        return {k: encode(getattr(self, k)) for k in ("recipe", "recipe_dir", "tokenizer", "inputs", "run")
                if getattr(self, k) is not None}


def read_json(out: str | Path) -> dict[str, Any]:
    """``out/manifest.json`` parsed, unchecked (:meth:`Manifest.from_dict` checks it).

    Raises:
        InputError: no manifest there (not a dataset), or not JSON.
    """
    out = Path(out)
    file = out / C.MANIFEST_FILE
    if not file.is_file():
        hint = "build it with `dataprep run RECIPE --out PATH`"
        if out.is_file():
            hint = "to look at a source file, pass the recipe that reads it: `dataprep inspect FILE --recipe R.yaml`"
        raise InputError(str(out), None, f"not a dataprep dataset (no {C.MANIFEST_FILE})", hint)
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(file), None, f"cannot read the manifest ({exc})", "rebuild the dataset") from exc
    return d


def as_json(record: Any) -> Any:
    """A section (or any record) as the JSON the manifest holds for it."""
    return encode(record)


def section(kind: type, value: Any, where: str) -> Any:
    """``value`` as the record ``kind``: itself when it is one, else decoded from its JSON (a
    section a task or the tokenizer still builds as a dict); ``where`` is its key path.

    Raises:
        ManifestError: a key missing or unknown (a bug in what built it).
    """
    try:
        return decode(kind, value, where)
    except BadKey as exc:
        raise _refused("the manifest built", [Issue(exc.where, exc.message)]) from exc


def manifest_issues(d: Any) -> Iterator[Issue]:
    """Every way ``d`` breaks ``schemas/manifest.schema.json``, each with its key path."""
    return iter_issues(d, SCHEMA)


def _refused(source: str, issues: list[Issue]) -> ManifestError:
    return ManifestError(source, issues, REBUILD)


def _with_stated_facts(d: dict[str, Any]) -> dict[str, Any]:
    """A manifest written before ``rows`` and ``sft.stop_token_ids`` were stated, with them
    filled in: the rows as :func:`legacy_rows` decides them; the stop ids of a pair template (its
    EOS) or of ``masking: generation`` (none); a chat template's stay unknown."""
    d = dict(d)
    if "rows" not in d:
        d["rows"] = legacy_rows(d)
    sft = d.get("sft")
    if sft is not None and "stop_token_ids" not in sft:
        eos = d["tokenizer"]["special_ids"].get("eos")
        if sft.get("masking") == "generation":
            stops: list[int] | None = []
        elif d["recipe"].get("template") != CHAT:
            stops = [eos] if eos is not None else []
        else:
            stops = None
        if stops is not None:
            d["sft"] = {**sft, "stop_token_ids": stops}
    return d
