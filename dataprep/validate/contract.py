"""What a dataset promises, read once from its manifest: the facts every row check tests against.

The manifest records the resolved recipe and the tokenizer, so the row contract follows:
row length (``seq_len``; exact for ``wrap`` and padded ``bfd``), vocab size, the special ids
and whether every document got BOS/EOS, the pad id, the packing mode, the label column, and
for fine-tuning the *stop tokens*: the ids that may close an example's targets.

Stop tokens. A pair template appends the tokenizer's EOS to the response, so the stop token
is EOS. A chat template closes each assistant turn with its own end-of-turn token (Phi-3:
``<|end|>`` = 32007), which only the template knows: it is found by rendering a probe
conversation through the recipe's template and masking policy and reading its last target
token. A manifest that records ``sft.stop_token_ids`` is taken at its word instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataprepError
from dataprep.dataset.paths import tokenizer_path
from ..recipe import Recipe, recipe_from_dict
from dataprep.tasks.sft.task import stop_token_ids
from dataprep.text.tokenizer import LoadedTokenizer, TokenizerSpec, load_tokenizer

CHAT = "chat"
FINE_TUNING = ("sft", "fewshot")  # tasks whose rows follow the fine-tuning contract
ROW_SCHEMAS = {"dataprep.mlm/1": "mlm-row", "dataprep.span/1": "span-row", "dataprep.fewshot/1": "fewshot-row"}


@dataclass(frozen=True)
class Contract:
    """The promises the row checks test (see the module docstring)."""

    task: str  # pretrain | sft | fewshot
    seq_len: int
    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    split_special_tokens: bool  # special-token text in documents stays text: specials only where the pipeline put them
    packing: str  # wrap | bfd | none
    fixed_length: bool  # every row is exactly seq_len
    schema_name: str  # pretrain-row | sft-row
    label_column: str | None = None  # label_id | label_ids
    num_labels: int | None = None
    stop_ids: tuple[int, ...] | None = None  # sft; None when they could not be found (check skipped)
    stop_source: str = ""
    objective: dict[str, Any] | None = None  # the manifest's objective section (mlm, span_corruption)

    @property
    def objective_name(self) -> str:
        return (self.objective or {}).get("name", "clm")

    @property
    def pad_is_special_elsewhere(self) -> bool:
        """The pad id is also EOS or BOS, so it legitimately appears in content."""
        return self.pad_id is not None and self.pad_id in (self.eos_id, self.bos_id)


def contract_of(manifest: dict[str, Any], out: Path, notes: list[str]) -> Contract:
    """The contract of a dataset whose manifest already passed its schema."""
    recipe = manifest["recipe"]
    tok = manifest["tokenizer"]
    ids = tok["special_ids"]
    packing = recipe.get("packing", {})
    mode = packing.get("mode", "wrap")
    task = manifest["task"]
    pad_rows = bool(packing.get("pad_rows", True))
    fixed = (task == "pretrain" and mode == "wrap") or (mode == "bfd" and pad_rows)
    sft = manifest.get("sft") or {}
    label_column = None
    if task == "sft" and recipe.get("classification") is not None:
        label_column = "label_ids" if mode == "bfd" else "label_id"
    stop_ids, source = (None, "")
    if task in FINE_TUNING:
        stop_ids, source = _stop_ids(manifest, out, notes)
    add_bos, add_eos = tok["add_bos"], tok["add_eos"]
    objective = manifest.get("objective")
    if objective and objective.get("name") == "mlm":  # pieces are framed by the post-processor instead
        frame = objective["frame"]
        add_bos = ids.get("bos") is not None and frame["prefix"][-1:] == [ids["bos"]]
        add_eos = ids.get("eos") is not None and frame["suffix"][:1] == [ids["eos"]]
    return Contract(
        task=task,
        seq_len=manifest["seq_len"],
        vocab_size=tok["vocab_size"],
        bos_id=ids.get("bos"),
        eos_id=ids.get("eos"),
        pad_id=manifest["padding"]["pad_token_id"],
        add_bos=add_bos,
        add_eos=add_eos,
        split_special_tokens=bool(recipe.get("tokenizer", {}).get("split_special_tokens", True)),
        packing=mode,
        fixed_length=fixed,
        schema_name=ROW_SCHEMAS.get(manifest.get("format", ""), "pretrain-row" if task == "pretrain" else "sft-row"),
        label_column=label_column,
        num_labels=len(sft["labels"]) if sft.get("labels") else None,
        stop_ids=stop_ids,
        stop_source=source,
        objective=objective,
    )


def _stop_ids(manifest: dict[str, Any], out: Path, notes: list[str]) -> tuple[tuple[int, ...] | None, str]:
    sft = manifest["sft"]
    if sft.get("masking") == "generation":
        notes.append("stop-token check skipped: masking: generation takes the chat template's {% generation %} blocks as they are")
        return None, ""
    if sft.get("stop_token_ids"):
        return tuple(sft["stop_token_ids"]), "manifest sft.stop_token_ids"
    eos = manifest["tokenizer"]["special_ids"].get("eos")
    if manifest["recipe"].get("template") != CHAT:
        return ((eos,), "EOS (pair template)") if eos is not None else (None, "")
    try:
        tokenizer = manifest_tokenizer(manifest, out)
        return stop_token_ids(CHAT, tokenizer, masking=sft["masking"]), "chat template probe"
    except DataprepError as exc:
        notes.append(f"stop-token check skipped: cannot load the tokenizer to find the chat template's end-of-turn token ({exc})")
        return None, ""


def manifest_tokenizer(manifest: dict[str, Any], out: Path) -> LoadedTokenizer:
    """Load the tokenizer a manifest names: its recorded source, or the copy saved in the dataset.

    Raises:
        TokenizerError: The files are gone or unreadable.
    """
    spec = dict(manifest["recipe"].get("tokenizer", {}))
    spec.pop("train", None)
    spec["path"] = tokenizer_path(manifest, out)
    return load_tokenizer(TokenizerSpec(**spec), base_dir=out)


def recipe_of(manifest: dict[str, Any], *, base_dir: Path) -> Recipe:
    """The manifest's resolved recipe as a :class:`Recipe` (relative paths against ``base_dir``).

    Raises:
        RecipeError: The recorded recipe does not pass the recipe schema.
    """
    return recipe_from_dict(recorded_recipe(manifest), base_dir=base_dir, source="manifest.json recipe")


def recorded_recipe(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of the manifest's resolved recipe (it passes the recipe schema as recorded)."""
    return copy.deepcopy(manifest["recipe"])
