"""What an engine's chunk work returns to the run (:func:`dataprep.build.engine.run_chunks`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

R = TypeVar("R")


class ChunkResults(Generic[R]):
    """The chunks' results in input order (:meth:`close` stops the engine: the pool, the Ray actors),
    and ``segment_runner``, the runner an engine offers for the run's segments
    (:meth:`dataprep.build.segments.Segments.use`; None: this process's threads)."""

    def __init__(self, results: Iterator[R], segment_runner: Any = None):
        self._results, self.segment_runner = results, segment_runner

    def __iter__(self) -> ChunkResults[R]:
        return self

    def __next__(self) -> R:
        return next(self._results)

    def close(self) -> None:
        """Close the results now (a generator's ``finally`` stops its engine)."""
        close_iterator(self._results)


def close_iterator(items: Any) -> None:
    """Close ``items`` now if it can be closed (a generator: its ``finally`` runs, its files close)."""
    close = getattr(items, "close", None)
    if close is not None:
        close()
