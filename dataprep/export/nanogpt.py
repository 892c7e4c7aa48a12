"""nanoGPT: ``train.bin`` / ``val.bin``, the content tokens end to end, plus ``meta.pkl``.

What nanoGPT's ``data/*/prepare.py`` writes: one flat array of token ids per split (documents
back to back, each ending with its EOS when the recipe adds one; pads are not written), which
``train.py`` reads with ``np.memmap(os.path.join(data_dir, 'train.bin'), dtype=np.uint16, mode='r')``.
Ids are ``uint16`` when the vocabulary fits (at most 65,536 ids), else ``uint32``: then
``train.py``'s ``dtype=np.uint16`` must be changed to ``np.uint32``. ``meta.pkl`` carries
``vocab_size`` (``train.py`` reads it as ``meta_vocab_size``) and ``dtype``, so a reader never guesses.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from dataprep.dataset.reader import Dataset
from dataprep.export.base import TokensOnly, Written
from dataprep.export.pieces import batches, content

FILES = {"train": "train.bin", "validation": "val.bin"}  # nanoGPT's names
META = "meta.pkl"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


class NanoGPT(TokensOnly):
    name = "nanogpt"
    summary = "nanoGPT token files (train.bin / val.bin, uint16 or uint32, + meta.pkl; data_dir = DEST)"

    def write(self, ds: Dataset, split: str, dest: Path) -> Written:
        dtype = token_dtype(ds.manifest.tokenizer.vocab_size)
        written = Written(files=[FILES[split]], extra={"dtype": dtype.name})
        with open(dest / FILES[split], "wb") as fh:
            for batch in batches(ds, split):
                c = content(batch)
                fh.write(c.tokens.astype(dtype).tobytes())
                written.rows += c.rows
                written.tokens += len(c.tokens)
        return written

    def finish(self, ds: Dataset, dest: Path, written: dict[str, Written]) -> list[str]:
        vocab_size = ds.manifest.tokenizer.vocab_size
        with open(dest / META, "wb") as fh:
            pickle.dump({"vocab_size": vocab_size, "dtype": token_dtype(vocab_size).name}, fh)
        return [META]
