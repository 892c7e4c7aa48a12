"""The numbers ``dataprep report`` shows: columnar scans of a dataset's shards plus its manifest.

Every per-row and per-example number comes from Arrow buffers and numpy over whole record
batches (list lengths, flattened values, prefix sums), never a Python loop per row, so a
report of a million rows takes seconds. Per piece of every row (``seq_lengths``)::

    seq_lengths     = [3, 2, 3 | 4, 4]      num_pad = [3, 0]   -> pieces [3, 2] | [4, 4], pad piece 3
    assistant_masks = [0 1 1 0 1 0 0 0 | 0 0 1 1 0 0 1 1]
    targets         = [2, 1 | 2, 2]         prompt = length - targets

Unknown tokens (the id a tokenizer writes for text it cannot represent) are counted per split in
the same scan, when the manifest names the tokenizer's unk id (``tokenizer.special_tokens.unk``).

What the data cannot tell (records read and dropped, truncations, boundary straddles, inputs,
unknown tokens per input) comes from the manifest. Numbers both sources hold are compared, and
any difference is listed under ``mismatches``. :func:`compute` gives the numbers (``--format json``); :mod:`dataprep.look.plots`
draws them; :func:`dataprep.look.report.write_report` writes ``report.html`` (plots embedded) and the PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import columns as C
from dataprep.dataset.manifest import Manifest, as_json
from dataprep.dataset.manifest_parts import EXAMPLES, STREAM
from dataprep.dataset.reader import Dataset
from dataprep.pack.mixture import MIXTURE
from dataprep.text.decontaminate import CONTAMINATED
from dataprep.text.filters import DUPLICATE, EMPTY, NEAR_DUPLICATE, TOO_FEW_WORDS, TOO_LONG, TOO_SHORT
from dataprep.text.language import LANGUAGE
from dataprep.text.special_tokens import unknown_token_id


@dataclass
class SplitArrays:
    """Per-row and per-example arrays of one split (what the plots draw)."""

    fill: np.ndarray  # per row: content tokens / seq_len
    lengths: np.ndarray  # per example (fine-tuning) or document (pretraining), in tokens
    targets: np.ndarray | None = None  # per example: target tokens (fine-tuning)
    rows: int = 0
    pad_tokens: int = 0
    content_tokens: int = 0
    target_tokens: int = 0
    unknown_tokens: int = 0  # unknown-token ids among the content tokens (when unk_id is given)


@dataclass
class Stats:
    """The numbers (``summary``, JSON-ready) and the arrays behind the plots."""

    summary: dict[str, Any]
    arrays: dict[str, SplitArrays] = field(default_factory=dict)


# --- scans -----------------------------------------------------------------------------


def _values(array: pa.ListArray) -> np.ndarray:
    """The list values of ``array`` that its rows cover (respects slicing), zero-copy when possible."""
    return pc.list_flatten(array).to_numpy(zero_copy_only=False)


def scan_split(table: pa.Table, *, seq_len: int, eos_id: int | None = None, eos_docs: bool = False, unk_id: int | None = None) -> SplitArrays:
    """Scan one split's rows, batch by batch.

    Args:
        table: the split's rows.
        seq_len: the row length the fill is measured against.
        eos_id: the EOS id, used when ``eos_docs``.
        eos_docs: documents are delimited by EOS across rows (``wrap`` packing with ``add_eos``);
            otherwise each non-pad piece is one document or example.
        unk_id: count this id (the unknown token; never the pad id, see
            :func:`~dataprep.text.tokenizer.unknown_token_id`).
    """
    fills, lengths, targets = [], [], []
    has_mask = C.LOSS_MASK in table.column_names
    out = SplitArrays(fill=np.zeros(0), lengths=np.zeros(0, np.int64), targets=np.zeros(0, np.int64) if has_mask else None)
    since_eos = 0  # tokens of the document still open at the end of the previous batch (eos_docs)
    for batch in table.to_batches():
        if batch.num_rows == 0:
            continue
        row_len = pc.list_value_length(batch.column(C.INPUT_IDS)).to_numpy(zero_copy_only=False).astype(np.int64)
        num_pad = batch.column(C.NUM_PAD).to_numpy(zero_copy_only=False).astype(np.int64)
        pieces_col = batch.column(C.SEQ_LENS)
        pieces = _values(pieces_col).astype(np.int64)
        per_row = pc.list_value_length(pieces_col).to_numpy(zero_copy_only=False).astype(np.int64)
        # the pad piece is the last piece of each row with num_pad > 0
        is_pad = np.zeros(len(pieces), dtype=bool)
        is_pad[(np.cumsum(per_row) - 1)[num_pad > 0]] = True
        content = row_len - num_pad
        fills.append(content / seq_len)
        out.rows += batch.num_rows
        out.pad_tokens += int(num_pad.sum())
        out.content_tokens += int(content.sum())
        starts = np.concatenate(([0], np.cumsum(pieces)[:-1])) if len(pieces) else pieces
        if has_mask:
            mask = _values(batch.column(C.LOSS_MASK))
            sums = np.add.reduceat(mask, starts, dtype=np.int64) if len(mask) else np.zeros(len(pieces), np.int64)
            sums[pieces == 0] = 0  # reduceat gives the element at start for an empty piece
            targets.append(sums[~is_pad])
            out.target_tokens += int(sums[~is_pad].sum())
        ids = _values(batch.column(C.INPUT_IDS)) if (eos_docs and eos_id is not None) or unk_id is not None else None
        if unk_id is not None:
            out.unknown_tokens += int(np.count_nonzero(ids == unk_id))
        if eos_docs and eos_id is not None:
            keep = np.ones(len(ids), dtype=bool)
            for s, n in zip(starts[is_pad], pieces[is_pad]):  # only rows with padding: few
                keep[s : s + n] = False
            ends = np.flatnonzero(ids[keep] == eos_id)
            if len(ends):
                lengths.append(np.diff(np.concatenate(([-1 - since_eos], ends))))
                since_eos = int(keep.sum()) - 1 - int(ends[-1])
            else:
                since_eos += int(keep.sum())
        else:
            lengths.append(pieces[~is_pad])
    if fills:
        out.fill = np.concatenate(fills)
    if lengths:
        out.lengths = np.concatenate(lengths).astype(np.int64)
    if has_mask and targets:
        out.targets = np.concatenate(targets).astype(np.int64)
    return out


def scan_pairs(table: pa.Table, *, seq_len: int, **_: Any) -> SplitArrays:
    """:func:`scan_split` for preference rows (no ``input_ids``): per row, the stored tokens."""
    lengths = sum((pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False).astype(np.int64)
                   for name in table.column_names if pa.types.is_list(table.schema.field(name).type)), np.zeros(table.num_rows, np.int64))
    prompt = pc.list_value_length(table.column("prompt_ids")).to_numpy(zero_copy_only=False).astype(np.int64)
    return SplitArrays(fill=lengths / seq_len, lengths=lengths, targets=lengths - prompt, rows=table.num_rows,
                       content_tokens=int(lengths.sum()), target_tokens=int((lengths - prompt).sum()))


def pair_lengths(table: pa.Table) -> dict[str, Any]:
    """Preference rows: length distributions of prompts and responses, and the margin (chosen -
    rejected tokens) with the share of pairs whose chosen response is longer (a known bias: a model
    can learn "longer is better" instead of the preference). KTO: lengths by label."""
    def lengths(name: str) -> np.ndarray:
        return pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False).astype(np.int64)

    out: dict[str, Any] = {"rows": table.num_rows, "prompt_length": dist(lengths(C.PROMPT_IDS))}
    if C.COMPLETION_IDS in table.column_names:
        label = table.column(C.KTO_LABEL).to_numpy(zero_copy_only=False).astype(bool)
        n = lengths(C.COMPLETION_IDS)
        out.update(desirable=int(label.sum()), undesirable=int((~label).sum()),
                   desirable_length=dist(n[label]), undesirable_length=dist(n[~label]))
        return out
    chosen, rejected = lengths(C.CHOSEN_IDS), lengths(C.REJECTED_IDS)
    margin = chosen - rejected
    out.update(chosen_length=dist(chosen), rejected_length=dist(rejected), margin=dist(margin),
               chosen_longer=round(float((margin > 0).mean()), 6) if len(margin) else 0.0)
    return out




def _pair_entry(table: pa.Table, a: SplitArrays) -> dict[str, Any]:
    return {**pair_lengths(table), "documents": a.rows, "tokens": a.content_tokens, "pad_tokens": 0, "efficiency": 0.0,
            "fill": dist(a.fill), "length": dist(a.lengths), "target_tokens": a.target_tokens}


def dist(values: np.ndarray) -> dict[str, float | int]:
    """count, mean, min, p50, p90, p99, max of ``values`` (zeros when empty)."""
    if len(values) == 0:
        return {"count": 0, "mean": 0.0, "min": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "count": int(len(values)),
        "mean": round(float(values.mean()), 4),
        "min": _num(values.min()),
        "p50": _num(p50),
        "p90": _num(p90),
        "p99": _num(p99),
        "max": _num(values.max()),
    }


def _num(x) -> int | float:
    x = float(x)
    return int(x) if x.is_integer() else round(x, 4)


# --- numbers ---------------------------------------------------------------------------


def _split_entry(a: Any, *, length: int, unk_id: int | None) -> dict[str, Any]:
    """One split's numbers (rows of tokens: every task but preference)."""
    entry = {
        "rows": a.rows,
        "documents": int(len(a.lengths)),
        "tokens": a.content_tokens,
        "pad_tokens": a.pad_tokens,
        "efficiency": round(a.content_tokens / (a.rows * length), 6) if a.rows else 0.0,
        "fill": dist(a.fill),
        "length": dist(a.lengths),
    }
    if unk_id is not None:
        entry["unknown_tokens"] = a.unknown_tokens
    if a.targets is not None:
        entry["target_tokens"] = a.target_tokens
        entry["targets_per_example"] = dist(a.targets)
        entry["prompt_length"] = dist(a.lengths - a.targets)
    return entry


