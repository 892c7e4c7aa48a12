"""What a dataset promises, read once from its manifest: the facts every row check tests against.

Every fact is one the run stated (:class:`~dataprep.dataset.manifest.Manifest`): the row length
and whether rows are fixed (``rows``), the vocab size and special ids (``tokenizer``), the pad
id, how documents sit in rows and how they are framed (``rows.layout``, ``rows.starts_with_bos``,
``rows.ends_with_eos``; for mlm the post-processor's frame), the label column and label map, and
for fine-tuning the *stop tokens*: the ids that may close an example's targets
(``sft.stop_token_ids``: EOS for a pair template; a chat template's end-of-turn tokens, such as
Phi-3's ``<|end|>`` = 32007, and its ``<|endoftext|>`` = 32000 that closes a final turn). Nothing here works a decision of the run out again, and nothing
imports the code that made the dataset: the checker is not the thing it checks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataprep.dataset.manifest import Manifest
from dataprep.dataset.manifest_parts import STREAM
from dataprep.dataset.manifest_tasks import Mlm, Span
from dataprep.recipe import Recipe, recipe_from_dict

FINE_TUNING = ("sft", "fewshot")  # tasks whose rows follow the fine-tuning contract
ROW_SCHEMAS = {"dataprep.mlm/2": "mlm-row", "dataprep.span/2": "span-row", "dataprep.fewshot/2": "fewshot-row",
               "dataprep.preference/1": "preference-row", "dataprep.kto/1": "kto-row"}


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
    labels: bool = False  # sft with output.labels: rows add `labels`, the ids at targets and IGNORE_INDEX elsewhere
    num_labels: int | None = None
    stop_ids: tuple[int, ...] | None = None  # sft; None when they could not be found (check skipped)
    stop_source: str = ""
    objective: Mlm | Span | None = None  # the manifest's objective section (None: next-token prediction)
    layout: str = STREAM  # how documents sit in rows (manifest rows.layout)
    cut_documents: bool = False  # some document was cut into several pieces (manifest rows.cut_documents)

    @property
    def objective_name(self) -> str:
        return "clm" if self.objective is None else self.objective.name

    @property
    def pad_is_special_elsewhere(self) -> bool:
        """The pad id is also EOS or BOS, so it legitimately appears in content."""
        return self.pad_id is not None and self.pad_id in (self.eos_id, self.bos_id)


def contract_of(manifest: Manifest, notes: list[str]) -> Contract:
    """The contract of a dataset, from the facts its manifest states."""
    rows, tok = manifest.rows, manifest.tokenizer
    stop_ids, source = (None, "")
    if manifest.task in FINE_TUNING or manifest.task == "preference":  # preference: what closes each response
        stop_ids, source = _stop_ids(manifest, notes)
    labels = manifest.sft.labels if manifest.sft is not None else None
    return Contract(
        task=manifest.task,
        seq_len=rows.length,
        vocab_size=tok.vocab_size,
        bos_id=tok.bos_id,
        eos_id=tok.eos_id,
        pad_id=manifest.padding.pad_token_id,
        add_bos=rows.starts_with_bos,
        add_eos=rows.ends_with_eos,
        split_special_tokens=bool((manifest.recipe.get("tokenizer") or {}).get("split_special_tokens", True)),
        packing=rows.packing,
        fixed_length=rows.fixed_length,
        schema_name=ROW_SCHEMAS.get(manifest.format, "pretrain-row" if manifest.task == "pretrain" else "sft-row"),
        label_column=rows.label_column,
        labels=manifest.task == "sft" and bool((manifest.recipe.get("output") or {}).get("labels")),
        num_labels=len(labels) if labels else None,
        stop_ids=stop_ids,
        stop_source=source,
        objective=manifest.objective,
        layout=rows.layout,
        cut_documents=rows.cut_documents,
    )


def _stop_ids(manifest: Manifest, notes: list[str]) -> tuple[tuple[int, ...] | None, str]:
    sft = manifest.sft
    if sft.masking == "generation":
        notes.append("stop-token check skipped: masking: generation takes the chat template's {% generation %} blocks as they are")
        return None, ""
    if sft.stop_token_ids is None:  # a chat dataset made before they were recorded
        notes.append("stop-token check skipped: the manifest does not record sft.stop_token_ids (a dataset made by an "
                     "older dataprep); rebuild it to have the chat template's end-of-turn tokens checked")
        return None, ""
    if not sft.stop_token_ids:
        return None, ""
    return tuple(sft.stop_token_ids), "manifest sft.stop_token_ids"


def recipe_of(manifest: Manifest, *, base_dir: Path) -> Recipe:
    """The manifest's resolved recipe as a :class:`Recipe` (relative paths against ``base_dir``).

    Raises:
        RecipeError: The recorded recipe does not pass the recipe schema.
    """
    return recipe_from_dict(recorded_recipe(manifest), base_dir=base_dir, source="manifest.json recipe")


def recorded_recipe(manifest: Manifest) -> dict[str, Any]:
    """A copy of the manifest's resolved recipe (it passes the recipe schema as recorded)."""
    return copy.deepcopy(manifest.recipe)
