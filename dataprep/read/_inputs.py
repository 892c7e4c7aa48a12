"""What to read: a recipe's ``inputs:`` -> the sorted, de-duplicated list of files, formats resolved."""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from dataprep import storage
from dataprep.errors import InputError

from ._common import load_json_file
from ._file import FORMATS, TABULAR, TXT_UNITS, InputFile, InputSpec
from ._encoding import NAMES, canonical, detect_file
from ._messages import ROLE_TARGETS
from ._nested import parse_records
from ._template import parse_template


_EXTENSIONS = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".tsv": "tsv",
    ".csv": "csv",
}
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
_TEMP_SUFFIXES = (".incomplete", ".tmp")
HF_STATE, _HF_DICT = "state.json", "dataset_dict.json"


def resolve_inputs(specs: Sequence[InputSpec], *, base_dir: Path) -> list[InputFile]:
    """Expand the recipe's inputs into the sorted, de-duplicated list of files to read.

    Folders are read recursively and globs expanded (``**`` allowed); the matches
    of each input are sorted, inputs keep the recipe's order, and a file matched
    twice is read once, under its first input. Hidden names and names ending in
    ``.incomplete`` or ``.tmp`` are skipped in folders and glob matches (a path
    named exactly is always read). A folder holding ``state.json`` (HF
    ``save_to_disk``) is one arrow input; one holding ``dataset_dict.json``
    gives one arrow input per split, in that file's order.

    Args:
        specs: The recipe's inputs.
        base_dir: Folder that relative paths are resolved against (the recipe's folder).

    Returns:
        The files, in read order; a file's index here is its ``source`` value.

    Raises:
        InputError: A path does not exist, a pattern matches nothing, a format
            cannot be inferred, or an option has an unknown value.
    """
    files: list[InputFile] = []
    seen: set[str] = set()
    for entry, spec in enumerate(specs):
        _check_spec(spec)
        if storage.is_url(spec.path):
            for url in _expand_url(spec):
                if url not in seen:
                    seen.add(url)
                    files.append(dataclasses.replace(_input_file(Path(url.split("://", 1)[1]), spec, url=url), entry=entry))
            continue
        for path in _expand(spec, Path(base_dir)):
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                files.append(dataclasses.replace(_input_file(path, spec), entry=entry))
    return files


def _check_spec(spec: InputSpec) -> None:
    if spec.format != "auto" and spec.format not in FORMATS:
        fix = f"set `format:` to one of: auto, {', '.join(FORMATS)}"
        raise InputError(spec.path, None, f"unknown format {spec.format!r}", fix)
    if spec.txt_unit not in TXT_UNITS:
        fix = f"set `txt_unit:` to one of: {', '.join(TXT_UNITS)}"
        raise InputError(spec.path, None, f"unknown txt_unit {spec.txt_unit!r}", fix)
    if not all(spec.text_field.split(".")):
        fix = "name a field, dotted for nested ones (e.g. `meta.body`)"
        raise InputError(spec.path, None, f"invalid text_field {spec.text_field!r}", fix)
    if not isinstance(spec.header, bool):
        raise InputError(spec.path, None, f"header must be true or false, got {spec.header!r}", "set `header:`")
    if spec.columns is not None:
        columns = spec.columns
        fix = 'set `columns:` to a list of distinct, non-empty names, e.g. ["sentence", "label"]'
        if isinstance(columns, str) or not columns or not all(isinstance(c, str) and c for c in columns):
            raise InputError(spec.path, None, f"invalid columns {columns!r}", fix)
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise InputError(spec.path, None, f"`columns:` names {', '.join(map(repr, repeated))} more than once", fix)
    if spec.roles is not None:
        fix = f"map each dataset role to one of: {', '.join(ROLE_TARGETS)}, e.g. `roles: {{bot: assistant}}`"
        bad = [pair for pair in spec.roles if not (isinstance(pair[0], str) and pair[0] and pair[1] in ROLE_TARGETS)]
        if bad:
            raise InputError(spec.path, None, f"invalid roles {', '.join(f'{k!r}: {v!r}' for k, v in bad)}", fix)
    if spec.records is not None:
        try:
            parse_records(spec.records)
        except (ValueError, AttributeError) as exc:
            raise InputError(spec.path, None, str(exc), "fix `records:` (see `dataprep schema recipe`)") from exc
    if spec.text_template is not None:
        try:
            parse_template(spec.text_template)
        except (ValueError, TypeError) as exc:
            raise InputError(spec.path, None, f"invalid text_template: {exc}", "fix `text_template:`") from exc
        if spec.text_field != "text":
            message = f"both `text_field: {spec.text_field}` and `text_template:` name the text"
            raise InputError(spec.path, None, message, "keep one of them")
    if not isinstance(spec.encoding, str) or (spec.encoding != "auto" and canonical(spec.encoding) is None):
        raise InputError(spec.path, None, f"unknown text encoding {spec.encoding!r}", f"set `encoding:` to {NAMES}")
    if spec.format not in ("auto", *TABULAR) and (spec.columns is not None or not spec.header):
        option = "columns" if spec.columns is not None else "header"
        message = f"`{option}:` applies to tsv and csv inputs only, not {spec.format}"
        raise InputError(spec.path, None, message, f"remove `{option}:` from this input")


