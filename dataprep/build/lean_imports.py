"""Keeping pandas out of the processes that build a dataset.

pyarrow imports pandas (0.13 s; a sixth of what a 50k-pair fine-tuning run spends before its first
chunk) the first time it converts a Python object to Arrow, only to ask whether the object is a
pandas one. No conversion in a run hands it one. :func:`pyarrow_without_pandas` makes that first
question find no pandas, so pyarrow asks it no more; pandas itself stays importable, and pyarrow's
explicit pandas calls (``Table.to_pandas``) import it when they are made.

Only for processes dataprep owns: ``dataprep run`` as the process's own command line
(:data:`dataprep.cli.app.PROCESS_ENTRY`) and its worker processes, before any thread of theirs starts
(the finder is process-wide while it is there). There pyarrow keeps its answer: a pandas object handed
to ``pa.array`` later would convert as a plain sequence (a Series' NaN stays NaN instead of null), which
no code in a run does. A process that goes on after a run (the Python API, ``main(argv)`` in a test or
script) keeps pyarrow as it was.
"""

from __future__ import annotations

import importlib.abc
import sys

__all__ = ["pyarrow_without_pandas"]


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not needed by pyarrow's conversions in a dataprep run", name=name)
        return None


def pyarrow_without_pandas() -> None:
    """Let pyarrow's first conversion in this process find no pandas (see the module docstring).
    Nothing happens where pandas is imported already, or where pyarrow's first conversion is past."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # pyarrow's first conversion: it looks for pandas now, and remembers what it found
    except Exception:  # a pyarrow that asks otherwise: it imports pandas when it needs it, as before
        pass
    finally:
        sys.meta_path.remove(finder)
