"""What ``run`` would make of a recipe's first records, without writing anything.

Each record goes through the task's own chunk worker on its own, then through the ordered stage's
decisions, so a recipe author sees exactly the rows ``run`` would write, and every record it
would drop, with why, in seconds::

    read the first K records (the recipe's reader, fields, on_error)
      -> for each record alone: SftWorker / pretrain.chunk_worker  (normalize, filter, render, tokenize, mask)
      -> the ordered stage's drops, in input order: no tokens, exact duplicates, near-duplicates
      -> RowView (ids, loss mask) | "dropped: <reason> (<detail>)" + its text | "run would stop here: <error>"

Nothing is re-implemented here: the rendering, masking, length policy, filters, content hashes
and the near-duplicate index are the pipeline's (exact dedup keeps the first record of a hash, as
the ordered stage does). Only the details shown beside a filter's reason (a length, a language and
its score, the quality setting failed) are measured here, for the reader.
Every rule sees a record alone (they judge each document on its own), and the duplicate decisions
see the records before it, so the first K records are dropped here exactly as in a run of those K.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import columns as C
from dataprep.errors import ConfigError, InputError
from dataprep.recipe import Recipe
from dataprep.look.inspect import NEWLINE, RowView

TEXT_WIDTH = 120  # characters of a dropped document's text shown (the one place for the width)
DROPPED = "dropped: "  # how a dropped record's first note begins (tests and callers read the reason after it)


def rows_from_recipe(recipe: Recipe, *, source: str | Path | None = None, head: int = 3) -> list[RowView]:
    """Render, tokenize and mask the first ``head`` records as ``run`` would, writing nothing.

    Each record goes through the task's own chunk worker (:class:`dataprep.tasks.sft.task.SftWorker` or
    :func:`dataprep.tasks.pretrain.chunk_worker`) on its own, so every shown row is exactly what
    ``run`` makes of that record; a record ``run`` would drop is shown with its reason and detail
    (pretraining: with its normalized text, cut to :data:`TEXT_WIDTH`), and an error that would
    stop ``run`` is shown in its place.

    Args:
        recipe: a loaded recipe.
        source: read this file with the recipe's first input's settings (fields, format)
            instead of the recipe's inputs.
        head: how many records.

    Raises:
        ConfigError: the recipe trains its tokenizer (there is none to render with yet).
    """
    from dataprep.tasks.sft.records import location
    from dataprep.read import resolve_inputs
    from dataprep.text.tokenizer import load_tokenizer

    recipe = _previewed(recipe, source, head)
    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    tokenizer = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    worker, chunks, labels = _worker(recipe, tokenizer, files)
    judge = _Judge(recipe, worker, _Ordered(recipe), labels)
    read_drops: Counter = Counter()
    out: list[RowView] = []
    for index, batch in chunks(files, recipe, read_drops, Counter()):
        lines = batch.column(C.LINE).to_pylist()
        for i, line in enumerate(lines[: head - len(out)]):
            out.append(judge.row(f"{files[index].path.name} {location(files[index], line)}", index, batch.slice(i, 1)))
        if len(out) >= head:
            break
    if read_drops:
        note = ", ".join(f"{k} {v}" for k, v in sorted(read_drops.items()))
        out.append(RowView("records skipped while reading", np.zeros(0, np.int64), None, [], notes=[note]))
    if recipe.mixture is not None:  # drawn after every input is read: no preview of the first records can show it
        out.insert(0, RowView("mixture", np.zeros(0, np.int64), None, [], notes=[MIXTURE_NOTE]))
    return out


MIXTURE_NOTE = ("records as the inputs are read, in order; which of them the mixture draws (the rest dropped as "
                "`mixture`) and how it interleaves its sources, `run` decides over the whole corpus")


def dropped_reasons(rows: list[RowView]) -> Counter:
    """The drop reasons of previewed rows, counted as a run's manifest counts them (``counts.dropped``)."""
    return Counter(note[len(DROPPED):].split(" ", 1)[0] for row in rows for note in row.notes[:1] if note.startswith(DROPPED))