def _has_magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def _expand(spec: InputSpec, base_dir: Path) -> list[Path]:
    """The paths one input names: files, HF dataset folders; sorted, temp and hidden names left out."""
    raw = os.path.expanduser(spec.path)
    full = os.path.abspath(os.path.join(base_dir, raw))  # an absolute `raw` stays as it is
    relative_fix = "check the path; relative paths are resolved against the recipe's folder"
    if os.path.exists(full):
        matches = [Path(full)]
    elif _has_magic(raw):
        parts = Path(raw).parts
        magic = next(i for i, part in enumerate(parts) if _has_magic(part))
        root = Path(os.path.abspath(os.path.join(base_dir, *parts[:magic])))
        pattern = os.path.join(glob.escape(str(root)), *parts[magic:])
        found = (Path(m) for m in glob.glob(pattern, recursive=True))  # `*` never matches hidden names
        matches = sorted(
            (m for m in found if not any(map(_skipped, m.parts[len(root.parts) :]))), key=lambda p: p.parts
        )
        if not matches:
            raise InputError(spec.path, None, f"no files match this pattern (looked for {pattern})", relative_fix)
    else:
        raise InputError(spec.path, None, f"path does not exist (resolved to {full})", relative_fix)
    out: list[Path] = []
    for match in matches:
        out.extend(_walk(match, spec) if match.is_dir() else [match])
    if not out:
        message = "no input files in this folder (hidden, *.incomplete and *.tmp names are skipped)"
        raise InputError(spec.path, None, message, "point `path:` at a folder with data files")
    return out


def _expand_url(spec: InputSpec) -> list[str]:
    """:func:`_expand` for a URL: a file, a folder (recursive) or a glob over the folder before
    the first wildcard. Dataset folders written by ``save_to_disk`` are read from local paths only."""
    url = spec.path
    fix = "check the URL, and that the credentials in the environment can list it"
    if _has_magic(url):
        head, _, rest = url.partition("://")
        parts = rest.split("/")
        magic = next(i for i, part in enumerate(parts) if _has_magic(part))
        root = f"{head}://{'/'.join(parts[:magic])}"
        pattern = "/".join(parts[magic:])
        if storage.info(root).type != storage.pafs.FileType.Directory:
            raise InputError(url, None, f"no folder {root} to match {pattern!r} in", fix)
        regex = _glob_regex(pattern)
        matches = [found for found in storage.list_files(root) if regex.fullmatch(found[len(root.rstrip("/")) + 1 :])]
    else:
        kind = storage.info(url).type
        if kind == storage.pafs.FileType.NotFound:
            raise InputError(url, None, "does not exist", fix)
        matches = [url] if kind == storage.pafs.FileType.File else storage.list_files(url)
    base = url.split("*")[0].rsplit("/", 1)[0]
    kept = [m for m in matches if m == url or not any(map(_skipped, m[len(base) + 1 :].split("/")))]
    if any(m.rsplit("/", 1)[-1] in (HF_STATE, _HF_DICT) for m in kept):
        raise InputError(url, None, "a `save_to_disk` dataset folder is read from a local path only",
                         "copy or mount the dataset locally, or convert it to parquet / jsonl files")
    if not kept:
        raise InputError(url, None, "no input files match (hidden, *.incomplete and *.tmp names are skipped)", fix)
    return kept


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as local paths read it: ``*`` and ``?`` stay within one folder, ``**/`` spans any."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (close := pattern.find("]", i + 1)) > i:
            out.append(fnmatch.translate(pattern[i : close + 1])[4:-3])  # the class, as fnmatch reads it
            i = close + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.endswith(_TEMP_SUFFIXES)


