"""The manifest's ``tokenizer`` section, and the tokenizer's copy inside the dataset.

Every dataset carries the tokenizer it was built with in ``OUT/tokenizer/`` (``saved_as``), so
it can be moved, uploaded and trained on elsewhere without the folder the recipe named:

- a tokenizer the recipe names is copied file for file (:func:`copy_tokenizer_files`): the
  files the run read (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``, or ``vocab.txt``,
  and the config its special tokens came from), plus the files ``AutoTokenizer`` reads beside
  them (``special_tokens_map.json``, ``added_tokens.json``, ``chat_template.jinja``), so
  ``AutoTokenizer.from_pretrained(OUT / "tokenizer")`` works too;
- a tokenizer the recipe trained, or one a task extended (span corruption's sentinels), is
  saved by :meth:`~dataprep.text.tokenizer.LoadedTokenizer.save` (the source has no such files).

The section records where the tokenizer came from as provenance (``source``, and each file read
with its SHA-256, the copies having the same bytes), its fingerprint and vocabulary size, its
special tokens with the source of each role (:mod:`dataprep.text.special_tokens`), and how
documents were framed (``add_bos``/``add_eos``), and which engine encoded them after which probe
(``engine``, :mod:`dataprep.text.encode_engine`). Readers load the copy
(:func:`dataprep.dataset.paths.tokenizer_path`); datasets built before the copy (``saved_as``
null) load the source files again.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from dataprep.text.tokenizer import LoadedTokenizer

__all__ = ["BESIDE", "copy_tokenizer_files", "tokenizer_manifest"]

# Files AutoTokenizer reads beside the tokenizer (none of them changes dataprep's ids)
BESIDE = ("special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json")
_FIXED_NAMES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def copy_tokenizer_files(tokenizer: LoadedTokenizer, folder: Path) -> list[Path]:
    """Copy the files ``tokenizer`` was loaded from into ``folder`` (created), under the names a
    tokenizer folder uses: the recipe may name a single file (``tok/my-bpe.json``), which is
    copied as ``tokenizer.json`` (a ``.txt`` vocabulary as ``vocab.txt``) so that loading the
    folder reads it. Returns the copies.

    Raises:
        OSError: a file cannot be read or the folder cannot be written (the run turns a full disk or
            a missing permission into its message, naming the path: :mod:`dataprep.build.faults`).
    """
    folder = Path(folder)
    sources = list(tokenizer.files)
    if sources:
        parent = sources[0].parent
        sources += [parent / name for name in BESIDE if (parent / name).is_file() and parent / name not in sources]
    copies = []
    folder.mkdir(parents=True, exist_ok=True)
    for i, file in enumerate(sources):
        target = folder / _folder_name(file, first=i == 0)
        shutil.copyfile(file, target)
        copies.append(target)
    return copies


def _folder_name(file: Path, *, first: bool) -> str:
    """The name ``file`` has in a tokenizer folder that :func:`~dataprep.text.tokenizer.load_tokenizer` reads."""
    if file.name in _FIXED_NAMES or file.name in BESIDE or not first:
        return file.name
    return "vocab.txt" if file.suffix == ".txt" else "tokenizer.json"


def tokenizer_manifest(recipe: Any, tokenizer: LoadedTokenizer) -> dict[str, Any]:
    """The manifest's ``tokenizer`` section: where the tokenizer came from, its files' digests, its
    special tokens and how documents are framed (``recipe`` is a :class:`~dataprep.recipe.Recipe`).
    The run has saved or copied the tokenizer into the dataset's ``tokenizer/`` folder."""
    from dataprep.text import hf_backend
    from dataprep.columns import TOKENIZER_DIR
    from dataprep.storage import sha256_file

    trained = recipe.tokenizer.train is not None
    return {
        "source": tokenizer.source,
        "trained": trained,
        "saved_as": TOKENIZER_DIR,  # saved (trained, extended) or copied (copy_tokenizer_files): always there
        "files": [] if trained else [{"path": str(p), "sha256": sha256_file(p)} for p in tokenizer.files],
        "fingerprint": tokenizer.fingerprint,
        "vocab_size": tokenizer.vocab_size,
        "special_ids": tokenizer.special_ids,
        "special_tokens": tokenizer.special_tokens,  # with where each role came from
        "add_bos": recipe.tokenizer.add_bos,
        "add_eos": recipe.tokenizer.add_eos,
        "reference": recipe.tokenizer.reference,
        **({"transformers_version": hf_backend.transformers_version()} if recipe.tokenizer.reference == "transformers" else {}),
        # what encoded the documents and the probe's verdict (dataprep.text.encode_engine), when the
        # run chose before its work started (choose_engine), so every process used that choice
        **({"engine": tokenizer.run_engine.manifest()} if tokenizer.run_engine is not None else {}),
    }
