"""Where every input record went, and the run's refusal to lose data quietly.

Each record an input holds is read, then either written (a document or example in a split) or
dropped under a reason. Reasons are of two kinds:

- **chosen** by the recipe (:data:`CHOSEN`): filters (``empty``, ``too_short``, ``too_long``,
  ``too_few_words``, ``language``, the quality rules' ``gopher_*`` / ``c4_*`` / ``fineweb_*``), ``duplicate``,
  ``near_duplicate``, ``unknown_label`` with ``unknown_label: drop``, ``mixture`` (a source drawn at
  fewer than one epoch), ``contaminated`` (``decontaminate:``), and
  ``no_tokens`` (a document the tokenizer encodes to nothing);
- **damage**: everything that would stop the run under ``on_error: raise`` (unreadable records,
  missing fields, records the template or the tokenizer cannot make into an example). With
  ``on_error: skip`` they are counted, and :func:`check_losses` fails the run when they exceed
  ``max_dropped_fraction`` of any input's records.

:func:`check_output` refuses a dataset with no example, or with an empty split the recipe asks
for (``allow_empty: true`` lets both through).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from dataprep.errors import DataLossError
from dataprep.text.filters import DUPLICATE, EMPTY, NEAR_DUPLICATE, TOO_FEW_WORDS, TOO_LONG, TOO_SHORT
from dataprep.text.language import LANGUAGE
from dataprep.build.ordered import NO_TOKENS
from dataprep.pack.mixture import MIXTURE  # documents a subsampling mixture source left out
from dataprep.text.decontaminate import CONTAMINATED  # documents sharing an n-gram with an evaluation item
from dataprep.tasks.bad_records import UNKNOWN_LABEL  # dropped only when the recipe says `unknown_label: drop`

if TYPE_CHECKING:
    from dataprep.build.ordered import OrderedStage
    from dataprep.read import InputFile
    from dataprep.recipe import Recipe

log = logging.getLogger("dataprep.run")

CHOSEN = frozenset({EMPTY, TOO_SHORT, TOO_LONG, TOO_FEW_WORDS, DUPLICATE, NEAR_DUPLICATE, UNKNOWN_LABEL, NO_TOKENS, LANGUAGE,
                    MIXTURE, CONTAMINATED})
# the quality rules' own reasons (dataprep.text.quality): each arises only where the recipe turned its filter on
QUALITY_PREFIXES = ("gopher_", "c4_", "fineweb_")
RECORDS_READ = "records_read"
UNKNOWN_WARN_FRACTION = 1e-4  # unknown-token ids above this share of the written tokens: a warning
SHOWN = 3  # drop locations quoted per input in an error


def input_drops(index: int, by_input: Mapping[int, Counter], stage: OrderedStage) -> Counter:
    """Every record of input ``index`` that was dropped, by reason (reading and the workers)."""
    drops = Counter({k: v for k, v in by_input.get(index, Counter()).items() if k != RECORDS_READ})
    drops.update(stage.source_drops.get(index, Counter()))
    return drops


def damage(drops: Mapping[str, int], chosen: frozenset[str] = CHOSEN) -> Counter:
    """The drops that are not the recipe's choice."""
    return Counter({reason: n for reason, n in drops.items() if reason not in chosen and not reason.startswith(QUALITY_PREFIXES) and n})


def chosen_reasons(recipe: Recipe) -> frozenset[str]:
    """The drop reasons that are the recipe's choice: :data:`CHOSEN`, but ``too_long`` only where
    the recipe drops long examples (``overflow: drop``), not where it calls them errors."""
    if recipe.sft is not None and recipe.sft.overflow != "drop":
        return CHOSEN - {TOO_LONG}
    return CHOSEN


