"""What every independent reference of the trainer's data proofs shares: the dataset's own recipe with
its sources found here, the raw-text condition, the BOS/EOS strings a chat template reads, and a
prompt + response text encoded once with the response as its targets.

Used by :mod:`dataprep.train.reference` (fine-tuning pair templates), :mod:`reference_chat` (chats)
and :mod:`reference_preference` (preference pairs); none of it is producer code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataprep.dataset.manifest import Manifest
from dataprep.errors import DataprepError
from dataprep.read import resolve_inputs
from dataprep.recipe import Recipe, recipe_from_dict


def source_recipe(manifest: Manifest) -> Recipe | str:
    """The recipe the dataset was built with, its inputs found from here; or why they cannot be read."""
    try:
        recipe = recipe_from_dict(dict(manifest.recipe), base_dir=manifest.recipe_folder())
        resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    except DataprepError as exc:  # the sources moved, or were records in memory (the Python API)
        return f"the source records cannot be read here ({str(exc).splitlines()[0][:160]})"
    return recipe


def normalized(manifest: Manifest) -> str | None:
    """Why a reference of raw records cannot render this dataset (its recipe normalizes them), or None."""
    normalize = manifest.recipe.get("normalize") or {}
    if any(value not in (None, False, "none") for value in normalize.values()):
        return "normalize: is on, so records change before rendering; the reference renders raw text"
    return None


def frame_specials(manifest: Manifest) -> dict[str, str]:
    """``bos_token`` / ``eos_token`` as a chat template reads them, from the dataset's tokenizer."""
    return {f"{name}_token": s.token for name, s in manifest.tokenizer.special_tokens.items() if name in ("bos", "eos")}


def encode_completion(encoder: Any, prompt: str, response: str, *, stop_id: int,
                      bos_id: int | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """``prompt + response`` encoded once by ``encoder`` (a ``tokenizers.Tokenizer``): its ids, its target
    mask (a token reaching past the prompt, then the appended stop token; a BOS before, not a target),
    and whether a token spans the prompt's end::

        "Q: 12+7\\nA: " + "19"  ->  Q : ␣ 1 2 + 7 \\n A : ␣ 1 9 <eos>
                                    0 0 0 0 0 0 0 0  0 0 0 1 1   1
    """
    encoding = encoder.encode(prompt + response, add_special_tokens=False)
    ids = np.array(encoding.ids, dtype=np.int64)
    starts = np.array([s for s, _ in encoding.offsets], dtype=np.int64)
    ends = np.array([e for _, e in encoding.offsets], dtype=np.int64)
    straddles = bool(((starts < len(prompt)) & (ends > len(prompt))).any())
    ids, mask = np.append(ids, stop_id), np.append(ends > len(prompt), True)
    if bos_id is not None:
        ids, mask = np.insert(ids, 0, bos_id), np.insert(mask, 0, False)
    return ids, mask, straddles
