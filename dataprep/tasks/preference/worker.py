"""The preference chunk worker: records -> (prompt, chosen, rejected) token ids, or (prompt,
completion, label) for KTO.

Each of chosen and rejected is rendered whole (prompt + response, through the chat template or
as text + EOS) and tokenized **once**; the response is the tokens from the first target (the
character span of the last assistant turn, as fine-tuning finds it) to the last one, the stop
token. The prompt is what precedes it, and must be the same tokens in both::

    chosen    <bos> User: hi  Assistant: | Hello ! <eos>       prompt_ids   = <bos> User: hi Assistant:
    rejected  <bos> User: hi  Assistant: | Go away <eos>       chosen_ids   = Hello ! <eos>
                                         ^ prompt_end          rejected_ids = Go away <eos>

A token that spans the boundary (the tokenizer merged the prompt's last characters with the
response's first) is a ``boundary_merge``: ``preference.boundary: drop`` drops the pair; ``cut``
keeps it with the merged token as the first response token (the prompt ends at the last token
boundary before the response). Prompt tokens that differ between the two sequences are
``prompt_mismatch``. Overflow applies to the longer sequence and keeps both aligned: ``drop``,
or ``truncate_prompt`` (cut the shared prompt from the left, keeping a leading BOS).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from dataprep import columns as C
from dataprep.errors import ConfigError, RecordProblem, TemplateRaised
from dataprep.read import FieldSpec, InputFile
from dataprep.read import preference as R
from dataprep.tasks.bad_records import BOUNDARY_MERGE, NO_TARGET, PROMPT_MISMATCH, RESPONSE_TOO_LONG, TEMPLATE_RAISED, TOO_LONG, RecordWorker
from dataprep.tasks.base import ChunkResult
from dataprep.tasks.sft.loss_mask import encode_batch_flat
from dataprep.tasks.sft.records import chat_template_of
from dataprep.tasks.sft.templates import Rendered
from dataprep.text.filters import content_hashes, validation_flags

PROMPT, CHOSEN, REJECTED = 0, 1, 2  # segment of each token in a pair's flat piece
STATS = ("truncated", "truncated_tokens", "boundary_merges", "prompt_tokens", "chosen_tokens", "rejected_tokens",
         "chosen_longer", "desirable")


class PreferenceWorker(RecordWorker):
    """Renders, tokenizes and aligns one chunk of pairs (or KTO examples). What a bad record becomes
    (raised, counted or collected) and the special-text check are :class:`RecordWorker`'s."""

    def __init__(self, recipe, spec, tokenizer, files: list[InputFile]):
        super().__init__(recipe, tokenizer, files, special_text=spec.special_text)
        self.sft, self.spec = recipe.sft, spec
        self.text = spec.template == "text"
        self.chat = None if self.text else chat_template_of(recipe, tokenizer)
        self.eos_text = tokenizer.tokens.get("eos") or ""
        if self.text and not self.eos_text:
            raise ConfigError("the tokenizer has no EOS token to close responses", fix="set `tokenizer.eos_token`")

    def __call__(self, item: tuple[int, pa.RecordBatch]) -> ChunkResult:
        index, batch = item
        file = self.files[index]
        drops: Counter = Counter()
        columns = {name: [_loaded(v) for v in batch.column(name).to_pylist()] for name in fields_for(self.spec, file.entry)}
        lines = batch.column(C.LINE).to_pylist()
        rendered, labels, kept = [], [], []
        suspects = self._special_suspects(columns)  # else no record holds a special token's text
        for row, line in enumerate(lines):
            record = {name: values[row] for name, values in columns.items()}
            try:
                texts, label = self._render_record(record, file.spec.role_map, check_special=suspects)
            except RecordProblem as problem:
                self._bad(file, line, problem.reason, problem.message, drops)
                continue
            rendered += texts
            labels.append(label)
            kept.append(line)
        return self._align(index, file, rendered, labels, kept, drops)

    # --- one record -> rendered sequences ---------------------------------------------------

    def _render_record(self, record: Mapping[str, Any], roles, *, check_special: bool = True) -> tuple[list[Rendered], bool | None]:
        if check_special:
            self._check_special_text(record)
        shape = self.spec.shape
        if shape == "kto":
            got = R.read_unpaired(record, roles)
        elif shape == "transcripts":
            got = R.read_transcripts(record)
        else:
            got = R.read_pair(record, roles)
        if isinstance(got, tuple):
            raise RecordProblem(*got)
        tools = record.get("tools") or None
        if isinstance(got, R.Unpaired):
            return [self._render(got.prompt, got.prompt_text, got.completion, tools)], got.label
        return [self._render(got.prompt, got.prompt_text, got.chosen, tools),
                self._render(got.prompt, got.prompt_text, got.rejected, tools)], None

    def _render(self, prompt: list[dict] | None, prompt_text: str | None, response: str, tools) -> Rendered:
        """prompt + response as one text, the response and its stop token the target span."""
        if self.text:
            if prompt_text is None:
                raise RecordProblem("unsupported_by_template", "template: text needs a text prompt; use template: chat "
                                    "for conversations")
            text = prompt_text + response + self.eos_text
            return Rendered(text, ((len(prompt_text), len(text)),), len(prompt_text))
        if prompt is None:
            prompt = R.transcript_prompt(prompt_text) if self.spec.shape == "transcripts" else [{"role": "user", "content": prompt_text}]
            if isinstance(prompt, tuple):
                raise RecordProblem(*prompt)
            response = response.strip()
        messages = [*prompt, {"role": "assistant", "content": response}]
        try:
            return self.chat.render_with_targets(messages, tools=tools, policy="last_assistant", reasoning=self.sft.chat.reasoning)
        except TemplateRaised as exc:
            raise RecordProblem(TEMPLATE_RAISED, f"the chat template refused this conversation: {exc}") from exc

    # --- rendered sequences -> aligned token ids ----------------------------------------------

    def _align(self, source: int, file: InputFile, rendered: list[Rendered], labels, lines, drops: Counter) -> ChunkResult:
        enc = encode_batch_flat(self.tokenizer, rendered)
        per = 1 if self.spec.shape == "kto" else 2
        pieces, segments, stats, hashes, prompt_hashes, keep_labels = [], [], [], [], [], []
        for i, line in enumerate(lines):
            seqs = [enc[per * i + j] for j in range(per)]
            texts = [rendered[per * i + j] for j in range(per)]
            try:
                parts, stat = self._fit(seqs, texts)
            except RecordProblem as problem:
                self._bad(file, line, problem.reason, problem.message, drops)
                continue
            pieces.append(np.concatenate(parts))
            segments.append(np.repeat(np.arange(len(parts), dtype=np.uint8), [len(p) for p in parts]))
            stat["desirable"] = int(bool(labels[i])) if per == 1 else 0
            stats.append(stat)
            hashes.append("\x00".join(t.text for t in texts))
            prompt_hashes.append(texts[0].text[: texts[0].prompt_end])
            keep_labels.append(labels[i])
        lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
        extras = {C.SEGMENT: np.concatenate(segments) if segments else np.zeros(0, np.uint8)}
        if per == 1:
            extras[C.KTO_LABEL] = np.repeat(np.asarray(keep_labels, dtype=np.uint8), lengths)
        by_prompt = content_hashes(prompt_hashes)  # the split follows the prompt: pairs sharing one share a split
        return ChunkResult(
            hashes=content_hashes(hashes),
            validation=validation_flags(by_prompt, fraction=self.recipe.split.validation, salt=self.recipe.split.salt),
            tokens=np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32),
            lengths=lengths,
            source=source,
            extras=extras,
            doc_stats={name: np.asarray([s[name] for s in stats], dtype=np.int64) for name in STATS},
            drops=drops,
            drop_samples=self._take_samples(),
        )

    def _fit(self, seqs, texts: list[Rendered]) -> tuple[list[np.ndarray], dict[str, int]]:
        """The aligned pieces ``[prompt, response...]`` of one record, and its counters."""
        if any(t.text[: t.prompt_end] != texts[0].text[: texts[0].prompt_end] for t in texts):
            raise RecordProblem(PROMPT_MISMATCH, "the template renders the prompt differently before chosen and rejected")
        starts, ends = [], []
        for s in seqs:
            hits = np.flatnonzero(s.mask)
            if len(hits) == 0 or hits[0] == 0:
                raise RecordProblem(NO_TARGET, "a response has no target token after the prompt")
            starts.append(int(hits[0]))
            ends.append(int(hits[-1]) + 1)
        merged = any(s.straddles > 0 for s in seqs)
        if merged and self.spec.boundary == "drop":
            raise RecordProblem(BOUNDARY_MERGE, "a token spans the end of the prompt and the start of the response")
        k = min(starts)
        prompt = seqs[0].ids[:k]
        if any(not np.array_equal(s.ids[:k], prompt) for s in seqs) or len(set(starts)) != 1:
            raise RecordProblem(PROMPT_MISMATCH, "the prompt's tokens differ between chosen and rejected (a merge "
                                "across the boundary that no token boundary before the response resolves)")
        responses = [s.ids[k:e] for s, e in zip(seqs, ends)]
        over = k + max(len(r) for r in responses) - self.spec.max_length
        truncated = 0
        if over > 0:
            if self.spec.overflow == "drop":
                raise RecordProblem(TOO_LONG, f"the longer sequence is {k + max(len(r) for r in responses)} tokens, over "
                                    f"max_length {self.spec.max_length}")
            head = 1 if self.tokenizer.bos_id is not None and k and prompt[0] == self.tokenizer.bos_id else 0
            if head + over >= k:
                raise RecordProblem(RESPONSE_TOO_LONG, f"the longer response alone needs {max(len(r) for r in responses)} "
                                    f"tokens after a prompt token; max_length is {self.spec.max_length}")
            prompt = np.concatenate([prompt[:head], prompt[head + over:]])
            truncated = over
        stat = {"truncated": int(truncated > 0), "truncated_tokens": truncated, "boundary_merges": int(merged),
                "prompt_tokens": len(prompt), "chosen_tokens": len(responses[0]),
                "rejected_tokens": len(responses[1]) if len(responses) > 1 else 0,
                "chosen_longer": int(len(responses) > 1 and len(responses[0]) > len(responses[1]))}
        return [prompt, *responses], stat


