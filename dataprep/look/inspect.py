"""Rows shown as tokens: which are trained (targets), where pieces and rows begin, which are special.

``dataprep inspect`` is built from three steps::

    rows_from_dataset(ds, split, indices)              stored rows           \\
    preview.rows_from_recipe(recipe, head=K)           the first K records,   > RowView -> row_spans -> format_row
                                                       rendered as `run` would /

A :class:`RowView` is the ids, the loss mask and the piece lengths of one row. :func:`row_spans`
turns it into styled :class:`Span` s, one per token, and :func:`format_row` writes them as ANSI
colours or as plain text with markers. One packed row, plain text (``⟦ ⟧`` = targets, ``⟨ ⟩`` =
special tokens, ``│`` = token boundary)::

    ━━ train row 0 · 12 tokens · 2 segments · 5 targets · 2 pad ━━
    ── segment 1/2 · tokens 0–5 · 3 targets ──
    Q│:│ ab│↵
    A│:│⟦ ba│⟨<eos>⟩⟧
    ── segment 2/2 · tokens 6–9 · 2 targets ──
    ...
    ── pad · 2 × ⟨<eos>⟩ ──

Token text comes from the tokenizer's own streaming decoder, one segment at a time: a
character split over several byte tokens is shown on the token that completes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import click
import numpy as np
import pyarrow as pa
from tokenizers.decoders import DecodeStream

from dataprep import columns as C
from dataprep.dataset.reader import Dataset
from dataprep.errors import ConfigError
from dataprep.text.tokenizer import LoadedTokenizer
from dataprep.look import preference

# kind -> (style of even tokens, style of odd tokens): alternating backgrounds show boundaries.
STYLES: dict[str, tuple[dict, dict]] = {
    "target": ({"fg": 231, "bg": 28, "bold": True}, {"fg": 231, "bg": 22, "bold": True}),
    "context": ({"fg": 252, "bg": 238}, {"fg": 252, "bg": 236}),
    "text": ({"fg": 252, "bg": 24}, {"fg": 252, "bg": 17}),  # no assistant_masks (pretraining rows)
}
FLAT_STYLES = {"target": {"fg": 46, "bold": True}, "context": {"fg": 245}, "text": {}}  # boundaries off
SPECIAL_FG = 213
HEADER = {"fg": 39, "bold": True}
DIM = {"fg": 244}
TARGET_OPEN, TARGET_CLOSE = "⟦", "⟧"
SPECIAL_OPEN, SPECIAL_CLOSE = "⟨", "⟩"
BOUNDARY = "│"
PARTIAL = "◦"  # a byte token whose character completes on a later token
NEWLINE = "↵"


@dataclass
class RowView:
    """One row (or one rendered record) to show.

    Attributes:
        title: e.g. ``train row 3`` or ``sft_tasks.jsonl line 12``.
        ids: int token ids of the row.
        mask: uint8 loss mask (1 = target), or None when the rows carry none (pretraining).
        seq_lens: piece lengths, summing to ``len(ids)``; the last is the pad piece when ``num_pad``.
        num_pad: length of the trailing pad piece.
        labels: per non-pad piece, its class label (classification) or None.
        notes: lines shown under the title (split, truncation, drop reason, ...).
        originals: masked LM rows with static masks: the original id at each chosen position
            (``mask`` marks them), IGNORE_INDEX elsewhere.
        target_ids: span-corruption rows: the ``labels`` sequence (sentinels and the spans they hide).
    """

    title: str
    ids: np.ndarray
    mask: np.ndarray | None
    seq_lens: list[int]
    num_pad: int = 0
    labels: list[str | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    originals: np.ndarray | None = None
    target_ids: np.ndarray | None = None

    @property
    def segments(self) -> int:
        return len(self.seq_lens) - (1 if self.num_pad else 0)

    @property
    def targets(self) -> int | None:
        return None if self.mask is None else int(self.mask.sum())


@dataclass(frozen=True)
class Span:
    """One token as shown: its text, whether it is a target/context/plain token, special or not."""

    kind: str  # target | context | text
    text: str
    id: int
    special: bool = False


# --- rows ------------------------------------------------------------------------------


def pick_rows(n: int, *, rows: Sequence[int] = (), random: int | None = None, seed: int = 0, head: int = 3) -> list[int]:
    """Row indices to show: ``rows`` as given, ``random`` distinct ones (sorted, seeded), or the first ``head``.

    Raises:
        ConfigError: a row past the end, or more than one way of choosing.
    """
    if rows and random is not None:
        raise ConfigError("--row and --random choose rows in two different ways; pass one of them")
    for r in rows:
        if not 0 <= r < n:
            raise ConfigError(f"row {r} is out of range: the split has {n:,} rows (0 to {n - 1:,})")
    if rows:
        return list(rows)
    if random is not None:
        picked = np.random.default_rng(seed).choice(n, size=min(random, n), replace=False)
        return sorted(int(i) for i in picked)
    return list(range(min(head, n)))


def rows_from_dataset(ds: Dataset, split: str, indices: Sequence[int]) -> list[RowView]:
    """The stored rows ``indices`` of ``split``, with class labels named from the manifest."""
    if preference.is_preference(ds.table(split)):  # pairs: shown side by side (look/preference.py)
        return preference.pair_views(ds.table(split), split, indices)
    table = ds.table(split).take(pa.array(list(indices), pa.int64()))
    sft = ds.manifest.sft
    names = {v: k for k, v in ((sft.labels if sft is not None else None) or {}).items()}
    out = []
    for index, row in zip(indices, table.to_pylist()):
        num_pad = int(row.get(C.NUM_PAD) or 0)
        seq_lens = list(row[C.SEQ_LENS])
        labels = row.get(C.LABEL_IDS) or ([row[C.LABEL_ID]] if row.get(C.LABEL_ID) is not None else [])
        mask = row.get(C.LOSS_MASK)
        originals = target_ids = None
        if row.get(C.LABELS) is not None:
            seq = np.asarray(row[C.LABELS], dtype=np.int64)
            if len(seq) == len(row[C.INPUT_IDS]):  # masked LM: the chosen positions are the targets
                originals, mask = seq, (seq != C.IGNORE_INDEX)
            else:  # span corruption: labels are their own sequence
                target_ids = seq
        out.append(
            RowView(
                title=f"{split} row {index}",
                ids=np.asarray(row[C.INPUT_IDS], dtype=np.int64),
                mask=None if mask is None else np.asarray(mask, dtype=np.uint8),
                seq_lens=seq_lens,
                num_pad=num_pad,
                labels=[names.get(x, str(x)) for x in labels],
                originals=originals,
                target_ids=target_ids,
            )
        )
    return out


# --- spans -----------------------------------------------------------------------------


def special_ids(tokenizer: LoadedTokenizer) -> set[int]:
    """Ids of the tokenizer's special tokens (added tokens marked special, and the bos/eos/pad/unk ids)."""
    added = {i for i, t in tokenizer.tokenizer.get_added_tokens_decoder().items() if t.special}
    roles = (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.unk_id)
    return added | {i for i in roles if i is not None}


