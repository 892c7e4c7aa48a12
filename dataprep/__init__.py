"""dataprep: prepare pretraining and fine-tuning data for language models."""

from __future__ import annotations

from dataprep._version import __version__

__all__ = ["__version__"]
