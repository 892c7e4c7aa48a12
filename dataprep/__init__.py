"""dataprep: prepare pretraining and fine-tuning data for language models.

The Python API (:mod:`dataprep.api`)::

    import dataprep

    manifest = dataprep.build("recipes/demo-sft.yaml", "out/demo-sft")  # -> typed Manifest
    ds = dataprep.open("out/demo-sft")      # .table / .polars / .lazy / .torch (split), .tokenizer()
    dataprep.validate("out/demo-sft").ok
    print(dataprep.inspect("out/demo-sft", rows=[0]))

The functions load on first use: ``import dataprep`` itself imports no tokenizer, torch or Ray.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from dataprep._version import __version__

if TYPE_CHECKING:
    from dataprep.api import Dataset

__all__ = ["__version__", "build", "inspect", "open", "validate"]


def open(out: Any) -> Dataset:  # noqa: A001
    """Open a built dataset (:func:`dataprep.api.open`)."""
    from dataprep import api

    return api.open(out)


def inspect(out: Any, **options: Any) -> str:
    """Rows of a built dataset as tokens (:func:`dataprep.api.inspect`, which lists the options)."""
    from dataprep import api

    return api.inspect(out, **options)

# Subpackages whose name is also an API function: ``dataprep.build`` and ``dataprep.validate`` are the
# packages (``dataprep.build.run``, ``dataprep.validate.check_dataset``) and, called, the API's
# functions. Python binds a subpackage to its parent's attribute whenever anything imports it, so a
# function of that name would be replaced: the subpackage itself is made callable as it is bound.
_CALLABLE_PACKAGES = ("build", "validate")


class _CallablePackage(types.ModuleType):
    """A subpackage that, called, is the API function of its name (:mod:`dataprep.api`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from dataprep import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CALLABLE_PACKAGES and type(value) is types.ModuleType:
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_PACKAGES:
        return importlib.import_module(f"dataprep.{name}")  # bound (and made callable) by the import
    raise AttributeError(f"module 'dataprep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


sys.modules[__name__].__class__ = _Package
