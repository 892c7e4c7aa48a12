"""Where a pretraining ``dataprep run`` spends its time, step by step, in CPU seconds.

The run is the real one (``dataprep.build.run.run`` on a recipe: gigatoken, ``wrap``, 2048, the
bench corpus prefix), in this process, with the real functions of each step wrapped in a timer:
a step's figure is the CPU time spent inside its functions, less the time of any other timed
step they call (so the figures add up), and the run's CPU time no step claims is printed as
``other``. Start-up steps (tokenizer load, the engine probe, the transformers check) count
everything they call as their own: the probe reads and cleans the first chunk a second time,
and that reading is start-up, not the run's reading.

The run is serial (``--workers 1``, gigatoken on the calling thread) but for the digests, which
are taken on threads of their own; every step is timed with its own thread's CPU clock, so its
CPU seconds are its own wherever it runs. A run with threads overlaps the steps;
``pretrain_throughput.py`` measures that. The steps' functions are looked up by name: a
function that was renamed or moved is listed as not found (its time lands in ``other``).

    python benchmarks/pretrain_profile.py                         # 60 MB prefix, gigatoken, wrap
    python benchmarks/pretrain_profile.py --limit-mb 160 --mode bfd --engine tokenizers
"""

from __future__ import annotations

import resource
import time

_STARTED = time.process_time()  # before any import of dataprep: the imports are start-up

import argparse  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # gigatoken and tokenizers encode on the calling thread

from _bench import TOKENIZER, WORK, corpus_prefix, machine  # noqa: E402

# (step, "module:attribute" of each function it is made of). Methods as "module:Class.method".
# ``inclusive`` steps count what they call as their own (start-up).
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("read: decompress, split lines", ("dataprep.read._json:_decoded_lines", "dataprep.read._common:read_blocks")),
    ("read: JSON parse (blocks: + checks)", ("dataprep.read._json:json.loads", "dataprep.read._json:parse_block")),
    ("read: records, batching", ("dataprep.read._json:_read_jsonl", "dataprep.read._json:_per_line",
                                 "dataprep.read._json:Rows.add_arrays", "dataprep.read._json:Rows.take")),
    ("read: Arrow batches", ("dataprep.read._records:_batches",)),
    ("read: chunks", ("dataprep.read.chunks:ChunkReader.file_chunks", "dataprep.read.chunks:split_by_bytes")),
    ("normalize", ("dataprep.text.normalize:normalize_array", "dataprep.text.mojibake:fix_mojibake",
                   "dataprep.text.pii:redact_rows")),
    ("filters", ("dataprep.text.filter_chain:keep_documents_with_languages",)),
    ("clean: kept texts to Python", ("dataprep.tasks.pretrain:clean_batch",)),
    ("worker: locations, examples", ("dataprep.tasks.pretrain:chunk_worker()",)),
    ("hashing (blake2b)", ("dataprep.text.filters:content_hashes",)),
    ("split flags", ("dataprep.text.filters:validation_flags",)),
    ("encode", ("dataprep.text.encode_engine:GigatokenEncoder.encode",
                "dataprep.text.tokenizer:LoadedTokenizer.encode_docs_tokenizers",
                "dataprep.text.tokenizer:LoadedTokenizer.encode_docs")),
    ("encode: framing (BOS/EOS)", ("dataprep.text.encode_engine:frame_documents",)),
    ("ordered stage (dedup, split, pack)", ("dataprep.build.ordered:OrderedStage.add", "dataprep.build.ordered:OrderedStage.finish")),
    ("write (Arrow IPC, fsync)", ("dataprep.build.write:SplitWriter.write", "dataprep.build.write:SplitWriter.close")),
    ("digests: shards (sha256, xxh3)", ("dataprep.build.write:_RunningDigests._update", "dataprep.build.write:shard_digests")),
    ("digests: inputs (sha256)", ("dataprep.read.digests:_digest", "dataprep.read.digests:InputDigests.check_unchanged")),
    ("manifest, commit", ("dataprep.build.run:_manifest", "dataprep.build.output_dir:DatasetDir.commit",
                          "dataprep.build.write:DatasetDir.commit")),
]
INCLUSIVE: list[tuple[str, tuple[str, ...]]] = [
    ("start-up: tokenizer load", ("dataprep.text.tokenizer:load_tokenizer", "dataprep.text.tokenizer_manifest:copy_tokenizer_files")),
    ("start-up: transformers check", ("dataprep.build.reference_check:check_run",)),
    ("start-up: probe's documents (read again)", ("dataprep.tasks.pretrain:first_documents",)),
    ("start-up: engine probe", ("dataprep.text.tokenizer:LoadedTokenizer.choose_engine",)),
]


