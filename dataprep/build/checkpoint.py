"""Durable checkpoints of a run in ``OUT.incomplete/checkpoint/``, and ``run --resume`` from them.

A run works its input chunks in order; the ordered stage (dedup, split, pack, write) is the
only state that carries from one chunk to the next. Every ``every`` seconds, between two
chunks, a checkpoint makes that state durable::

    seen.bin     dedup digests, appended since the last checkpoint (16 bytes each, in order)
    minhash.bin  dedup: minhash: the kept documents' signatures, appended likewise (uint32 each);
                 the near-duplicate index is rebuilt from them in order (dataprep.build.near_dup)
    state.pkl    written atomically, last: what was done and where everything stands
                 identity   recipe hash, each input's size and SHA-256, tokenizer, dataprep version
                 done       chunks worked per input file
                 stage      packers, counters (OrderedStage.state)
                 writers    per split: shards so far, the open shard's length, rows not yet written
                 seen       how many digests of seen.bin are part of this checkpoint
                 near       how many signatures of minhash.bin are (absent without minhash)

Shards are flushed to disk (fsync) before ``state.pkl`` names their lengths. A resumed run
checks the identity (a changed recipe, input or tokenizer refuses, with the reason), cuts the
open shards back to the recorded lengths (a crash may have written past them), restores the
stage, and reads the inputs again from the start, working only the chunks after ``done`` (the
ones before are read so that every count stays whole, but not worked). Chunks are a function of
the inputs alone, so the shards are byte-identical to a run that was never interrupted, on
either engine and with any worker count.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dataprep._version import __version__
from dataprep.errors import ResumeError
from dataprep.build.seen_set import DIGEST
from dataprep.build.write import write_bytes_atomic

if TYPE_CHECKING:
    from dataprep.build.ordered import OrderedStage
    from dataprep.build.write import SplitWriter

log = logging.getLogger("dataprep.run")

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pkl"
SEEN_FILE = "seen.bin"
NEAR_FILE = "minhash.bin"
FORMAT = 2  # 2: module paths of the pickled packers changed (dataprep.pack.{wrap,bfd,rows})
DEFAULT_EVERY = 60.0  # seconds between checkpoints: a crash loses at most about this much work


def identity(recipe_hash: str, inputs: list[tuple[str, int, str]], tokenizer_fingerprint: str) -> dict[str, Any]:
    """What a checkpoint must match to be continued: the recipe, every input and the tokenizer."""
    return {"format": FORMAT, "dataprep_version": __version__, "recipe_hash": recipe_hash,
            "inputs": [list(i) for i in inputs], "tokenizer": tokenizer_fingerprint}


class Checkpoints:
    """Saves checkpoints of one run into ``folder`` and loads the last one.

    Args:
        folder: ``OUT.incomplete/checkpoint``.
        every: seconds between checkpoints; 0: after every chunk (tests); None: never.
    """

    def __init__(self, folder: Path, *, every: float | None = DEFAULT_EVERY):
        self.folder, self.every = folder, every
        self._ident: Callable[[], dict[str, Any]] | None = None
        self.last = time.monotonic()
        self.saved = 0  # checkpoints saved by this process
        self.seen_count = 0  # digests in seen.bin that belong to the last checkpoint
        self.seconds = 0.0  # time spent saving

    def bind(self, ident: Callable[[], dict[str, Any]]) -> None:
        """How to get this run's :func:`identity`, saved with every checkpoint: asked for at the first
        save, so the inputs' digests it names are hashed while the run begins, not before it."""
        self._ident = ident

    def due(self) -> bool:
        return self.every is not None and time.monotonic() - self.last >= self.every

    def save(self, stage: OrderedStage, writers: dict[str, SplitWriter], done: Counter, tokenizer: Any) -> None:
        """Make the run's state durable (the writers flush their open shards first)."""
        started = time.monotonic()
        self.folder.mkdir(exist_ok=True)
        digests = stage.new_seen
        if any(len(d) != DIGEST for d in digests):  # pragma: no cover - every task hashes with content_hashes
            raise ValueError("dedup digests must be 16 bytes")
        with open(self.folder / SEEN_FILE, "ab") as fh:
            fh.truncate(self.seen_count * DIGEST)  # a crash may have appended past the last checkpoint
            fh.write(b"".join(digests))
            fh.flush()
            os.fsync(fh.fileno())
        near = self._save_near(stage)
        stage_state = stage.state()  # first: it packs and writes the documents it buffered (OrderedStage.state)
        state = {
            "identity": None if self._ident is None else self._ident(),
            "done": dict(done),
            "stage": stage_state,
            "writers": {split: writer.state() for split, writer in writers.items()},
            "seen": self.seen_count + len(digests),
            "tokenizer": tokenizer,
        }
        if near is not None:
            state["near"] = near
        write_bytes_atomic(self.folder / STATE_FILE, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        self.seen_count += len(digests)
        stage.new_seen = []
        if near is not None:
            stage.near.saved = near
        self.saved += 1
        self.last = time.monotonic()
        self.seconds += self.last - started

    def load(self) -> dict[str, Any]:
        """The last checkpoint; its ``seen``: the dedup digests (uint8 ``[n, 16]``, mapped from seen.bin).
        Check it with :func:`check_identity`.

        Raises:
            ResumeError: no checkpoint, or one that cannot be read.
        """
        path = self.folder / STATE_FILE
        if not path.is_file():
            raise ResumeError(
                f"nothing to resume: {self.folder.parent} holds no checkpoint (the run stopped before its first, "
                f"or was not started)\n  fix: run again without --resume"
            )
        try:
            state = pickle.loads(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - a damaged checkpoint, whatever unpickling raises
            raise ResumeError(f"the checkpoint {path} cannot be read ({exc})\n  fix: run again without --resume") from exc
        count = state["seen"]
        path = self.folder / SEEN_FILE
        if count and (not path.is_file() or path.stat().st_size < count * DIGEST):
            raise ResumeError(f"the checkpoint's dedup file {path} is shorter than it recorded\n"
                              "  fix: run again without --resume")
        # mapped, not read: the stage adds them to its bounded-memory set (dataprep.build.seen_set)
        state["seen"] = (np.memmap(path, dtype=np.uint8, mode="r", shape=(count, DIGEST)) if count
                         else np.empty((0, DIGEST), dtype=np.uint8))
        self.seen_count = count
        if "near" in state:
            state["stage"]["near_signatures"] = self._load_near(state["near"], state["stage"]["near"]["permutations"])
        return state

    def _save_near(self, stage: OrderedStage) -> int | None:
        """Append the near-duplicate index's new kept signatures to minhash.bin; how many it then holds."""
        if stage.near is None:
            return None
        width = stage.near.spec.permutations * 4
        with open(self.folder / NEAR_FILE, "ab") as fh:
            fh.truncate(stage.near.saved * width)  # a crash may have appended past the last checkpoint
            fh.write(stage.near.unsaved().tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        return stage.near.kept

    def _load_near(self, count: int, permutations: int) -> np.ndarray:
        """The kept signatures of minhash.bin, mapped (not read: the index takes them in blocks)."""
        path = self.folder / NEAR_FILE
        if count and (not path.is_file() or path.stat().st_size < count * permutations * 4):
            raise ResumeError(f"the checkpoint's near-duplicate file {path} is shorter than it recorded\n"
                              "  fix: run again without --resume")
        return (np.memmap(path, dtype=np.uint32, mode="r", shape=(count, permutations)) if count
                else np.empty((0, permutations), dtype=np.uint32))


def check_identity(state: dict[str, Any], ident: dict[str, Any], where: Path) -> None:
    """Refuse to continue a checkpoint made from another recipe, input, tokenizer or version.

    Raises:
        ResumeError: naming what changed.
    """
    reason = _difference(state.get("identity") or {}, ident)
    if reason:
        raise ResumeError(
            f"cannot resume the run in {where}: {reason}, so its shards would not be the ones this run makes\n"
            "  fix: put it back as it was, or run again without --resume (which starts over)"
        )


def _difference(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    if saved.get("format") != now["format"] or saved.get("dataprep_version") != now["dataprep_version"]:
        return (f"it was made by dataprep {saved.get('dataprep_version')} (checkpoint format {saved.get('format')}), "
                f"this is {now['dataprep_version']}")
    if saved.get("recipe_hash") != now["recipe_hash"]:
        return "the recipe changed since (its resolved hash differs; --set overrides count)"
    before = {i[0]: i for i in saved.get("inputs", [])}
    after = {i[0]: i for i in now["inputs"]}
    for name in sorted(set(before) | set(after)):
        if name not in after:
            return f"the input {name} is no longer read"
        if name not in before:
            return f"the input {name} is new"
        if before[name] != after[name]:
            return f"the input {name} changed (size or SHA-256)"
    if [i[0] for i in saved.get("inputs", [])] != [i[0] for i in now["inputs"]]:
        return "the inputs are read in another order"
    if saved.get("tokenizer") != now["tokenizer"]:
        return "the tokenizer changed (its fingerprint differs)"
    return None