def shorten(text: str, width: int = TEXT_WIDTH) -> str:
    """``text`` on one line (line breaks shown as ↵), cut to ``width`` characters with its full length."""
    flat = text.replace("\r", "␍").replace("\n", NEWLINE)
    return flat if len(flat) <= width else f"{flat[:width]}… ({len(text):,} characters)"


def _previewed(recipe: Recipe, source: str | Path | None, head: int) -> Recipe:
    """The recipe as the preview runs it: ``source`` in place of its inputs, chunks of ``head`` records."""
    if recipe.tokenizer.train is not None:
        raise ConfigError(
            "the recipe trains its tokenizer on the whole corpus, so there is none to render with yet; "
            "build the dataset and inspect it (`dataprep inspect OUT`), or name a tokenizer "
            "(`--tokenizer OUT/tokenizer`, or `tokenizer.path` in the recipe)"
        )
    if source is not None:
        first = dataclasses.replace(recipe.inputs[0], path=str(Path(source).resolve()))
        changes = {"inputs": (first,)}
        if recipe.sft is not None:
            changes["sft"] = dataclasses.replace(recipe.sft, fields=recipe.sft.fields[:1])
        recipe = dataclasses.replace(recipe, **changes)
    return dataclasses.replace(recipe, output=dataclasses.replace(recipe.output, chunk_records=max(1, head)))


def _worker(recipe: Recipe, tokenizer, files):
    """The task's chunk worker, its chunk iterator and the class labels (classification) or None."""
    from dataprep.tasks import pretrain
    from dataprep.tasks.sft.records import iter_chunks, read_label_set
    from dataprep.tasks.sft.worker import SftWorker

    if recipe.task == "sft":
        labels = None
        if recipe.sft.classification is not None:
            labels = recipe.sft.classification.labels or read_label_set(recipe, files)
        return SftWorker(recipe, tokenizer, files, labels), iter_chunks, labels
    if recipe.task == "fewshot":  # demonstrations come from the whole train split: read it first
        from dataprep.tasks import fewshot

        pool = fewshot.build_pool(recipe, tokenizer, files)
        return fewshot.FewshotWorker(recipe, tokenizer, files, pool), iter_chunks, None
    return pretrain.chunk_worker(recipe, tokenizer), pretrain.iter_chunks, None


class _Ordered:
    """The ordered stage's drops (:meth:`dataprep.build.ordered.OrderedStage.add`) over the previewed
    records, in order: a document of no tokens, an exact duplicate of an earlier record, then a
    near-duplicate of an earlier kept one (``dedup: minhash``, the run's own index)."""

    def __init__(self, recipe: Recipe):
        from dataprep.build.near_dup import NearDupIndex

        self.exact = recipe.filter.dedup != "none"  # minhash removes exact duplicates first
        self.spec = recipe.filter.minhash
        self.near = NearDupIndex(self.spec) if recipe.filter.dedup == "minhash" else None
        self.first: dict[bytes, str] = {}  # content hash -> the title of its first record
        self.kept: list[str] = []  # titles of the near-duplicate index's kept documents, in its order

    def drop(self, title: str, result) -> str | None:
        """The drop note for a record the worker kept, or None when ``run`` writes it."""
        from dataprep.build.ordered import NO_TOKENS
        from dataprep.text.filters import DUPLICATE, NEAR_DUPLICATE
        from dataprep.text.minhash import agreement

        if not result.lengths[0]:
            return f"{NO_TOKENS} (the tokenizer encodes it to no token)"
        digest = result.hashes[0]
        if self.exact and digest in self.first:
            return f"{DUPLICATE} of {self.first[digest]}"
        self.first.setdefault(digest, title)
        if self.near is None or result.signatures is None:
            return None
        before = Counter(self.near.clusters)
        if not self.near.drop_mask(result.signatures, np.ones(1, bool))[0]:
            if self.near.kept > len(self.kept):  # indexed (a document without shingles is not)
                self.kept.append(title)
            return None
        rep = next(iter(self.near.clusters - before))
        agree = int(agreement(result.signatures[0], self.near.signatures(np.array([rep])))[0])
        return (f"{NEAR_DUPLICATE} of {self.kept[rep]} (estimated Jaccard {agree / self.spec.permutations:.2f} "
                f">= threshold {self.spec.threshold})")