def token_texts(tokenizer: LoadedTokenizer, ids: Sequence[int]) -> list[str | None]:
    """The text each token adds, by the tokenizer's streaming decoder; None while a character is incomplete."""
    stream = DecodeStream(skip_special_tokens=False)
    out: list[str | None] = []
    for i in ids:
        try:
            out.append(stream.step(tokenizer.tokenizer, int(i)))
        except Exception:  # an id the decoder rejects: show it on its own
            out.append(tokenizer.tokenizer.decode([int(i)], skip_special_tokens=False))
    return out


def row_spans(row: RowView, tokenizer: LoadedTokenizer, specials: set[int] | None = None) -> list[list[Span]]:
    """One list of :class:`Span` per non-pad piece of ``row``, one span per token."""
    specials = special_ids(tokenizer) if specials is None else specials
    pieces, start = [], 0
    for n in row.seq_lens[: row.segments]:
        ids = row.ids[start : start + n]
        texts = token_texts(tokenizer, ids)
        spans = []
        for k, (i, text) in enumerate(zip(ids.tolist(), texts)):
            kind = "text" if row.mask is None else ("target" if row.mask[start + k] else "context")
            spans.append(Span(kind, text or PARTIAL, i, i in specials))  # never empty: every token shows
        pieces.append(spans)
        start += n
    return pieces


# --- formatting ------------------------------------------------------------------------


def legend(*, color: bool) -> str:
    if not color:
        return (
            f"legend: {TARGET_OPEN}target{TARGET_CLOSE}  context  {SPECIAL_OPEN}special{SPECIAL_CLOSE}  "
            f"{BOUNDARY} token boundary  {NEWLINE} newline  {PARTIAL} byte of a longer character"
        )
    parts = [
        click.style(" target ", **STYLES["target"][0]),
        click.style(" context ", **STYLES["context"][0]),
        click.style(" special ", **{**STYLES["context"][0], "fg": SPECIAL_FG, "bold": True}),
        click.style(" text (no mask) ", **STYLES["text"][0]),
    ]
    return "legend: " + " ".join(parts) + f"  {NEWLINE} newline  {PARTIAL} byte of a longer character"


def row_header(row: RowView, *, color: bool) -> str:
    facts = [f"{len(row.ids):,} tokens", f"{row.segments} segment{'s' * (row.segments != 1)}"]
    facts.append("no loss mask" if row.targets is None else f"{row.targets:,} targets")
    facts.append(f"{row.num_pad:,} pad")
    text = f"━━ {row.title} · " + " · ".join(facts) + " ━━" if len(row.ids) else f"━━ {row.title} ━━"
    return click.style(text, bold=True) if color else text


