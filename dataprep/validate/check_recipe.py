"""``validate --recipe``: ``run``'s own readers and chunk workers over a recipe's inputs, writing nothing.

One definition of a bad record: this reports the records ``dataprep run`` would drop
(``on_error: skip``) or stop on (``on_error: raise``), under the same reasons, at the same
locations and with the same fixes, because the same code finds them::

    run       task reader -> task worker -> ordered stage: dedup, split, pack, write -> manifest
    validate  task reader -> task worker -> ordered stage: dedup, split              -> Findings
              (read.collecting)  (its sink)   (no packer, no writer, no file)

- The reader is the task's own chunk reader (its :class:`~dataprep.tasks.base.Plan`'s); inside
  :func:`dataprep.read.collecting` every bad record it meets is handed over with its location
  and fix instead of raising or being logged.
- Fine-tuning (``sft``, ``fewshot``): the plan's worker renders, tokenizes, masks and fits every
  example, as in a run (too long, no target, template refusals, unknown labels, special-token
  text); its rejects go to its ``sink``.
- Pretraining (``clm``, ``mlm``, ``span_corruption``): the plan's worker normalizes, filters and
  hashes; the only thing its tokenizer decides about a drop is whether a document has no token at
  all (``no_tokens``), so the worker gets a :class:`TokenCounts` in its tokenizer's place, which
  encodes only when the framing leaves that open.
- The ordered stage counts duplicates and token-less documents exactly as the run's does.

Findings are the drops the run counts as damage (:func:`dataprep.build.accounting.damage`) and
the records it stops on whatever ``on_error`` says (``unknown_label`` under ``unknown_label:
error``). Drops the recipe chooses (filters, ``duplicate``, ``no_tokens``, ``too_long`` under
``overflow: drop``, ``unknown_label`` under ``unknown_label: drop``) are counted, per input and in
all, as the manifest counts them, not listed. A file ``run`` cannot read at all (a cut .gz/.zst, an
unclosed csv quote, a json file that does not parse) is one ``unreadable_file`` finding where the
run's error points; the other inputs are still read. Findings come in file order.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataprep import columns as C
from dataprep.build import accounting
from dataprep.build.ordered import OrderedStage
from dataprep.errors import InputError
from dataprep.read import InputFile, collecting, resolve_inputs
from dataprep.read.chunks import ChunkReader
from dataprep.recipe import Recipe
from dataprep.tasks import pretrain
from dataprep.tasks.registry import task_for
from dataprep.tasks.sft import records as sft_records
from dataprep.tasks.sft.worker import SftWorker
from dataprep.text.tokenizer import LoadedTokenizer, load_tokenizer

from .findings import Finding, Findings

if TYPE_CHECKING:
    from dataprep.tasks.base import ChunkResult

UNREADABLE = "unreadable_file"  # a file the run cannot read at all: it stops, in every on_error mode
Bad = tuple[str, str, str, str, str]  # (file, location, reason, message, fix), as readers and workers hand them on


@dataclass
class CheckPlan:
    """What a check-only run reads inputs with and works them with."""

    reader: ChunkReader
    work: Callable[[tuple[int, pa.RecordBatch]], ChunkResult] | None  # None: the readers alone
    dedup: bool = False
    worker_bad: list[Bad] = field(default_factory=list)  # the worker's rejects (its sink)
    chosen: frozenset[str] = frozenset()  # reasons that are the recipe's choice: counted, not findings
    notes: list[str] = field(default_factory=list)


def check_recipe(recipe: Recipe, *, max_errors: int = 50) -> Findings:
    """Every input of ``recipe``, read and worked as ``run`` would, with nothing written.

    Args:
        recipe: A loaded recipe.
        max_errors: Findings after which reading stops (every finding up to then is counted).

    Returns:
        A report whose findings are the records run would drop as damage or stop on; its
        ``inputs`` and ``stats["dropped"]`` count every drop (chosen ones too) as the manifest would.

    Raises:
        DataprepError: What would stop ``run`` before it reads a record: a bad recipe value, an
            input that does not exist, a tokenizer that cannot be loaded.
    """
    started = time.perf_counter()
    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    report = Findings(f"inputs of {recipe.name or 'the recipe'}", "inputs", max_errors=max_errors)
    with tempfile.TemporaryDirectory(prefix="dataprep-validate-") as tmp:  # a task's prepared tokenizer, if it saves one
        try:
            plan = check_plan(recipe, files, Path(tmp))
        except InputError as exc:  # a damaged file met while planning (the label set, the few-shot pool)
            report.add(unreadable(exc))
            return report
        check_files(plan, files, report)
    report.stats["seconds"] = round(time.perf_counter() - started, 3)
    ceiling_notes(recipe, report)
    return report


def check_plan(recipe: Recipe, files: list[InputFile], tmp: Path) -> CheckPlan:
    """The run's reader and worker for ``recipe``, set up to hand over what they reject."""
    task = task_for(recipe)
    chosen = _chosen(recipe)
    if recipe.tokenizer.train is not None:  # run trains its tokenizer on the corpus first
        if recipe.task == "pretrain" and recipe.objective == "clm":
            tokenizer = TokenCounts(None, frame=_trained_frame(recipe))
        else:
            return CheckPlan(reader_of(recipe), None, chosen=chosen, notes=[
                "the recipe trains its tokenizer, which this task needs to plan its work: only the readers "
                "judged the records (filters, duplicates and token-less documents are counted by run)"])
    else:
        tokenizer = task.prepare_tokenizer(recipe, load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir), tmp)
    found: list[Bad] = []
    with collecting([]):  # planning may read the inputs (labels, the few-shot pool): their rejects are counted below
        plan = task.plan(recipe, tokenizer, files)
    setup, args = plan.worker
    if recipe.task == "pretrain":
        args = tuple(TokenCounts(a) if isinstance(a, LoadedTokenizer) else a for a in args)
    work = setup(*args)
    if isinstance(work, SftWorker):
        work.sink = found
    return CheckPlan(plan.reader, work, dedup=plan.dedup, worker_bad=found, chosen=chosen)