def compute(ds: Dataset) -> Stats:
    """Scan every split of ``ds`` and gather the report's numbers."""
    m = ds.manifest
    counts, tok, rows = m.counts, m.tokenizer, m.rows
    # wrap rows hold the token stream: documents run through them and end at their EOS (an
    # objective's frame or corruption makes pieces instead); examples are one piece each
    eos_docs = rows.layout == STREAM and m.objective is None and tok.add_eos
    examples_layout = rows.layout == EXAMPLES
    pairs = m.task == "preference"  # one pair per row, no input_ids: lengths and margins (pair_lengths)
    unk_id = None if pairs else unknown_token_id(as_json(tok.special_tokens) or {})
    arrays = {s: (scan_pairs if pairs else scan_split)(ds.table(s), seq_len=rows.length, eos_id=tok.eos_id,
                                                                  eos_docs=eos_docs, unk_id=unk_id) for s in ds.splits}

    splits = {name: _pair_entry(ds.table(name), a) if pairs else _split_entry(a, length=rows.length, unk_id=unk_id)
              for name, a in arrays.items()}
    total_rows = sum(a.rows for a in arrays.values())
    tokens = sum(a.content_tokens for a in arrays.values())
    total = {
        "rows": total_rows,
        "documents": sum(s["documents"] for s in splits.values()),
        "tokens": tokens,
        "pad_tokens": sum(a.pad_tokens for a in arrays.values()),
        "efficiency": round(tokens / (total_rows * rows.length), 6) if total_rows else 0.0,
    }
    if examples_layout:
        total["target_tokens"] = sum(a.target_tokens for a in arrays.values())
        total["target_ratio"] = round(total["target_tokens"] / tokens, 6) if tokens else 0.0
    examples = m.sft.examples if m.sft is not None else None
    summary: dict[str, Any] = {
        "dataset": str(ds.path),
        "task": m.task,
        "format": m.format,
        "name": m.name,
        "recipe_hash": m.recipe_hash,
        "tokenizer": {"source": tok.source, "vocab_size": tok.vocab_size, "fingerprint": tok.fingerprint},
        "seq_len": rows.length,
        "packing": rows.packing,
        "documents_are": "eos_delimited" if eos_docs else ("examples" if examples_layout else "pieces"),
        "records": {
            "read": counts.records_read,
            "written": counts.records_written,
            "dropped": dict(counts.dropped),
            "dropped_total": sum(counts.dropped.values()),
        },
        "truncated": {"examples": examples.truncated if examples else 0, "tokens": examples.truncated_tokens if examples else 0},
        "boundary_straddles": (examples.with_boundary_straddle if examples else 0) if examples_layout else None,
        "remainder_tokens_dropped": counts.remainder_tokens_dropped,
        "splits": splits,
        "total": total,
        "sources": [
            {"path": m.resolve(i.path), "format": i.format, "bytes": i.bytes, "documents": i.documents, "tokens": i.tokens,
             **({"unknown_tokens": i.unknown_tokens} if unk_id is not None else {})}
            for i in m.inputs
        ],
    }
    if m.preference is not None:
        summary["preference"] = as_json(m.preference)
    if not tok.trained:  # where its files are, as for the inputs ("trained" names none)
        summary["tokenizer"]["source"] = m.resolve(tok.source)
    if unk_id is not None:
        summary["unknown_tokens"] = _unknown(m, unk_id, splits, summary["sources"])
    summary["mismatches"] = _mismatches(summary, m)
    summary["filters"] = filters_section(m)
    return Stats(summary=summary, arrays=arrays)