def _walk(folder: Path, spec: InputSpec) -> list[Path]:
    if spec.format in ("auto", "arrow"):
        if (folder / _HF_DICT).is_file():  # a DatasetDict: one input per split, in its order
            return [folder / split for split in load_json_file(folder / _HF_DICT).get("splits", [])]
        if (folder / HF_STATE).is_file():
            return [folder]
    out: list[Path] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _skipped(entry.name):
            continue
        if entry.is_dir():
            out.extend(_walk(Path(entry.path), spec))
        elif entry.is_file():
            out.append(Path(entry.path))
    return out


def _input_file(path: Path, spec: InputSpec, *, url: str | None = None) -> InputFile:
    if url is None and path.is_dir():  # an HF dataset (split) folder
        if not (path / HF_STATE).is_file():
            message = f"dataset split folder {path} has no {HF_STATE}"
            raise InputError(spec.path, None, message, "save the dataset again with `save_to_disk`")
        return InputFile(path, "arrow", None, spec)
    stem, ext = os.path.splitext(path.name)
    compression = _COMPRESSIONS.get(ext.lower())
    if compression:
        ext = os.path.splitext(stem)[1]
    fmt = spec.format if spec.format != "auto" else _EXTENSIONS.get(ext.lower())
    if fmt is None:
        message = (
            f"cannot infer the format of {path} from its extension {ext or '(none)'!r}"
            f" (known: {', '.join(_EXTENSIONS)}, each optionally + .gz/.zst)"
        )
        raise InputError(spec.path, None, message, "set `format:` on this input")
    if compression and fmt in ("parquet", "arrow"):
        message = f"{path} is a compressed {fmt} file, which cannot be read in place"
        raise InputError(spec.path, None, message, f"decompress it; {fmt} files compress their columns internally")
    if spec.records is not None and fmt not in ("json", "jsonl"):
        message = f"`records:` reads nested json and jsonl records; {path} is {fmt}"
        raise InputError(spec.path, None, message, "remove `records:` from this input, or point it at json / jsonl files")
    if spec.text_template is not None and fmt == "txt":
        message = f"`text_template:` builds the text from fields; {path} is plain text, which has none"
        raise InputError(spec.path, None, message, "remove `text_template:` from this input")
    if fmt in TABULAR and not spec.header and spec.columns is None:
        message = f"{path} has no header row (`header: false`), so its columns have no names"
        raise InputError(spec.path, None, message, 'name them with `columns:`, e.g. ["sentence", "label"]')
    file = InputFile(path, fmt, compression, spec, url=url)
    if fmt in ("parquet", "arrow"):
        if spec.encoding not in ("auto", "utf-8") and canonical(spec.encoding) != "utf-8":
            message = f"`encoding: {spec.encoding}` applies to text files; {path} is {fmt}, whose strings are UTF-8"
            raise InputError(spec.path, None, message, "remove `encoding:` from this input")
        return file
    if spec.encoding == "auto":
        return dataclasses.replace(file, encoding=detect_file(file))
    return dataclasses.replace(file, encoding=canonical(spec.encoding))


def file_size(file: InputFile) -> int:
    """Bytes of an input as stored: a file, a URL, or every file of a dataset folder (0 if unreadable)."""
    if not file.url:
        return local_size(file.path)
    try:
        return storage.size(file.url)
    except OSError:
        return 0


def local_size(path: Path) -> int:
    """Bytes of a local file, or of every file in a folder (0 if unreadable)."""
    path = Path(path)
    try:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    except OSError:
        return 0


def file_sha256(file: InputFile, *, stop: threading.Event | None = None) -> str:
    """SHA-256 of an input as stored; for a dataset folder, of its files' names and digests in order.

    Raises:
        storage.HashingStopped: ``stop`` was set while it hashed.
    """
    import hashlib

    from dataprep.storage import sha256_file

    if file.url:
        return storage.sha256(file.url, stop=stop)
    path = file.path
    if not path.is_dir():
        return sha256_file(path, stop=stop)
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        digest.update(p.relative_to(path).as_posix().encode() + b"\0" + sha256_file(p, stop=stop).encode())
    return digest.hexdigest()
