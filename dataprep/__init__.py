"""dataprep: prepare pretraining and fine-tuning data for language models.

The Python API (:mod:`dataprep.api`)::

    import dataprep

    manifest = dataprep.build_dataset("recipes/demo-sft.yaml", "out/demo-sft")  # -> typed Manifest
    ds = dataprep.open_dataset("out/demo-sft")   # .table / .polars / .lazy / .torch (split), .tokenizer()
    dataprep.validate_dataset("out/demo-sft").ok
    print(dataprep.inspect_dataset("out/demo-sft", rows=[0]))

The functions are plain functions of :mod:`dataprep.api`, loaded on first use (PEP 562), so
``import dataprep`` itself imports no tokenizer, torch or Ray. (They are not named ``build`` and
``validate``: those are the subpackages that do the work.)
"""

from __future__ import annotations

from typing import Any

from dataprep._version import __version__

__all__ = ["__version__", "build_dataset", "inspect_dataset", "open_dataset", "validate_dataset"]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from dataprep import api

        return getattr(api, name)
    raise AttributeError(f"module 'dataprep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