def format_row(
    row: RowView,
    tokenizer: LoadedTokenizer,
    *,
    color: bool,
    boundaries: bool = True,
    show_ids: bool = False,
    specials: set[int] | None = None,
) -> str:
    """The whole row as text: header, notes, then each segment with its header, then the pad piece."""
    lines = [row_header(row, color=color)]
    lines += [_style(f"  {note}", DIM, color) for note in row.notes]
    pieces = row_spans(row, tokenizer, specials)
    start = 0
    for n, (spans, length) in enumerate(zip(pieces, row.seq_lens)):
        facts = [f"segment {n + 1}/{row.segments}", f"tokens {start}–{start + length - 1}"]
        if row.mask is not None:
            facts.append(f"{sum(s.kind == 'target' for s in spans)} targets")
        if n < len(row.labels) and row.labels[n] is not None:
            facts.append(f"label {row.labels[n]}")
        lines.append(_style("── " + " · ".join(facts) + " ──", HEADER, color))
        lines.append(_format_spans(spans, color=color, boundaries=boundaries, show_ids=show_ids))
        start += length
    if row.originals is not None:
        chosen = np.flatnonzero(row.originals != C.IGNORE_INDEX)
        lines.append(_style(f"── masked LM · {len(chosen)} chosen positions: shown → original ──", HEADER, color))
        shown = token_texts(tokenizer, row.ids[chosen].tolist())
        original = token_texts(tokenizer, row.originals[chosen].tolist())
        lines.append("  ".join(f"{p}:{_visible(a or PARTIAL)}→{_visible(b or PARTIAL)}" for p, a, b in zip(chosen.tolist(), shown, original)))
    if row.target_ids is not None:
        lines.append(_style(f"── labels · {len(row.target_ids)} tokens (sentinels and the spans they replace) ──", HEADER, color))
        spans = [Span("target", text or PARTIAL, i, i in (specials or special_ids(tokenizer)))
                 for i, text in zip(row.target_ids.tolist(), token_texts(tokenizer, row.target_ids.tolist()))]
        lines.append(_format_spans(spans, color=color, boundaries=boundaries, show_ids=show_ids))
    if row.num_pad:
        pad_id = int(row.ids[-1])
        pad_text = tokenizer.tokenizer.id_to_token(pad_id) or str(pad_id)
        lines.append(_style(f"── pad · {row.num_pad:,} × {SPECIAL_OPEN}{pad_text}{SPECIAL_CLOSE} (id {pad_id}) ──", DIM, color))
    return "\n".join(lines)


def _format_spans(spans: list[Span], *, color: bool, boundaries: bool, show_ids: bool) -> str:
    out: list[str] = []
    in_target = False
    for k, span in enumerate(spans):
        text, newline = _visible(span.text), ""
        if show_ids:
            id_text = f"[{span.id}]"
            if text.endswith("\n"):  # the id goes on the token's line, before its line break
                text, newline = text[:-1], "\n"
        if color:
            style = dict(STYLES[span.kind][k % 2] if boundaries else FLAT_STYLES[span.kind])
            if span.special:
                style.update(fg=SPECIAL_FG, bold=True)
            # style each line on its own, so a background never runs past a line's end
            out.append("\n".join(click.style(part, **style) if part else "" for part in text.split("\n")))
            if show_ids:
                out.append(click.style(id_text, **DIM) + newline)
            continue
        is_target = span.kind == "target"
        if is_target != in_target:
            out.append(TARGET_OPEN if is_target else TARGET_CLOSE)
        elif k and boundaries and not show_ids and not spans[k - 1].text.endswith("\n"):
            out.append(BOUNDARY)  # with ids the [id] marks it; after a newline, the line break does
        in_target = is_target
        out.append(f"{SPECIAL_OPEN}{text}{SPECIAL_CLOSE}" if span.special else text)
        if show_ids:
            out.append(id_text + newline)
    if in_target and not color:
        out.append(TARGET_CLOSE)
    return "".join(out)


def _visible(text: str) -> str:
    return text.replace("\r", "␍").replace("\n", NEWLINE + "\n")


def _style(text: str, style: dict, color: bool) -> str:
    return click.style(text, **style) if color else text


def iter_formatted(
    rows: Sequence[RowView], tokenizer: LoadedTokenizer, *, color: bool, boundaries: bool = True, show_ids: bool = False
) -> Iterator[str]:
    """The legend, then each row formatted (see :func:`format_row`)."""
    specials = special_ids(tokenizer)
    yield legend(color=color)
    for row in rows:
        if isinstance(row, preference.PairView):
            yield preference.format_pair(row, tokenizer)
            continue
        yield format_row(row, tokenizer, color=color, boundaries=boundaries, show_ids=show_ids, specials=specials)