def check_losses(recipe: Recipe, files: Sequence[InputFile], by_input: Mapping[int, Counter],
                 stage: OrderedStage, indexes: Sequence[int]) -> None:
    """Fail when the inputs ``indexes`` (read to their end) lost more than the recipe allows.

    Raises:
        DataLossError: with each offending input's counts per reason and its first drop locations.
    """
    if recipe.on_error != "skip" or recipe.max_dropped_fraction >= 1:
        return
    over = []
    chosen = chosen_reasons(recipe)
    for index in indexes:
        read = by_input.get(index, Counter())[RECORDS_READ]
        lost = damage(input_drops(index, by_input, stage), chosen)
        if read and lost.total() / read > recipe.max_dropped_fraction:  # a ratio: 29/100 is not over 0.29
            over.append((index, read, lost))
    if not over:
        return
    lines = []
    for index, read, lost in over:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in lost.most_common())
        lines.append(f"{files[index].location}: {lost.total():,} of {read:,} records dropped "
                     f"({lost.total() / read:.1%}): {reasons}")
        for location, reason, message in stage.drop_samples.get(index, [])[:SHOWN]:
            lines.append(f"    {location}: {reason}: {message}")
    raise DataLossError(
        f"more than max_dropped_fraction ({recipe.max_dropped_fraction:.1%}) of an input's records "
        "were dropped (the first unreadable records were logged above):\n  " + "\n  ".join(lines),
        "fix the records (`dataprep validate --recipe RECIPE` lists every one with its fix), map the right "
        "fields or template, or raise `max_dropped_fraction` if such losses are expected",
    )


def check_output(recipe: Recipe, stage: OrderedStage, rows: Mapping[str, int], read_drops: Mapping[str, int]) -> None:
    """Refuse an empty dataset or an empty split, unless the recipe allows it.

    Raises:
        DataLossError: naming the split and why it is empty.
    """
    if recipe.allow_empty:
        return
    written = sum(stage.documents.values())
    allow = "or set `allow_empty: true` if an empty output is what you want"
    if written == 0:
        dropped = ", ".join(f"{reason} {n:,}" for reason, n in stage_and_read_drops(stage, read_drops).most_common()) or "none"
        raise DataLossError(
            f"the run wrote no example at all (dropped: {dropped})",
            f"check the inputs' fields, the template and the filters (`dataprep inspect --recipe RECIPE` shows the "
            f"first records as the run makes them), {allow}",
        )
    wanted = {"train": True, "validation": recipe.split.validation > 0}
    for split, expected in wanted.items():
        if not expected:
            continue
        if stage.documents[split] == 0:
            fix = ("raise `split.validation`, or set it to 0 for no validation split, " if split == "validation"
                   else "lower `split.validation`, ")
            raise DataLossError(f"the {split} split is empty: no document of {written:,} fell in it", fix + allow)
        if rows.get(split, 0) == 0:
            tokens = stage.pack_stats()[split]
            raise DataLossError(
                f"the {split} split has {stage.documents[split]:,} documents but no row: all their "
                f"{tokens['dropped_tokens']:,} tokens were dropped as the packing remainder",
                f"lower `packing.seq_len`, or set `packing.remainder: pad`, {allow}",
            )


def stage_and_read_drops(stage: OrderedStage, read_drops: Mapping[str, int] | None = None) -> Counter:
    drops = Counter(stage.drops)
    drops.update(read_drops or {})
    return drops


def warn_unknown(stage: OrderedStage, tokens: int, unk_token: str | None) -> None:
    """Log a warning when the tokenizer mapped a noticeable share of the text to its unknown token."""
    unknown = sum(stage.unknown.values())
    if unknown and unknown > UNKNOWN_WARN_FRACTION * max(tokens, 1):
        log.warning(
            "the tokenizer encoded %d pieces of text as its unknown token %s (%.3f%% of %d tokens): that text is "
            "lost to training; `dataprep report OUT` lists them per input. fix: a tokenizer that covers these "
            "characters (byte-level BPE, or byte fallback), or normalize them away (`normalize:`)",
            unknown, unk_token or "", 100 * unknown / max(tokens, 1), tokens,
        )