def _loaded(value: str | None) -> Any:
    """A ``json``-kind field's value, parsed."""
    return None if value is None else json.loads(value)


def fields_for(spec, index: int) -> dict[str, FieldSpec]:
    """Record field -> where it is, for input ``index``: the shape's defaults (same names), then the
    recipe's ``fields:``. Every field is read as JSON (text, a message or messages, a boolean).

    Raises:
        ConfigError: ``fields:`` names a field the shape does not read.
    """
    names = {"kto": ("messages", "label"), "transcripts": ("chosen", "rejected")}.get(spec.shape, ("prompt", "chosen", "rejected"))
    fields = {name: FieldSpec(name, kind="json") for name in names}
    if spec.shape != "transcripts":
        fields["tools"] = FieldSpec("tools", kind="json", required=False)
    for name, given in ((spec.fields[index] if index < len(spec.fields) else None) or {}).items():
        if name not in fields:
            raise ConfigError(f"inputs[{index}].fields names {name!r}, which preference shape {spec.shape!r} does not "
                              f"read; it reads {sorted(fields)}", fix="map only those fields, or set `preference.shape`")
        fields[name] = FieldSpec(given.path, kind="json", required=given.required if name == "tools" else True)
    return fields


def preference_worker(recipe, spec, tokenizer, files: list[InputFile]) -> PreferenceWorker:
    return PreferenceWorker(recipe, spec, tokenizer, files)