class _Judge:
    """One previewed record as ``run`` treats it: the task's worker, then the ordered stage."""

    def __init__(self, recipe: Recipe, worker, ordered: _Ordered, labels):
        self.recipe, self.worker, self.ordered, self.labels = recipe, worker, ordered, labels

    def row(self, title: str, index: int, record: pa.RecordBatch) -> RowView:
        try:
            result = self.worker((index, record))
        except InputError as exc:
            return RowView(title, np.zeros(0, np.int64), None, [], notes=[f"run would stop here: {exc}"])
        if not result.hashes:
            return self._dropped(title, index, record, result)
        if (why := self.ordered.drop(title, result)) is not None:
            return self._dropped(title, index, record, result, why)
        notes = [f"split: {'validation' if result.validation[0] else 'train'}"]
        stats = {name: int(values[0]) for name, values in result.doc_stats.items()}
        if stats.get("truncated"):
            notes.append(f"prompt truncated by {stats['truncated_tokens']} tokens (overflow: truncate_prompt)")
        if "shots" in stats:
            notes.append(f"{stats['shots']} demonstration(s) in context")
        if stats.get("straddles"):
            notes.append(f"{stats['straddles']} target token(s) straddle the prompt/response boundary")
        label = None
        if C.LABEL_ID in result.extras and self.labels is not None:
            label = self.labels[int(result.extras[C.LABEL_ID][0])]
        return RowView(title=title, ids=result.tokens.astype(np.int64), mask=result.extras.get(C.LOSS_MASK),
                       seq_lens=[int(result.lengths[0])], labels=[label], notes=notes)

    def _dropped(self, title: str, index: int, record: pa.RecordBatch, result, why: str | None = None) -> RowView:
        """A record ``run`` drops: its reason with the rule's detail, and (running text) its text."""
        text = _clean_text(record, self.recipe) if C.TEXT in record.schema.names else None
        if why is None:
            reason = ", ".join(sorted(result.drops)) or "filtered"
            messages = [message for _, _, message in result.drop_samples]  # the record tasks' own words
            if not messages and text is None:
                messages = self._overflow_message(reason, index, record)
            detail = messages[0] if messages else (None if text is None else _filter_detail(reason, text, self.recipe))
            why = reason if detail is None else f"{reason} ({detail})"
        notes = [DROPPED + why]
        if text is not None:
            notes.append(f"text: {shorten(text)}")
        else:  # a record task's fields as read (nested ones are JSON text), the empty ones left out
            fields = {k: v for k, v in record.to_pylist()[0].items() if k not in (C.SOURCE, C.LINE) and v not in (None, "", "null")}
            notes.append(f"record: {shorten(json.dumps(fields, ensure_ascii=False))}")
        return RowView(title, np.zeros(0, np.int64), None, [], notes=notes)

    def _overflow_message(self, reason: str, index: int, record: pa.RecordBatch) -> list[str]:
        """``overflow: drop`` counts a long example without a word: the same worker with ``overflow:
        error`` says how long, into its sink (as ``validate --recipe`` collects it) instead of raising."""
        from dataprep.text.filters import TOO_LONG

        sft = self.recipe.sft
        if reason != TOO_LONG or self.recipe.task != "sft" or sft.overflow != "drop":
            return []
        twin = type(self.worker)(dataclasses.replace(self.recipe, sft=dataclasses.replace(sft, overflow="error")),
                                 self.worker.tokenizer, self.worker.files, self.labels)
        twin.sink = []
        twin((index, record))
        return [message for _, _, found, message, _ in twin.sink if found == TOO_LONG]


