"""Portable manifests: the dataset's facts apart from the run's, and paths that do not name the machine.

Two builds of one recipe from two checkouts (other folders, other machines) write the same
shards, and :func:`portable` makes them write the same manifest outside its ``run`` section:

- what differs between runs moves into ``run``: ``seconds``, ``workers``, ``engine`` (given by
  the run), ``created_unix`` and ``recipe_dir`` (the absolute folder the recipe's relative paths
  were resolved against; before this they were top-level keys);
- every path the manifest holds is written as the recipe wrote it: one the recipe gave relative
  is stored relative to the recipe's folder, one it gave absolute stays absolute, a URL stays
  as given; all normalized (``os.path.normpath``, ``/`` separators)::

      recipe  inputs[0].path: ../../shared/data/c4.jsonl     (recipe in /home/a/main/recipes)
      before  inputs[0].path: /home/a/shared/data/c4.jsonl
              tokenizer.source: /home/a/main/recipes/../../shared/data/tokenizers/gpt2
      after   inputs[0].path: ../../shared/data/c4.jsonl
              tokenizer.source: ../../shared/data/tokenizers/gpt2
              run.recipe_dir: /home/a/main/recipes

The paths are ``inputs[].path``, ``tokenizer.source`` (unless ``trained``),
``tokenizer.files[].path`` and ``sft.chat.template_file``. ``tokenizer.transformers_version``
stays with the tokenizer: with ``reference: transformers`` that version made the token ids.

Every reader of a manifest path goes through :func:`resolve` (the tokenizer's readers through
:func:`tokenizer_path`), which reads both layouts: a
relative path is joined to ``run.recipe_dir``, else to the top-level ``recipe_dir`` of datasets
made before it moved, else to the folder recovered from their absolute paths (:func:`recipe_dir`).
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

from dataprep.storage import is_url

__all__ = ["MOVED_TO_RUN", "portable", "recipe_dir", "resolve", "tokenizer_path"]

MOVED_TO_RUN = ("created_unix", "recipe_dir")  # top-level keys of older manifests, now in ``run``
_RUN_ORDER = ("seconds", "workers", "engine", "created_unix", "recipe_dir")


def portable(manifest: dict[str, Any], recipe: Any, run_facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest with its run-specific values in ``run`` and its paths as the recipe wrote them.

    Idempotent: a manifest already portable comes back equal (``created_unix`` is kept).

    Args:
        manifest: the manifest as the run built it (not changed; a copy is returned).
        recipe: the :class:`~dataprep.recipe.Recipe` it was built from (its ``base_dir`` and the
            paths as written in ``resolved``).
        run_facts: this run's own values (``seconds``, ``workers``, ``engine``); they override
            those of any ``run`` section already there.

    Returns:
        The portable manifest, ``run`` last, with ``created_unix`` and ``recipe_dir`` in it.
    """
    out = {k: copy.deepcopy(v) for k, v in manifest.items() if k not in MOVED_TO_RUN and k != "run"}
    base = os.path.abspath(recipe.base_dir)
    run = {**manifest.get("run", {}), **(run_facts or {})}
    run.setdefault("created_unix", manifest.get("created_unix", int(time.time())))
    run["recipe_dir"] = base
    out["run"] = {k: run[k] for k in sorted(run, key=lambda k: (_RUN_ORDER + (k,)).index(k))}

    written = recipe.resolved
    specs = [i["path"] for i in written.get("inputs", [])]
    for entry in out.get("inputs", []):
        entry["path"] = _stored(entry["path"], base, relative=_from_relative_input(entry["path"], specs, base))
    tok = out.get("tokenizer") or {}
    if tok and not tok.get("trained"):
        relative = _relative_spec((written.get("tokenizer") or {}).get("path"))
        tok["source"] = _stored(tok["source"], base, relative=relative)
        for entry in tok.get("files", []):
            entry["path"] = _stored(entry["path"], base, relative=relative)
    chat = (out.get("sft") or {}).get("chat")
    if chat and chat.get("template_file"):
        relative = _relative_spec((written.get("chat") or {}).get("template"))
        chat["template_file"] = _stored(chat["template_file"], base, relative=relative)
    return out


