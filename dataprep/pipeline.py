"""``run(recipe, out)``: build a dataset from a recipe, atomically, with its manifest."""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import __version__
from . import columns as C
from .engine import default_workers, ordered_map
from .pretrain import OrderedStage, chunk_worker, iter_chunks, iter_clean_texts
from .progress import Progress
from .read import InputFile, resolve_inputs
from .recipe import Recipe
from .tokenizer import LoadedTokenizer, load_tokenizer, train_tokenizer
from .write import DatasetDir, SplitWriter, sha256_file

log = logging.getLogger("dataprep.run")


def run(
    recipe: Recipe,
    out: str | Path,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build the dataset that ``recipe`` describes at ``out``; return its manifest.

    Args:
        recipe: a loaded recipe (:func:`dataprep.recipe.load_recipe`).
        out: the output folder. It appears only when the run succeeds.
        workers: processes for the chunk work (default: all cores). Output does not depend on it.
        overwrite: replace an existing dataset at ``out``.
        progress: show a progress bar (None: only when stderr is a terminal).

    Raises:
        DataprepError: bad recipe values, unreadable inputs (with file and line), tokenizer problems,
            or an output path that may not be written.
    """
    started = time.perf_counter()
    workers = workers or default_workers()
    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    target = DatasetDir(Path(out), overwrite=overwrite)
    try:
        tokenizer = _tokenizer(recipe, files, target.tmp)
        counts: Counter = Counter()
        read_drops: Counter = Counter()
        writers = {split: SplitWriter(target.tmp / split, C.PRETRAIN_ROW_SCHEMA, shard_bytes=recipe.output.shard_bytes) for split in C.SPLITS}
        stage = OrderedStage(recipe, tokenizer, writers)
        bar = Progress("tokenize+pack", total_bytes=sum(f.path.stat().st_size for f in files), enabled=progress)
        chunks = iter_chunks(files, recipe, read_drops, counts)
        for result in ordered_map(chunk_worker, (recipe, tokenizer), chunks, workers=workers):
            stage.add(result)
            bar.update(docs=len(result.hashes), tokens=int(result.lengths.sum()))
        stage.finish()
        bar.close()
        shards = {split: writer.close() for split, writer in writers.items()}
        manifest = _manifest(recipe, tokenizer, files, counts, read_drops, stage, shards, time.perf_counter() - started, workers)
        target.commit(manifest, list(C.SPLITS))
    except BaseException:
        target.abort()
        raise
    return manifest


def _tokenizer(recipe: Recipe, files: list[InputFile], tmp: Path) -> LoadedTokenizer:
    if recipe.tokenizer.train is None:
        return load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    log.info("training a byte-level BPE (vocab %d) on the recipe's corpus", recipe.tokenizer.train["vocab_size"])
    tokenizer = train_tokenizer(iter_clean_texts(files, recipe), recipe.tokenizer)
    tokenizer.save(tmp / C.TOKENIZER_DIR)
    return tokenizer


def _manifest(recipe, tokenizer, files, counts, read_drops, stage, shards, seconds, workers) -> dict[str, Any]:
    dropped = Counter(read_drops)
    dropped.update(stage.drops)
    pack = stage.pack_stats()
    written = sum(stage.documents.values())
    content = sum(p["content_tokens"] for p in pack.values())
    slots = sum(p["rows"] for p in pack.values()) * recipe.packing.seq_len
    tokenizer_files = []
    if recipe.tokenizer.train is None:
        tokenizer_files = [{"path": str(p), "sha256": sha256_file(p)} for p in tokenizer.files]
    return {
        "format": "dataprep.pretrain/1",
        "dataprep_version": __version__,
        "created_unix": int(time.time()),
        "recipe": dict(recipe.resolved),
        "recipe_hash": recipe.hash,
        "task": recipe.task,
        "seq_len": recipe.packing.seq_len,
        "tokenizer": {
            "source": tokenizer.source,
            "trained": recipe.tokenizer.train is not None,
            "saved_as": C.TOKENIZER_DIR if recipe.tokenizer.train is not None else None,
            "files": tokenizer_files,
            "fingerprint": tokenizer.fingerprint,
            "vocab_size": tokenizer.vocab_size,
            "special_ids": tokenizer.special_ids,
            "add_bos": recipe.tokenizer.add_bos,
            "add_eos": recipe.tokenizer.add_eos,
        },
        "inputs": [
            {"path": str(f.path), "format": f.format, "bytes": f.path.stat().st_size, "sha256": sha256_file(f.path)}
            for f in files
        ],
        "padding": {
            "pad_token_id": tokenizer.pad_id,
            "trailing_piece": True,
            "column": C.NUM_PAD,
        },
        "counts": {
            "records_read": counts["records_read"],
            "records_written": written,
            "dropped": dict(sorted(dropped.items())),
            "documents": {split: stage.documents[split] for split in C.SPLITS},
            "tokens": content,
            "pad_tokens": sum(p["pad_tokens"] for p in pack.values()),
            "remainder_tokens_dropped": sum(p["dropped_tokens"] for p in pack.values()),
            "rows": {split: pack[split]["rows"] for split in C.SPLITS},
            "packing_efficiency": (content / slots) if slots else 0.0,
        },
        "packing": pack,
        "splits": {split: {"shards": shards[split]} for split in C.SPLITS},
        "run": {"seconds": round(seconds, 3), "workers": workers},
    }
