"""The manifest's ``tokenizer`` section: what a built dataset records about its tokenizer.

Where the tokenizer came from (a path and its files' SHA-256, or trained and saved inside the
output), its fingerprint and vocabulary size, its special tokens with the source of each role
(:mod:`dataprep.text.special_tokens`), and how documents were framed (``add_bos``/``add_eos``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataprep.text.tokenizer import LoadedTokenizer

__all__ = ["tokenizer_manifest"]


def tokenizer_manifest(recipe: Any, tokenizer: LoadedTokenizer) -> dict[str, Any]:
    """The manifest's ``tokenizer`` section: where the tokenizer came from, its files' digests, its
    special tokens and how documents are framed (``recipe`` is a :class:`~dataprep.recipe.Recipe`)."""
    from dataprep.text import hf_backend
    from dataprep.columns import TOKENIZER_DIR
    from dataprep.storage import sha256_file

    trained = recipe.tokenizer.train is not None
    saved = trained or bool(tokenizer.added_tokens)  # sentinels added for span corruption
    return {
        "source": tokenizer.source,
        "trained": trained,
        "saved_as": TOKENIZER_DIR if saved else None,
        "files": [] if trained else [{"path": str(p), "sha256": sha256_file(p)} for p in tokenizer.files],
        "fingerprint": tokenizer.fingerprint,
        "vocab_size": tokenizer.vocab_size,
        "special_ids": tokenizer.special_ids,
        "special_tokens": tokenizer.special_tokens,  # with where each role came from
        "add_bos": recipe.tokenizer.add_bos,
        "add_eos": recipe.tokenizer.add_eos,
        "reference": recipe.tokenizer.reference,
        **({"transformers_version": hf_backend.transformers_version()} if recipe.tokenizer.reference == "transformers" else {}),
    }