def _mismatches(summary: dict[str, Any], m: Manifest) -> list[str]:
    """Where the data and the manifest disagree (a dataset changed after `run`, or a bug)."""
    counts = m.counts
    found = []

    def check(what: str, data: Any, manifest: Any) -> None:
        if manifest is not None and data != manifest:
            found.append(f"{what}: the data has {data:,}, the manifest says {manifest:,}")

    for split, s in summary["splits"].items():
        check(f"{split} rows", s["rows"], counts.rows[split])
        if summary["documents_are"] == "examples":
            check(f"{split} examples", s["documents"], counts.documents[split])
    for split, s in summary["splits"].items():
        if "unknown_tokens" in s and counts.unknown_tokens is not None and not m.packing[split].dropped_tokens:
            check(f"{split} unknown tokens", s["unknown_tokens"], counts.unknown_tokens[split])
    check("tokens", summary["total"]["tokens"], counts.tokens)
    check("pad tokens", summary["total"]["pad_tokens"], counts.pad_tokens)
    if "target_tokens" in summary["total"]:
        check("target tokens", summary["total"]["target_tokens"], m.sft.target_tokens if m.sft is not None else None)
    return found


def _unknown(m: Manifest, unk_id: int, splits: dict[str, Any], sources: list[dict[str, Any]]) -> dict[str, Any]:
    """Unknown tokens per split (counted in the rows) and per input (from the manifest), with their
    share of the tokens."""
    def share(n: int | None, tokens: int | None) -> float | None:
        return None if n is None or not tokens else round(n / tokens, 6)

    return {
        "id": unk_id,
        "token": m.tokenizer.special_tokens["unk"].token,
        "splits": {k: {"count": v["unknown_tokens"], "share": share(v["unknown_tokens"], v["tokens"])} for k, v in splits.items()},
        "inputs": [{"path": i["path"], "count": i.get("unknown_tokens"), "share": share(i.get("unknown_tokens"), i.get("tokens"))} for i in sources],
    }


