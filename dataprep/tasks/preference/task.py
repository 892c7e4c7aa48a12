"""The preference task: pairs of a chosen and a rejected response to one prompt (DPO, ORPO, reward
models), or single responses labelled good or bad (KTO).

::

    read fields (main) -> [read the shape -> render prompt+chosen, prompt+rejected -> tokenize each
                          once -> align the shared prompt -> overflow] (workers)
                       -> dedup -> split by prompt -> one pair per row -> write (main)

Rows are in the columns TRL's preference collators read (``DataCollatorForPreference``:
``prompt_ids``, ``chosen_ids``, ``rejected_ids``; KTO's: ``prompt_ids``, ``completion_ids``,
``label``), so the prompt is stored once and its tokens are the same for both responses by
construction. A response's ids are its target tokens, the stop token last: a trainer's
completion mask is ``[0] * len(prompt_ids) + [1] * len(chosen_ids)``, nothing else to compute.

Pairs are not packed (``packing: none``): DPO compares the two sequences of a pair in one
batch, and the saving is small next to the rows being two sequences long.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from dataprep import columns as C
from dataprep.dataset.manifest_tasks import Chat, Examples, Preference, Sft, TaskSections, Template
from dataprep.pack.rows import PackedRows
from dataprep.read import FieldSpec, InputFile, read_records
from dataprep.read import chunks
from dataprep.recipe import ChatSpec, Recipe, SftSpec
from dataprep.tasks.bad_records import text_sha256
from dataprep.tasks.base import Plan, example_facts
from dataprep.tasks.preference.worker import CHOSEN, PROMPT, REJECTED, fields_for, preference_worker
from dataprep.tasks.sft.records import chat_template_of
from dataprep.tasks.sft.task import OnePerRow, stop_token_ids

FORMAT = "dataprep.preference/1"
KTO_FORMAT = "dataprep.kto/1"


@dataclass(frozen=True)
class PreferenceSpec:
    """A recipe's preference options (``preference:`` and the rendering keys it shares with sft)."""

    shape: str = "conversation"  # triples | conversation | transcripts | kto
    boundary: str = "drop"  # a token merged across prompt and response: drop the pair | cut before it
    template: str = "chat"  # chat (the tokenizer's chat template or chat.template) | text (prompt + response + EOS)
    max_length: int = 2048
    overflow: str = "drop"  # drop | truncate_prompt
    special_text: str = "error"
    fields: tuple[Mapping[str, FieldSpec] | None, ...] = ()
    chat: ChatSpec = field(default_factory=ChatSpec)


def spec_of(recipe: Recipe) -> PreferenceSpec:
    """The preference options of ``recipe``, from its resolved (schema-checked, defaulted) form."""
    r = recipe.resolved
    fields = tuple(
        None if not spec.get("fields") else {n: FieldSpec(v) if isinstance(v, str) else FieldSpec(**v) for n, v in spec["fields"].items()}
        for spec in r["inputs"]
    )
    options = r.get("preference") or {}
    chat = dict(r.get("chat") or {})
    if chat.get("template"):
        chat["template"] = recipe.base_dir / chat["template"]
    return PreferenceSpec(shape=options.get("shape", "conversation"), boundary=options.get("boundary", "drop"),
                          template=r.get("template", "chat"), max_length=r.get("max_length", 2048),
                          overflow=r.get("overflow", "drop"), special_text=r.get("special_text") or "error",
                          fields=fields, chat=ChatSpec(**chat))


def as_sft(recipe: Recipe, spec: PreferenceSpec) -> Recipe:
    """``recipe`` with the fine-tuning view the shared rendering code reads (chat template, last
    assistant turn as the target)."""
    return replace(recipe, sft=SftSpec(template="chat" if spec.template == "chat" else "text", target_policy="last_assistant",
                                       max_length=spec.max_length, overflow=spec.overflow, fields=spec.fields, chat=spec.chat,
                                       special_text=spec.special_text))


def row_schema(spec: PreferenceSpec) -> pa.Schema:
    ids = pa.list_(C.TOKEN_TYPE)
    if spec.shape == "kto":
        return pa.schema([pa.field(C.PROMPT_IDS, ids), pa.field(C.COMPLETION_IDS, ids), pa.field(C.KTO_LABEL, pa.bool_())])
    return pa.schema([pa.field(C.PROMPT_IDS, ids), pa.field(C.CHOSEN_IDS, ids), pa.field(C.REJECTED_IDS, ids)])