class Clock:
    """CPU seconds per step (its thread's CPU clock), exclusive of the timed steps each one calls (one stack per thread)."""

    def __init__(self) -> None:
        self.cpu: Counter = Counter()
        self.calls: Counter = Counter()
        self._local = threading.local()

    def _stack(self) -> list:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def call(self, step: str, inclusive: bool, fn, *args, **kwargs):
        stack = self._stack()
        if stack and stack[-1][1]:  # inside an inclusive step: its own
            return fn(*args, **kwargs)
        stack.append([0.0, inclusive])
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.thread_time() - started
            children = stack.pop()[0]
            self.cpu[step] += spent - children
            self.calls[step] += 1
            if stack:
                stack[-1][0] += spent

    def function(self, step: str, fn, inclusive: bool = False):
        if inspect.isgeneratorfunction(fn):
            def timed_generator(*args, **kwargs):
                it = fn(*args, **kwargs)
                try:
                    while True:
                        try:
                            item = self.call(step, inclusive, next, it)
                        except StopIteration as stop:
                            return stop.value
                        yield item
                finally:
                    it.close()
            return timed_generator

        def timed(*args, **kwargs):
            return self.call(step, inclusive, fn, *args, **kwargs)
        return timed


def _resolve(target: str):
    """``(owner, name, function)`` for ``module:attr`` / ``module:Class.method`` / ``module:json.loads``."""
    module_name, _, path = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, name = path.rstrip("()").split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name, getattr(owner, name)


def instrument(clock: Clock) -> list[str]:
    """Wrap every step's functions wherever dataprep's modules hold them; the steps none of whose
    functions was found (a step lists a function under each name it has had)."""
    missing = []
    for steps, inclusive in ((STEPS, False), (INCLUSIVE, True)):
        for step, targets in steps:
            found = 0
            for target in targets:
                try:
                    owner, name, fn = _resolve(target)
                except (ImportError, AttributeError):
                    continue
                found += 1
                if target.endswith("()"):  # a factory: the function it returns is the step
                    def factory(*args, _fn=fn, _step=step, **kwargs):
                        return clock.function(_step, _fn(*args, **kwargs))
                    timed = factory
                elif target.endswith(":json.loads"):  # the json module as one reader sees it
                    proxy = type(sys)("json")
                    proxy.__dict__.update(owner.__dict__)
                    proxy.loads = clock.function(step, fn)
                    setattr(importlib.import_module(target.partition(":")[0]), "json", proxy)
                    continue
                else:
                    timed = clock.function(step, fn, inclusive)
                if isinstance(owner, type):
                    setattr(owner, name, timed)
                    continue
                for module in list(sys.modules.values()):  # also where it was imported by name
                    if getattr(module, "__name__", "").startswith("dataprep") and getattr(module, name, None) is fn:
                        setattr(module, name, timed)
            if not found:
                missing.append(f"{step} ({', '.join(targets)})")
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mb", type=float, default=60, help="the first MB of the bench corpus (default 60)")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    parser.add_argument("--engine", default="gigatoken", help="tokenizer.engine (default gigatoken)")
    parser.add_argument("--mode", default="wrap", choices=("wrap", "bfd"))
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--work", type=Path, default=WORK / "profile")
    args = parser.parse_args()

    importlib.import_module("dataprep.cli")  # what `dataprep run` imports
    from dataprep.build.run import run
    from dataprep.recipe import recipe_from_dict
    imports = time.process_time() - _STARTED

    data = corpus_prefix(args.limit_mb)
    spec = {"name": "profile", "task": "pretrain", "inputs": [{"path": str(data)}],
            "tokenizer": {"path": str(args.tokenizer), "engine": args.engine},
            "packing": {"mode": args.mode, "seq_len": args.seq_len}}
    args.work.mkdir(parents=True, exist_ok=True)
    recipe = recipe_from_dict(spec, base_dir=args.work)
    clock = Clock()
    missing = instrument(clock)
    started, wall = time.process_time(), time.perf_counter()
    manifest = run(recipe, args.work / "out", workers=1, overwrite=True, progress=False)
    total, wall = time.process_time() - started, time.perf_counter() - wall

    tokens = manifest["counts"]["tokens"]
    rows = [("start-up: imports", imports, 1)] + [(s, clock.cpu[s], clock.calls[s]) for s, _ in INCLUSIVE + STEPS]
    other = total - sum(clock.cpu.values())
    rows.append(("other (no step claims it)", other, 0))
    whole = imports + total
    print(f"machine: {machine()}")
    print(f"corpus: {data.name} ({data.stat().st_size / 1e6:,.1f} MB of JSONL); engine {manifest['tokenizer'].get('engine', {}).get('engine', '?')}; "
          f"{args.mode} {args.seq_len}; {tokens:,} tokens; one thread")
    print(f"run: {wall:.2f} s wall, {total:.2f} CPU s (+ {imports:.2f} s of imports); "
          f"{tokens / whole / 1e6:.2f} M tokens per CPU second; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB\n")
    print(f"{'step':42} {'CPU s':>7} {'share':>6} {'calls':>7}")
    for step, seconds, calls in rows:
        print(f"{step:42} {seconds:7.3f} {seconds / whole:6.1%} {calls:7,}")
    print(f"{'total':42} {whole:7.3f} {1:6.1%}")
    if missing:
        print(f"\nsteps whose functions were not found (their time is in 'other'): {'; '.join(missing)}")


if __name__ == "__main__":
    main()