def resolve(manifest: dict[str, Any], path: str) -> str:
    """A path the manifest records, usable here: a URL or an absolute path as it is; a relative
    one joined to the recipe's folder (:func:`recipe_dir`) and normalized; as it is when that
    folder cannot be told."""
    if is_url(path) or os.path.isabs(os.path.expanduser(path)):
        return path
    base = recipe_dir(manifest)
    return os.path.normpath(os.path.join(base, path)) if base is not None else path


def tokenizer_path(manifest: dict[str, Any], out: str | Path) -> str:
    """Where the dataset's tokenizer loads from: the copy in the dataset folder ``out``
    (``tokenizer.saved_as``: every dataset since the copy, so one that moved still finds it), else,
    in older datasets that saved only a trained or extended tokenizer, the files the run read
    (``tokenizer.source``, resolved)."""
    tok = manifest["tokenizer"]
    # absolute: readers resolve a relative tokenizer path against the dataset folder
    return os.path.abspath(Path(out) / tok["saved_as"]) if tok.get("saved_as") else resolve(manifest, tok["source"])


def recipe_dir(manifest: dict[str, Any]) -> Path | None:
    """The folder the recipe's relative paths were resolved against.

    ``run.recipe_dir``; else the top-level ``recipe_dir`` of manifests written before it moved;
    else, for manifests older than that (absolute paths only), the tokenizer source minus the
    recipe's relative ``tokenizer.path``, or the first input minus the first input's path;
    ``/`` when the recipe has no relative path; None when nothing tells.
    """
    recorded = (manifest.get("run") or {}).get("recipe_dir") or manifest.get("recipe_dir")
    if recorded:
        return Path(recorded)
    recipe = manifest.get("recipe") or {}
    tok_path = (recipe.get("tokenizer") or {}).get("path")
    written = [tok_path, *(i.get("path") for i in recipe.get("inputs", []))]
    if not any(p and _relative_spec(p) for p in written):
        return Path("/")  # every path is absolute: any folder resolves them
    candidates = []
    if tok_path and not manifest["tokenizer"]["trained"]:
        candidates.append((manifest["tokenizer"]["source"], tok_path))
    if manifest.get("inputs") and recipe.get("inputs"):
        candidates.append((manifest["inputs"][0]["path"], recipe["inputs"][0]["path"]))
    for full, path in candidates:
        tail = str(Path(path))
        if _relative_spec(path) and full.endswith(tail) and full[: -len(tail)].endswith(("/", "\\")):
            return Path(full[: -len(tail)])
    return None


# --- helpers ---------------------------------------------------------------------------------


def _relative_spec(path: str | None) -> bool:
    """Whether the recipe wrote ``path`` relative to its folder (``~`` counts as absolute)."""
    return bool(path) and not is_url(path) and not os.path.isabs(os.path.expanduser(path))


def _stored(path: str, base: str, *, relative: bool) -> str:
    """``path`` as the manifest keeps it: a URL as given; else normalized, relative to ``base``
    when ``relative`` (and ``base`` can reach it: another Windows drive cannot), with ``/``."""
    if is_url(path):
        return path
    full = os.path.normpath(os.path.join(base, path))
    if relative:
        try:
            full = os.path.relpath(full, base)
        except ValueError:
            pass
    return full.replace(os.sep, "/")


def _from_relative_input(path: str, specs: list[str], base: str) -> bool:
    """Whether the recipe input that named the file ``path`` was written relative: the first input
    whose folder (the part before any wildcard) holds it, as ``resolve_inputs`` reads a file
    under its first input. A file no input holds keeps its absolute path."""
    if is_url(path):
        return False
    full = os.path.normpath(os.path.join(base, path))
    for spec in specs:
        if is_url(spec):
            continue
        parts = Path(os.path.expanduser(spec)).parts
        fixed = [p for p in parts[: next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")), len(parts))]]
        root = os.path.normpath(os.path.join(base, *fixed)) if fixed else base
        if full == root or full.startswith(root.rstrip(os.sep) + os.sep):
            return _relative_spec(spec)
    return False