def to_batch(spec: PreferenceSpec):
    """One pair per row (flat ``prompt ++ chosen ++ rejected`` with a segment per token) -> the
    columns of :func:`row_schema`."""
    schema = row_schema(spec)
    names = [f.name for f in schema][: 2 if spec.shape == "kto" else 3]

    def convert(rows: PackedRows) -> pa.RecordBatch:
        segment = rows.extras[C.SEGMENT]
        row_of = np.repeat(np.arange(len(rows.row_offsets) - 1), np.diff(rows.row_offsets))
        arrays = []
        for s, name in zip((PROMPT, CHOSEN, REJECTED), names):
            hit = segment == s
            counts = np.bincount(row_of[hit], minlength=len(rows.row_offsets) - 1)
            offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(rows.input_ids[hit].astype(np.int32))))
        if spec.shape == "kto":
            label = rows.extras[C.KTO_LABEL][rows.row_offsets[:-1]].astype(bool)
            arrays.append(pa.array(label))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    return convert


def manifest_section(recipe: Recipe, spec: PreferenceSpec, stage, tokenizer) -> Sft:
    """The ``sft`` section of a preference dataset: how prompts and responses were rendered, the
    stop ids that close every response, the length policy and what it did."""
    chat = None if spec.template == "text" else chat_template_of(recipe, tokenizer)
    stats = stage.stats
    responses = stats["chosen_tokens"] + stats["rejected_tokens"]
    content = responses + stats["prompt_tokens"] * (1 if spec.shape == "kto" else 2)
    return Sft(
        template=Template(name=spec.template, text_sha256=text_sha256(chat.source) if chat else text_sha256("{prompt}{response}<eos>")),
        chat=None if chat is None else Chat(template_file=None if spec.chat.template is None else str(spec.chat.template),
                                            kwargs=dict(spec.chat.kwargs), date=spec.chat.date, reasoning=spec.chat.reasoning,
                                            stop_tokens=tuple(chat.stop_tokens())),
        masking="last_assistant",
        stop_token_ids=stop_token_ids("chat" if chat else "text", tokenizer, policy="last_assistant", chat=chat),
        max_length=spec.max_length,
        overflow=spec.overflow,
        examples=Examples(truncated=stats["truncated"], truncated_tokens=stats["truncated_tokens"],
                          with_boundary_straddle=stats["boundary_merges"], system_not_rendered=0, unrendered={}),
        target_tokens=responses,
        target_ratio=responses / content if content else 0.0,
        labels=None,
    )


def preference_section(spec: PreferenceSpec, stage) -> Preference:
    """The ``preference`` section: the shape and boundary policy, and what the written pairs hold."""
    stats, kto = stage.stats, spec.shape == "kto"
    written = sum(stage.documents.values())
    return Preference(
        shape=spec.shape, boundary=spec.boundary,
        boundary_cuts=stats["boundary_merges"] if spec.boundary == "cut" else 0,
        prompt_tokens=stats["prompt_tokens"],
        chosen_tokens=None if kto else stats["chosen_tokens"],
        rejected_tokens=None if kto else stats["rejected_tokens"],
        chosen_longer=None if kto else stats["chosen_longer"],
        completion_tokens=stats["chosen_tokens"] if kto else None,
        desirable=stats["desirable"] if kto else None,
        undesirable=written - stats["desirable"] if kto else None,
    )


def chunk_reader(recipe: Recipe, spec: PreferenceSpec) -> chunks.ChunkReader:
    def read(index: int, file: InputFile, drops):
        return read_records(file, index, fields=fields_for(spec, file.entry), batch_size=recipe.output.chunk_records,
                            on_error=recipe.on_error, drops=drops)

    return chunks.ChunkReader(read, max_bytes=recipe.output.chunk_bytes)


class PreferenceTask:
    """``task: preference``: chosen/rejected pairs (or KTO examples) as aligned token ids
    (:mod:`dataprep.tasks.preference`)."""

    name = "preference"

    def prepare_tokenizer(self, recipe: Recipe, tokenizer, tmp: Path):
        return tokenizer

    def local_mode(self, recipe: Recipe) -> str:
        return "processes"  # templating and masks are Python that holds the GIL

    def plan(self, recipe: Recipe, tokenizer, files: list[InputFile]) -> Plan:
        spec = spec_of(recipe)
        view = as_sft(recipe, spec)
        dtypes = {C.SEGMENT: np.dtype(np.uint8)}
        if spec.shape == "kto":
            dtypes[C.KTO_LABEL] = np.dtype(np.uint8)
        return Plan(
            format=KTO_FORMAT if spec.shape == "kto" else FORMAT,
            schema=row_schema(spec),
            reader=chunk_reader(recipe, spec),
            worker=(preference_worker, (view, spec, tokenizer, files)),
            # a pair row holds two sequences of up to max_length each (the prompt stored once): its
            # efficiency is against padding both, as a trainer's batch does (a KTO row: one sequence)
            make_packer=lambda: OnePerRow(max_length=spec.max_length * (1 if spec.shape == "kto" else 2), extra_dtypes=dtypes),
            to_batch=to_batch(spec),
            dedup=recipe.filter.dedup == "exact",
            rows=example_facts(recipe),
            manifest=lambda stage: TaskSections(sft=manifest_section(view, spec, stage, tokenizer),
                                                preference=preference_section(spec, stage)),
        )