def _clean_text(record: pa.RecordBatch, recipe: Recipe) -> str:
    """The record's text as the filters saw it: normalized, personal data redacted (as
    :func:`dataprep.tasks.pretrain.clean_batch` does before filtering)."""
    from dataprep.text.normalize import normalize_array
    from dataprep.text.pii import redact_rows

    texts = normalize_array(record.column(C.TEXT), recipe.normalize)
    if recipe.normalize.pii:
        texts = redact_rows(texts, recipe.normalize.pii)[0]
    return texts[0].as_py() or ""


def _filter_detail(reason: str, text: str, recipe: Recipe) -> str | None:
    """What a document filter measured (lengths, language) or the threshold it failed (quality rules)."""
    from dataprep.text import filters as F
    from dataprep.text.language import LANGUAGE

    spec = recipe.filter
    chars = len(text)
    if reason == F.EMPTY:
        return "no characters" if not chars else "only blank lines"
    if reason == F.TOO_SHORT:
        return f"{chars:,} characters < filter.min_chars {spec.min_chars:,}"
    if reason == F.TOO_LONG:
        return f"{chars:,} characters > filter.max_chars {spec.max_chars:,}"
    if reason == F.TOO_FEW_WORDS:
        words = pc.count_substring_regex(pa.array([text]), pattern=r"\S+")[0].as_py()
        return f"{words:,} words < filter.min_words {spec.min_words:,}"
    if reason == LANGUAGE:
        from dataprep.text.language import detect

        (code,), scores = detect([text])
        wanted = None if spec.languages == "all" else spec.languages
        if wanted is not None and code not in wanted:
            return f"{code or 'no language'} {scores[0]:.2f}, wants {', '.join(wanted)}"
        return f"{code or 'no language'} {scores[0]:.2f} < filter.language_threshold {spec.language_threshold}"
    return _quality_threshold(reason, spec.quality)


# A quality rule's reason -> the option of its filter (dataprep.text.quality) whose threshold the document failed.
_QUALITY_OPTIONS = {
    "gopher_too_few_words": "min_words", "gopher_too_many_words": "max_words",
    "gopher_short_words": "min_mean_word_length", "gopher_long_words": "max_mean_word_length",
    "gopher_hash_ratio": "max_symbol_word_ratio", "gopher_ellipsis_ratio": "max_symbol_word_ratio",
    "gopher_bullet_lines": "max_bullet_lines", "gopher_ellipsis_lines": "max_ellipsis_lines",
    "gopher_alpha_words": "min_alpha_words", "gopher_stop_words": "min_stop_words",
    "gopher_dup_para_frac": "max_dup_para_frac", "gopher_dup_para_char_frac": "max_dup_para_char_frac",
    "gopher_dup_line_frac": "max_dup_line_frac", "gopher_dup_line_char_frac": "max_dup_line_char_frac",
    "c4_too_few_sentences": "min_sentences", "c4_lorem_ipsum": "lorem_ipsum", "c4_curly_bracket": "curly_bracket",
    "fineweb_line_punct": "min_line_punct_ratio", "fineweb_short_lines": "max_short_line_ratio",
    "fineweb_dup_line_chars": "max_dup_line_char_ratio", "fineweb_list_like": "max_newline_word_ratio",
}


_NGRAM_RULE = re.compile(r"gopher_(top|dup)_(\d+)gram")


def _quality_threshold(reason: str, filters: tuple) -> str | None:
    """``filter.quality.<filter>.<option> <value>``: the recipe setting behind a quality rule's reason."""
    from dataprep.text.quality import FILTERS

    option, size = _QUALITY_OPTIONS.get(reason), None
    if ngram := _NGRAM_RULE.fullmatch(reason):  # gopher_top_2gram, gopher_dup_5gram, ...
        option, size = f"{ngram[1]}_ngram_char_frac", int(ngram[2])
    names = {cls: name for name, cls in FILTERS.items()}
    for f in filters:
        if option is not None and hasattr(f, option):
            value = getattr(f, option)
            if size is not None:
                value = dict(value).get(size)
                option = f"{option}[{size}-gram]"
            return f"filter.quality.{names[type(f)]}.{option} {value}"
    return None