def reader_of(recipe: Recipe) -> ChunkReader:
    """The chunk reader every task of this kind plans with: pretraining's text, or fine-tuning's fields."""
    return pretrain.chunk_reader(recipe) if recipe.task == "pretrain" else sft_records.chunk_reader(recipe)


class TokenCounts:
    """The pretraining worker's tokenizer, in a check-only run: ``encode_docs`` gives each
    document a length that is zero exactly when the run's would be, and encodes only when the
    framing leaves that open. A tokenizer that puts BOS or EOS around every document gives each at
    least one token; a trained byte-level BPE (no normalizer) gives every non-empty text one; any
    other tokenizer encodes the documents, as the run does. The tokens themselves are not kept.

    Args:
        tokenizer: The worker's tokenizer as the run's plan gives it; None for one the run trains.
        frame: For a trained tokenizer: the BOS/EOS tokens it puts around every document.
    """

    def __init__(self, tokenizer: LoadedTokenizer | None, *, frame: int = 0):
        self.tokenizer = tokenizer
        if tokenizer is not None:
            frame = int(tokenizer.add_bos and tokenizer.bos_id is not None) + int(tokenizer.add_eos and tokenizer.eos_id is not None)
        self.frame = frame

    def encode_docs(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.tokenizer is not None and not self.frame:
            return self.tokenizer.encode_docs(texts)
        lengths = np.fromiter((self.frame + (text != "") for text in texts), dtype=np.int64, count=len(texts))
        return np.zeros(int(lengths.sum()), dtype=np.int32), lengths


def _trained_frame(recipe: Recipe) -> int:
    spec = recipe.tokenizer  # a trained tokenizer always has its EOS (<|endoftext|>); a BOS only when named
    return int(spec.add_eos) + int(spec.add_bos and bool(spec.bos_token))


def _chosen(recipe: Recipe) -> frozenset[str]:
    """The reasons that are the recipe's choice, as the run's accounting has them; ``unknown_label``
    only under ``unknown_label: drop`` (under ``error`` the run stops on it whatever ``on_error`` says)."""
    chosen = accounting.chosen_reasons(recipe)
    labels = recipe.sft.classification if recipe.sft is not None else None
    if labels is None or labels.unknown_label != "drop":
        chosen -= {accounting.UNKNOWN_LABEL}
    return chosen


# --- the check-only run ------------------------------------------------------------------------


class _NoRows:
    """The packer of a check-only run: it takes documents and makes no rows (nothing is written)."""

    num_rows = 0

    def add(self, tokens, lengths, extras=None) -> _NoRows:
        return self

    def finish(self) -> _NoRows:
        return self


def check_files(plan: CheckPlan, files: list[InputFile], report: Findings) -> None:
    """Read and work every input as the run would; findings into ``report``, in file order, and
    each input's counts into ``report.inputs``. Stops after ``report.max_errors`` findings."""
    stage = OrderedStage(dict.fromkeys(C.SPLITS), make_packer=_NoRows, to_batch=None, dedup=plan.dedup)
    read_drops: Counter = Counter()
    counts: Counter = Counter()
    by_input: dict[int, Counter] = {}
    work_drops: dict[int, Counter] = {}
    for index, file in enumerate(files):
        pending = _InFileOrder(report, plan.chosen)
        before = (counts["records_read"], Counter(read_drops))
        try:
            with collecting(pending), contextlib.closing(
                plan.reader.file_chunks(index, file, read_drops=read_drops, counts=counts, by_input=by_input)
            ) as chunks:
                for item in chunks:
                    if plan.work is not None:
                        stage.add(plan.work(item))
                    work_drops.setdefault(index, Counter()).update(bad[2] for bad in plan.worker_bad)
                    pending.take(plan.worker_bad, upto=_last_line(item[1]))
                    if report.full:
                        report.stopped = True  # at the end of this chunk
                        break
        except InputError as exc:  # the file cannot be read on: run stops here in every on_error mode
            pending.take(plan.worker_bad, upto=None)
            report.add(unreadable(exc))
        pending.take(plan.worker_bad, upto=None)
        if index not in by_input:  # cut short (a damaged file, or max_errors): what was read of it
            lost = read_drops - before[1]
            by_input[index] = Counter({accounting.RECORDS_READ: counts["records_read"] - before[0] + lost.total(), **lost})
        report.inputs.append(_input_entry(index, file, by_input, work_drops, stage, plan.work is not None))
        if report.full:
            report.stopped = report.stopped or index < len(files) - 1
            break
    _totals(report, stage, plan)


class _InFileOrder:
    """The reader's sink for one file: its bad records, and the worker's, handed to the report in
    file order (the reader rejects records as it reads ahead of the chunk the worker gets).

    Memory stays flat: past ``max_errors`` held records, the reader's further ones (all later in
    the file than those held, so never shown) are only counted. Reading stops after
    ``max_errors`` findings at the end of a chunk, so a file with no good record left to make
    one is read to its end, every record counted.
    """

    def __init__(self, report: Findings, chosen: frozenset[str]):
        self.report, self.chosen, self.held = report, chosen, []

    def append(self, bad: Bad) -> None:
        if len(self.held) < self.report.max_errors:
            self.held.append(bad)
        elif bad[2] not in self.chosen:
            self.report.counts[bad[2]] += 1

    def take(self, worker_bad: list[Bad], upto: int | None) -> None:
        """Move the worker's rejects in; report those at or before record number ``upto`` (None: all)."""
        self.held.extend(worker_bad)
        worker_bad.clear()
        self.held.sort(key=lambda bad: _number(bad[1]))
        cut = len(self.held) if upto is None else next((i for i, b in enumerate(self.held) if _number(b[1]) > upto), len(self.held))
        for path, location, reason, message, fix in self.held[:cut]:
            if reason not in self.chosen:
                self.report.add(Finding(reason, message, file=path, line=location or None, expected=fix))
        del self.held[:cut]


def _number(location: str | None) -> int:
    """The record number in ``line 3``, ``record 3 (data[0].qas[3])``, ``row 3``."""
    parts = (location or "").split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1


def _last_line(batch: pa.RecordBatch) -> int:
    return int(pc.max(batch.column(C.LINE)).as_py()) if batch.num_rows else -1


def unreadable(exc: InputError) -> Finding:
    return Finding(UNREADABLE, exc.reason_message, file=exc.path, line=exc.location, expected=exc.fix)


def _input_entry(index: int, file: InputFile, by_input, work_drops, stage: OrderedStage, worked: bool) -> dict:
    read = by_input.get(index, Counter())
    dropped = accounting.input_drops(index, by_input, stage) + work_drops.get(index, Counter())
    entry = {"path": file.location, "records_read": read[accounting.RECORDS_READ]}
    if worked:
        entry["documents"] = stage.source_documents[index]
    entry["dropped"] = dict(sorted(dropped.items()))
    return entry


def _totals(report: Findings, stage: OrderedStage, plan: CheckPlan) -> None:
    dropped: Counter = Counter()
    for entry in report.inputs:
        dropped.update(entry["dropped"])
    report.stats["files"] = len(report.inputs)
    report.stats["records"] = sum(entry["records_read"] for entry in report.inputs)
    if plan.work is not None:
        report.stats["records_written"] = sum(stage.documents.values())
    report.stats["dropped"] = dict(sorted(dropped.items()))
    chosen = {reason: n for reason, n in sorted(dropped.items()) if reason in plan.chosen}
    if chosen:
        report.notes.append("dropped by the recipe's own choice, counted, not findings: "
                            + ", ".join(f"{reason} {n:,}" for reason, n in chosen.items()))
    report.notes.extend(plan.notes)


def ceiling_notes(recipe: Recipe, report: Findings) -> None:
    """Say which inputs would stop an ``on_error: skip`` run: more damage than ``max_dropped_fraction``."""
    if recipe.on_error != "skip" or recipe.max_dropped_fraction >= 1 or report.stopped:
        return
    chosen = accounting.chosen_reasons(recipe)
    for entry in report.inputs:
        read, lost = entry["records_read"], accounting.damage(entry["dropped"], chosen)
        if read and lost.total() / read > recipe.max_dropped_fraction:
            report.notes.append(f"run would stop: {entry['path']} loses {lost.total():,} of {read:,} records "
                                f"({lost.total() / read:.1%}), over max_dropped_fraction {recipe.max_dropped_fraction:.1%}")
