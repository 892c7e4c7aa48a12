"""What a check found wrong, where, and why (:class:`Finding`); and :class:`Findings`, the report
that collects them.

Checks are generators that *yield* :class:`Finding` s (jsonschema's ``iter_errors`` style);
:class:`Findings` collects them, keeps the first ``max_errors`` for display, and counts every
one by kind. A vectorized check that finds many bad tokens at once yields a few exact
findings and then one finding whose ``count`` stands for the rest, so the counts stay exact
without building an object per bad token::

    train/data-00000-of-00002.arrow row 7 position 118: token_out_of_vocab: id 50301 is not in [0, vocab_size 50257)
    train/data-00000-of-00002.arrow: token_out_of_vocab: 1,204 more like the above in this shard (x1,204)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

EXAMPLES = 3  # exact findings a vectorized check yields per check and batch before summarizing


@dataclass(frozen=True)
class Finding:
    """One problem: what (``kind``), where (file, line or split/row/position, JSON path), why.

    Attributes:
        kind: A short code to count by, e.g. ``shard_checksum``, ``missing_eos``, ``bad_messages``.
            Input-record kinds reuse the pipeline's drop reasons where one fits.
        message: Why: what was expected and what was found.
        file: The input file, or the dataset file (``train/data-00000-of-00001.arrow``, ``manifest.json``).
        line: Input records: ``line 3`` (jsonl, tsv, csv, txt), ``record 3`` (json), ``row 3`` (parquet, arrow).
        path: A JSON path in the record or the manifest (``$.messages[1].role``, ``$.splits.train``).
        split: Dataset split.
        row: Row index within the shard (0-based).
        position: Token position within the row (0-based).
        expected: The expected form (input records).
        count: How many occurrences this finding stands for (more than 1 only for summaries).
    """

    kind: str
    message: str
    file: str | None = None
    line: str | None = None
    path: str | None = None
    split: str | None = None
    row: int | None = None
    position: int | None = None
    expected: str | None = None
    count: int = 1

    @property
    def where(self) -> str:
        parts = [self.file or (self.split or "")]
        if self.line:
            parts.append(self.line)
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.position is not None:
            parts.append(f"position {self.position}")
        if self.path:
            parts.append(self.path)
        return " ".join(p for p in parts if p)

    def __str__(self) -> str:
        text = f"{self.where}: {self.kind}: {self.message}" if self.where else f"{self.kind}: {self.message}"
        if self.count > 1:
            text += f" (x{self.count:,})"
        if self.expected:
            text += f"\n    expected: {self.expected}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Findings:
    """Everything one validation found: the report ``validate`` prints.

    Attributes:
        target: What was validated (a dataset folder, or input files).
        mode: ``dataset`` or ``inputs``.
        max_errors: Findings kept for display; every finding is counted either way.
        findings: The kept findings, in the order found.
        counts: Occurrences by kind, over all findings.
        stats: Figures worth reading even when clean (rows, tokens, target ratio, seconds).
        notes: Checks that were skipped, and why.
        stopped: Input validation stopped reading at ``max_errors`` findings.
        inputs: Input validation: per input file, what ``run`` would count for it, in the
            manifest's words (``path``, ``records_read``, ``documents`` written, ``dropped`` by reason).
    """

    target: str
    mode: str
    max_errors: int = 50
    findings: list[Finding] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    stats: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stopped: bool = False
    inputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.counts

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, finding: Finding) -> None:
        self.counts[finding.kind] += finding.count
        if len(self.findings) < self.max_errors:
            self.findings.append(finding)

    def extend(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.add(finding)

    @property
    def full(self) -> bool:
        """``max_errors`` findings have been counted (input validation stops reading here)."""
        return self.total >= self.max_errors

    def as_dict(self) -> dict[str, Any]:
        inputs = {"inputs": self.inputs} if self.inputs else {}
        return {
            "target": self.target,
            "mode": self.mode,
            "ok": self.ok,
            "findings": [f.as_dict() for f in self.findings],
            "counts": dict(sorted(self.counts.items())),
            "total": self.total,
            "shown": len(self.findings),
            "stopped": self.stopped,
            "stats": self.stats,
            "notes": self.notes,
            **inputs,
        }

    def to_text(self) -> str:
        """The human-readable report: findings, then counts by kind, stats and notes."""
        lines = [f"{self.target}: " + ("ok, no findings" if self.ok else f"{self.total:,} finding(s)")]
        lines += [f"  {finding}" for finding in self.findings]
        if self.total > len(self.findings):
            lines.append(f"  ... {self.total - len(self.findings):,} more not shown (--max-errors {self.max_errors})")
        if self.stopped:
            lines.append(f"  stopped reading after {self.max_errors} findings (--max-errors); counts cover what was read")
        if self.counts:
            lines.append("summary: " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(self.counts.items())))
        if self.stats:
            lines.append("stats: " + "; ".join(f"{k} {_fmt(v)}" for k, v in self.stats.items()))
        lines += [_input_line(entry) for entry in self.inputs]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _input_line(entry: dict[str, Any]) -> str:
    text = f"input {entry['path']}: {entry['records_read']:,} records read"
    if "documents" in entry:
        text += f", {entry['documents']:,} written"
    dropped = entry.get("dropped") or {}
    return text + (", dropped: " + ", ".join(f"{k} {n:,}" for k, n in dropped.items()) if dropped else "")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)