# --- filters ---------------------------------------------------------------------------

# Groups of drop reasons, in the order the report shows them. A reader of a dataset does not import
# the code that built it (tests/test_architecture.py), so the two reasons only the producer declares
# are spelled here; tests/test_report.py checks they equal dataprep.build.ordered.NO_TOKENS and
# dataprep.tasks.bad_records.UNKNOWN_LABEL, and that "damage" is dataprep.build.accounting.damage.
NO_TOKENS, UNKNOWN_LABEL = "no_tokens", "unknown_label"
GROUPS = ("length", "language", "quality", "dedup", "decontamination", "mixture", "label", "damage")


def reason_group(reason: str, *, long_is_damage: bool = False) -> str:
    """The group of a drop reason: what the recipe chose to remove (length, language, quality, dedup,
    decontamination, mixture: a subsampled source's documents left out, label) or ``damage`` (records
    ``on_error: raise`` would stop at). ``too_long`` is damage where a fine-tuning recipe's
    ``overflow`` is not ``drop``."""
    from dataprep.text.quality import FILTERS  # each rule's reason starts with its filter family's name

    if reason == TOO_LONG and long_is_damage:
        return "damage"
    if reason in (EMPTY, TOO_SHORT, TOO_LONG, TOO_FEW_WORDS, NO_TOKENS):
        return "length"
    if reason == LANGUAGE:
        return "language"
    if reason.startswith(tuple({name.split("_")[0] + "_" for name in FILTERS})):
        return "quality"
    chosen = {DUPLICATE: "dedup", NEAR_DUPLICATE: "dedup", CONTAMINATED: "decontamination", MIXTURE: "mixture", UNKNOWN_LABEL: "label"}
    return chosen.get(reason, "damage")


