"""One pass over a shard file: its checksum, plus the largest token id and the count of each
special id, computed block by block while the block is in cache.

A plain ``pyarrow`` read of a shard is one copy of it; every further pass over the tokens costs
about as much again, memory bandwidth being the limit. So the checks that must see every
token share a single pass: the file is hashed in order, and where the bytes are a batch's
``input_ids`` values they are hashed, maxed and counted in 256K-token blocks that stay in
cache::

    file   [schema][batch 0: ids ....... seq_lengths num_pad][batch 1: ids ....... ...]
    hash    ------> ====== blocks ======> ----------------> ====== blocks ======> ---->
                    max, count(EOS), count(BOS), count(pad) per block

The later checks use the max and the counts as fast paths (all ids below the vocab; as many
EOS as pieces that end in one) and locate problems with a full search only when a count
disagrees. Per 272 MB shard on one core of the benchmark VM: xxh3 11 ms (memory-bound), max 5 ms,
one special-id count 7 ms (figures in benchmarks/README.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import xxhash

BLOCK = 1 << 20  # tokens per block: 4 MiB of int32, inside L3


def new_hasher(algorithm: str):
    return xxhash.xxh3_128() if algorithm == "xxh3_128" else hashlib.sha256()


@dataclass
class TokenSummary:
    """What the scan learned about one batch's ``input_ids`` values."""

    max: int  # largest id, the ids viewed as unsigned (a negative id is huge)
    counts: dict[int, int] = field(default_factory=dict)  # special id -> occurrences


class FileScan:
    """Hashes a shard held in memory, in file order, while summarizing each batch's tokens.

    Args:
        data: The whole shard file.
        algorithm: ``xxh3_128`` or ``sha256``; None to skip the checksum.
        specials: Ids to count.
    """

    def __init__(self, data: pa.Buffer, algorithm: str | None, specials: tuple[int, ...]):
        self.raw = np.frombuffer(data, dtype=np.uint8)
        self.base = data.address
        self.hasher = new_hasher(algorithm) if algorithm else None
        self.specials = specials
        self.equal = np.empty(BLOCK if specials else 0, dtype=bool)
        self.pos = 0  # bytes hashed so far

    def tokens(self, values: pa.Array) -> TokenSummary:
        """Summarize a batch's ``input_ids`` values (and hash the file up to their end)."""
        ids = values.to_numpy(zero_copy_only=False).view(np.uint32)
        buffer = values.buffers()[1]
        start = buffer.address - self.base + values.offset * 4 if buffer is not None else -1
        inside = self.pos <= start and start + ids.nbytes <= len(self.raw)
        if inside and self.hasher is not None:
            self.hasher.update(self.raw[self.pos : start])
        summary = TokenSummary(0, dict.fromkeys(self.specials, 0))
        update = self.hasher.update if inside and self.hasher is not None else None
        for i in range(0, len(ids), BLOCK):
            block = ids[i : i + BLOCK]
            if update is not None:
                update(block)
            summary.max = max(summary.max, int(block.max()))
            equal = self.equal[: len(block)]
            for special in self.specials:
                np.equal(block, special, out=equal)  # into a reused buffer: no allocation per block
                summary.counts[special] += int(np.count_nonzero(equal))
        if inside:
            self.pos = start + ids.nbytes
        return summary

    def hexdigest(self) -> str | None:
        """Finish the checksum over the rest of the file."""
        if self.hasher is None:
            return None
        self.hasher.update(self.raw[self.pos :])
        self.pos = len(self.raw)
        return self.hasher.hexdigest()
