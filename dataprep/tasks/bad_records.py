"""What a record task's chunk worker does with a bad record, and the reasons such records carry.

Fine-tuning, few-shot and preference workers read records (not running text): a record can fail on
its own (a field missing, a template that refuses it, a special token's text inside it, too long).
:class:`RecordWorker` is their common base. A bad record is raised with its file, record and fix
(``on_error: raise``), counted under its reason with the first few locations kept for the end-of-run
message (``skip``), or handed to :attr:`RecordWorker.sink` (``validate --recipe`` collects them all).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from dataprep.errors import InputError, RecordProblem
from dataprep.read import InputFile
from dataprep.tasks.sft.records import location
from dataprep.text.filters import TOO_LONG

# Drop reasons of the record tasks (the readers and templates add their own; too_long is the filters').
RESPONSE_TOO_LONG = "response_too_long"
NO_TARGET = "no_target"
UNKNOWN_LABEL = "unknown_label"
TEMPLATE_RAISED = "template_raised"
SPECIAL_TOKEN_TEXT = "special_token_text"
BOUNDARY_MERGE = "boundary_merge"    # preference: a token spans the end of the prompt and the response's start
PROMPT_MISMATCH = "prompt_mismatch"  # preference: the prompt renders or tokenizes differently before the two responses

DROP_SAMPLES = 3  # skipped records whose location a chunk result carries (for the end-of-run messages)
_SKIP = "or `on_error: skip` to count such records as dropped"
FIXES = {
    UNKNOWN_LABEL: "add the label to `classification.labels`, or set `classification.unknown_label: drop`",
    TOO_LONG: "raise `max_length`, or set `overflow: drop` or `overflow: truncate_prompt`",
    RESPONSE_TOO_LONG: "raise `max_length`: the response alone does not fit, and it is never cut",
    SPECIAL_TOKEN_TEXT: "remove or escape that text in the record, set `special_text: keep` to encode it as "
    f"the special token, {_SKIP}",
    "unsupported_by_template": f"use a chat template that renders them (`chat.template:`), unmap that field, {_SKIP}",
    TEMPLATE_RAISED: f"fix the conversation as the template's message says, {_SKIP}",
    "template_failed": f"give the template messages in the shape it expects (see its source), {_SKIP}",
    "target_not_found": "use a template that renders every assistant turn's content, or `masking: generation` with a "
    f"generation-tagged template (`chat.template:`), {_SKIP}",
    "no_end_of_turn": f"use a template that closes assistant turns with an end-of-turn or EOS token, {_SKIP}",
    "unknown_role": f"map the dataset's roles under the input's `roles:` (e.g. human: user, gpt: assistant), {_SKIP}",
    BOUNDARY_MERGE: f"set `preference.boundary: cut` to keep such pairs (the merged token opens both responses), {_SKIP}",
    PROMPT_MISMATCH: f"render the prompt the same way before both responses (a template that prints the response "
    f"into the prompt cannot make pairs), {_SKIP}",
}
GENERIC_FIX = f"fix the record, map the right field under `fields:`, {_SKIP}"


class RecordWorker:
    """The base of the record tasks' chunk workers: bad records and the special-text check.

    Attributes:
        sink: set by ``validate --recipe``: bad records are collected here as ``(file, location,
            reason, message, fix)`` instead of raised or counted.
        drop_samples: this chunk's first skipped records, ``(location, reason, message)``.
    """

    def __init__(self, recipe, tokenizer, files: list[InputFile], *, special_text: str):
        self.recipe, self.tokenizer, self.files = recipe, tokenizer, files
        self.special_text = special_pattern(tokenizer) if special_text == "error" else None
        self.sink: list[tuple[str, str, str, str, str]] | None = None
        self.drop_samples: list[tuple[str, str, str]] = []

    def _strict(self, reason: str) -> bool:
        """Whether a bad record of ``reason`` stops the run (``on_error: raise``)."""
        return self.recipe.on_error == "raise"

    def _bad(self, file: InputFile, line: int, reason: str, message: str, drops: Counter) -> None:
        """A bad record: raise with its file, record and fix, count it under ``reason``, or hand it to
        :attr:`sink`."""
        fix = FIXES.get(reason, GENERIC_FIX)
        if self.sink is not None:
            self.sink.append((file.location, location(file, line), reason, message, fix))
            return
        if self._strict(reason):
            raise InputError(file.location, location(file, line), message, fix)
        drops[reason] += 1
        if len(self.drop_samples) < DROP_SAMPLES:
            self.drop_samples.append((location(file, line), reason, message))

    def _take_samples(self) -> list[tuple[str, str, str]]:
        samples, self.drop_samples = self.drop_samples, []
        return samples

    def _special_suspects(self, columns: Mapping[str, list[Any]]) -> bool:
        """Whether a record of a chunk may hold a special token's text, so that each must be checked
        (:meth:`_check_special_text`): one search over each column's strings (those of chat messages
        too) joined, where a search per value cost fine-tuning a tenth of its time. A match in one
        value is a match in the join, so a chunk said clean is clean."""
        if self.special_text is None:
            return False
        for values in columns.values():
            texts = [v for v in values if type(v) is str]  # a text column's values, without a generator each
            texts += [text for v in values if v is not None and type(v) is not str for text in _strings(v)]
            if self.special_text.search("\n".join(texts)):
                return True
        return False

    def _check_special_text(self, record: Mapping[str, Any]) -> None:
        """A record's own text must not hold a special token's text (``special_text: error``)."""
        if self.special_text is None:
            return
        for name, value in record.items():
            for text in _strings(value):
                found = self.special_text.search(text)
                if found:
                    raise RecordProblem(
                        SPECIAL_TOKEN_TEXT,
                        f"field {name!r} holds {found.group()!r}, the text of a special token: it would encode as "
                        "that token (a stop or turn marker) inside the example",
                    )


def special_pattern(tokenizer) -> re.Pattern[str] | None:
    """Any special token's text (longest first), or None when the tokenizer has none."""
    texts = {t.content for t in tokenizer.tokenizer.get_added_tokens_decoder().values() if t.special and t.content}
    return re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True))) if texts else None


def text_sha256(text: str) -> str:
    """The hex SHA-256 of ``text`` (UTF-8): how the manifest fingerprints a template's source."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a field value (text, or chat messages: lists of role/content dicts)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