def filters_section(m: Manifest) -> dict[str, Any]:
    """What the run removed, from the manifest: records per drop reason (grouped, :func:`reason_group`)
    and per input, each with its share of the records read; near-duplicate clusters and redactions
    when the run made them; documents and tokens per language (``filter.languages``) and the mixture's
    sources (``mixture``) and, for pretraining, the first few documents each reason dropped (``examples``)
    when the manifest has them."""
    long_is_damage = m.recipe.get("overflow", "drop") != "drop"
    read = m.counts.records_read

    def share(n: int, of: int | None) -> float | None:
        return round(n / of, 6) if of else None

    groups: dict[str, list[dict[str, Any]]] = {}
    for reason, n in sorted(m.counts.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
        if n:
            groups.setdefault(reason_group(reason, long_is_damage=long_is_damage), []).append(
                {"reason": reason, "records": n, "share": share(n, read)})
    inputs = []
    for i in m.inputs:
        dropped = {k: v for k, v in (i.dropped or {}).items() if v}
        by_group = {g: sum(v for k, v in dropped.items() if reason_group(k, long_is_damage=long_is_damage) == g) for g in GROUPS}
        inputs.append({"path": m.resolve(i.path), "records_read": i.records_read, "dropped": sum(dropped.values()),
                       "share": share(sum(dropped.values()), i.records_read), "groups": {g: n for g, n in by_group.items() if n},
                       "reasons": dropped})
    total = sum(m.counts.dropped.values())
    return {
        "records_read": read, "dropped": total, "share": share(total, read),
        "groups": [{"group": g, "records": sum(r["records"] for r in groups[g]), "share": share(sum(r["records"] for r in groups[g]), read),
                    "reasons": groups[g]} for g in GROUPS if g in groups],
        "inputs": inputs,
        "near_duplicates": as_json(m.counts.near_duplicates),
        "redacted": m.counts.redacted,
        "mojibake_fixed": m.counts.mojibake_fixed,
        "languages": _languages(m.counts.languages),
        "mixture": as_json(m.mixture),
        "decontamination": as_json(m.decontamination),
        "examples": m.counts.dropped_examples,  # pretraining: reason -> its first dropped documents (text cut short)
    }


def _languages(found: dict[str, dict[str, int]] | None) -> list[dict[str, Any]] | None:
    """``counts.languages`` as rows with each language's share of the written tokens (None: not recorded)."""
    if found is None:
        return None
    tokens = sum(v["tokens"] for v in found.values())
    return [{"language": code, **v, "share": round(v["tokens"] / tokens, 6) if tokens else None} for code, v in found.items()]


# --- text ------------------------------------------------------------------------------
