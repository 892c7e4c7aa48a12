"""Segments on Ray: how much CPU the driver process spends per token, and how many cores one driver feeds.

``dataprep run --engine ray`` with ``packing.segment_tokens`` (#20 item 4): reader actors read the
inputs, the chunk workers (one actor per CPU, fed by the driver's loop, :mod:`dataprep.build.ray_feed`)
normalize, filter, hash and encode; the segment tasks (Ray tasks on the driver's node)
gather, pack, write and digest; the driver process keeps the per-document work (dedup, split,
counts) and must not touch tokens (:mod:`dataprep.build.ray_chunks`). For 1, 2 and 4 workers, each
in a fresh process with its own local Ray instance (its start-up not timed), on the first
``--limit-mb`` of the bench corpus with ``bpe32k.json`` (``wrap`` 2048, exact dedup, 1% validation):

- tokens/s of the run (``run()`` called in that process: the driver is that process);
- the driver process's CPU seconds per million tokens (``resource.getrusage(RUSAGE_SELF)``: every
  thread of the driver, Ray's own included, none of its children, less this script's polling, timed
  with ``thread_time``), over the whole run and over the
  stream alone (first result to the end of the last segment: start-up, input hashing and the
  manifest left out);
- the driver's peak RSS (a driver that copied tokens would grow with the segments in flight);
- the CPU of the Ray processes, polled with psutil: chunk actors, reader actors, task workers
  (segment tasks) and Ray's own daemons (raylet, GCS, ...);
- the ceiling in cores: a worker core's CPU per token (the chunk function over the same chunks in
  one process, one thread, measured first, and the segments' packing of its results, as
  ``benchmarks/ordered_stage.py`` measures them) / the driver's over the stream: how many worker
  cores one driver keeps fed, counting all of the driver's CPU as if it grew with the tokens (Ray's
  own loops cost it a few % of a core per second whatever the rate: the figure is a floor). Issue #20 asks >= 64. (The driver's
  whole run adds fixed costs, tokenizer load, encode-engine probe, the actors' start, manifest,
  and the inputs' digests, per byte but cheap; the Ray columns include the processes' start-up.)
  ``(steady)``: the same from the first result to the last one (the tokens of every chunk but the
  last): the stream less its end (the last segments, the validation split, the shards' closing),
  which does not grow with the corpus and weighs heavily on a short one.

With ``--fit`` the first run is made again with ``tokenizer.engine: tokenizers`` (workers several
times slower, the same tokens and chunks): from the two, the driver's CPU per second (Ray's loops,
whatever the rate) and per token, and the ceiling they imply: worker cores until the driver's core is
full. Last, the driver's CPU per block with no work at all, side by side: the engine's actor loop
alone (as many one-row blocks as the run had chunks, read by reader actors and worked by no-op chunk
actors, the results taken as the engine takes them), and Ray Data alone (the same blocks through
no-op actors in an ordered ``map_batches``, read as the engine read them until #20). The shard hashes of the runs are compared (they must be equal for any worker count). With
``--threads`` a last run packs the segments on the driver's threads instead (what the driver paid
before segments became Ray tasks). On a machine with fewer cores than a run's workers (plus the
segment tasks and the driver) the run is oversubscribed; the output says so.

    python benchmarks/ray_segments.py                       # 40 MB, segments of 2M tokens
    python benchmarks/ray_segments.py --limit-mb 20 --workers 1 2 --threads
    python benchmarks/ray_segments.py --limit-mb 100 --workers 2 --fit --chunk-mb 16
    python benchmarks/ray_segments.py --limit-mb 40 --fit --chunks-per-block 8   # a large input's blocks
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from _bench import TOKENIZER, WORK, corpus_prefix, machine, write_recipe

MTOK = 1e6
PER_BLOCK = "RAY_SEGMENTS_CHUNKS_PER_BLOCK"  # the child's chunks per block, when --chunks-per-block sets it


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


THREADS: dict[str, tuple[str, float]] = {}  # tid -> (name, CPU seconds), last seen: a thread that ends stays counted


def thread_cpu() -> dict[str, tuple[str, float]]:
    """This process's CPU seconds by thread (``/proc/self/task``): the main thread, Ray Data's executor,
    Ray's C++ threads ...; sampled by the poller too, so that threads which end are counted."""
    tick = os.sysconf("SC_CLK_TCK")
    main = str(threading.main_thread().native_id)
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            name = "main" if tid == main else Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        THREADS[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return dict(THREADS)


class RayCpu:
    """CPU seconds of this process's descendants (the local Ray instance), polled so that processes
    that end are counted too, by kind: chunk actors, reader actors, task workers, Ray's daemons."""

    def __init__(self, interval: float = 1.0):
        import psutil

        self.psutil, self.interval = psutil, interval
        self.seen: dict[int, tuple[float, str]] = {}  # pid -> (cpu seconds, kind)
        self.base: dict[int, float] = {}
        self.overhead = 0.0  # this process's CPU spent polling (thread time): not the driver's
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> dict[int, tuple[float, str]]:
        started = time.thread_time()
        try:
            return self._read()
        finally:
            self.overhead += time.thread_time() - started

    def _read(self) -> dict[int, tuple[float, str]]:
        thread_cpu()
        out = {}
        for proc in self.psutil.Process().children(recursive=True):
            try:
                times, title = proc.cpu_times(), " ".join(proc.cmdline())
            except self.psutil.Error:
                continue
            kind = self.seen.get(proc.pid, (0.0, ""))[1]
            if "ChunkWorker" in title or "MapWorker" in title:
                kind = "actors"
            elif "FileReader" in title:
                kind = "readers"
            elif not kind:
                kind = "tasks" if ("default_worker" in title or title.startswith("ray::")) else "ray"
            out[proc.pid] = (times.user + times.system, kind)
        return out

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.seen.update(self._sample())

    def start(self) -> None:
        self.base = {pid: cpu for pid, (cpu, _) in self._sample().items()}
        self._thread.start()

    def now(self) -> dict[str, float]:
        """CPU seconds by kind since :meth:`start`."""
        self.seen.update(self._sample())
        spent = {"actors": 0.0, "readers": 0.0, "tasks": 0.0, "ray": 0.0}
        for pid, (cpu, kind) in list(self.seen.items()):
            spent[kind] += cpu - self.base.get(pid, 0.0)
        return spent

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.now()


def child(recipe: Path, out: Path, workers: int, threads: bool) -> dict:
    """One run in this process, on a local Ray instance of ``workers`` CPUs started here."""
    import ray

    from dataprep.build import engine_ray, ray_feed
    from dataprep.build.ordered import OrderedStage
    from dataprep.build.run import run
    from dataprep.recipe import load_recipe

    started = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - started
    marks: dict[str, tuple[float, dict[str, float]]] = {}
    steady: list[tuple[float, int]] = []  # (driver CPU, tokens) as each result reaches the ordered stage
    add, finish = OrderedStage.add, OrderedStage.finish
    spent = RayCpu()

    def first_add(self, result):
        if "stream" not in marks:
            ray_cpu = spent.now()
            marks["threads"] = thread_cpu()
            marks["stream"] = (cpu_self() - spent.overhead, ray_cpu)
            marks["wall"] = time.perf_counter()
        steady.append((cpu_self() - spent.overhead, int(result.lengths.sum())))  # at each result, before the stage
        return add(self, result)

    def last_finish(self):
        finish(self)  # on Ray, the last segments were finished at the end of the input: this is a no-op for them
        marks["streamed"] = (cpu_self() - spent.overhead, spent.now())
        marks["walled"] = time.perf_counter()
        by_name: dict[str, float] = {}
        for tid, (name, cpu) in thread_cpu().items():
            by_name[name] = by_name.get(name, 0.0) + cpu - marks["threads"].get(tid, (name, 0.0))[1]
        marks["by_thread"] = by_name

    OrderedStage.add, OrderedStage.finish = first_add, last_finish
    per_block, rule, used = os.environ.get(PER_BLOCK), ray_feed.chunks_per_block, []
    ray_feed.chunks_per_block = lambda *a: used.append(int(per_block) if per_block else rule(*a)) or used[-1]
    runner = engine_ray._segment_runner
    engine_ray._segment_runner = (lambda *a, **k: None) if threads else runner
    spent.start()
    cpu0, wall0 = cpu_self() - spent.overhead, time.perf_counter()
    manifest = run(load_recipe(recipe), out, workers=workers, overwrite=True, progress=False, engine="ray")
    seconds, driver = time.perf_counter() - wall0, cpu_self() - spent.overhead - cpu0
    ray_cpu = spent.stop()
    ray.shutdown()
    return {"workers": workers, "threads": threads, "seconds": seconds, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ray_start": ray_start, "driver": driver,
            "driver_stream": marks["streamed"][0] - marks["stream"][0], "stream_seconds": marks["walled"] - marks["wall"],
            "tokens": manifest["counts"]["tokens"], "per_block": used[0],
            # first result to last: every chunk but the last handled, none of the start or the finish
            "steady": (steady[-1][0] - steady[0][0], sum(t for _, t in steady[:-1])),
            "engine": (manifest.get("tokenizer", {}).get("engine") or {}).get("engine"), **ray_cpu,
            "shards": [s["sha256"] for s in manifest["splits"]["train"]["shards"]],
            "by_thread": {k: v for k, v in sorted(marks["by_thread"].items(), key=lambda kv: -kv[1]) if v > 0}}


def feed_floor(blocks: int, workers: int) -> dict:
    """The engine's actor loop alone (:mod:`dataprep.build.ray_feed`, as the engine starts it): one file
    of ``blocks`` one-record chunks read by a reader actor, worked by ``workers`` chunk actors whose
    chunk function does nothing, the results taken and unpickled by the driver: its CPU per block."""
    import ray

    from dataprep.build import ray_chunks, ray_feed
    from dataprep.read.chunks import ChunkReader

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the no-op reader and worker below
    reader = ChunkReader(partial(_one_row_batches, blocks), max_bytes=1)  # one record a chunk
    ray_feed.BLOCK_BYTES = 1  # one chunk a block, as Ray Data's: the cost of a block (the engine sends several a block)
    somewhere = SimpleNamespace(path=Path(os.devnull), url=None, location=os.devnull)  # no file behind it
    feed = ray_feed.start(ray, reader, (_nothing, ()), [somewhere], cpus=workers, max_retries=0)
    n, first = 0, None
    try:
        for table, _ in feed:
            list(ray_chunks.delivered(table))
            n += 1
            first = first or (cpu_self(), time.perf_counter())  # from the first block on, as the runs' stream
    finally:
        feed.close()
    cpu, wall = cpu_self() - first[0], time.perf_counter() - first[1]
    ray.shutdown()
    return {"blocks": n, "cpu": cpu, "seconds": wall}


def _one_row_batches(blocks: int, index, file, drops):
    import pyarrow as pa

    yield pa.record_batch({"text": [f"document {i}" for i in range(blocks)]})


def _nothing():
    return lambda item: None


def ray_data_floor(blocks: int, workers: int) -> dict:
    """Ray Data alone, as the engine uses it (ordered, one-row blocks, an actor pool of ``workers``,
    the blocks' refs taken and read by the driver) with a map that does nothing: its driver CPU."""
    import pyarrow as pa
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars, context.execution_options.preserve_order = False, True
    context.target_max_block_size = 1
    dataset = ray.data.from_arrow([pa.table({"x": [i]}) for i in range(blocks)]).map_batches(
        _Same, batch_size=None, batch_format="pyarrow", num_cpus=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers, initial_size=workers))
    n, first = 0, None
    for bundle in dataset.iter_internal_ref_bundles():
        for entry in bundle.blocks:
            ray.get(entry.ref)
            n += 1
            first = first or (cpu_self(), time.perf_counter())  # from the first block on, as the runs' stream
    cpu, wall = cpu_self() - first[0], time.perf_counter() - first[1]
    ray.shutdown()
    return {"blocks": n, "cpu": cpu, "seconds": wall}


class _Same:
    def __call__(self, table):
        return table


def worker_cpu(recipe: Path) -> dict:
    """The chunk function over every chunk in this process, one thread (``RAYON_NUM_THREADS=1``): a
    worker core's CPU seconds per token, as benchmarks/ordered_stage.py measures it."""
    from dataprep.recipe import load_recipe
    from dataprep.text.tokenizer import load_tokenizer
    from ordered_stage import chunk_results, drive, stage_for, timed_segments

    r = load_recipe(recipe)
    tokenizer = load_tokenizer(r.tokenizer, base_dir=r.base_dir)
    plan, results, worker = chunk_results(r, tokenizer)
    # the segments' work (gather, pack, write, digest) is worker work too: timed as ordered_stage.py does
    segments, _ = timed_segments()
    out = WORK / "ray_segments" / "in-process"
    drive(stage_for(r, plan, tokenizer, out, segment_tokens=r.packing.segment_tokens, workers=1), results)
    shutil.rmtree(out, ignore_errors=True)
    return {"worker": worker, "segments": segments["seconds"], "tokens": sum(int(x.lengths.sum()) for x in results),
            "chunks": len(results)}


def _child(argv: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True,
                          cwd=Path(__file__).parent, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def copies_of(data: Path, copies: int) -> Path:
    """``data`` ``copies`` times over, made once: copy k's every text begins ``[copy k] `` (k >= 1), so
    exact dedup keeps every copy and each is the corpus again to the driver and the workers."""
    if copies <= 1:
        return data
    path = data.with_name(f"{data.stem}-x{copies}.jsonl")
    if not path.is_file():
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            for k in range(copies):
                with open(data, encoding="utf-8") as lines:
                    for line in lines:
                        if k:
                            record = json.loads(line)
                            record["text"] = f"[copy {k}] {record['text']}"
                            line = json.dumps(record, ensure_ascii=False) + "\n"
                        out.write(line)
        os.replace(tmp, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mb", type=float, default=40.0, help="the first MB of the bench corpus (default 40)")
    parser.add_argument("--segment-tokens", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--encode-engine", default="auto", help="tokenizer.engine (auto: gigatoken where it is installed)")
    parser.add_argument("--fit", action="store_true",
                        help="also: the first --workers run with tokenizer.engine: tokenizers (slower workers, same "
                             "tokens and chunks), to tell the driver's CPU per second from its CPU per token")
    parser.add_argument("--chunk-mb", type=float, default=None, help="output.chunk_bytes in MB (default: the recipe's)")
    parser.add_argument("--chunks-per-block", type=int, default=None,
                        help="chunks the engine sends in one block (default: its own rule, ray_feed.chunks_per_block: "
                             "8 at 4 MB chunks on a large input, 1 on a small one)")
    parser.add_argument("--threads", action="store_true", help="also: segments on the driver's threads (largest --workers)")
    parser.add_argument("--copies", type=int, default=1,
                        help="the corpus prefix N times, each later copy's documents made distinct (more chunks than the "
                             "bench corpus holds at large --chunk-mb; the same documents' shape)")
    parser.add_argument("--work", type=Path, default=WORK / "ray_segments")
    parser.add_argument("--child", nargs=4, metavar=("RECIPE", "OUT", "WORKERS", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        recipe, out, workers, threads = args.child
        if recipe in ("-", "+"):
            floor = ray_data_floor if recipe == "-" else feed_floor
            print(json.dumps(floor(int(out), int(workers))))
        else:
            print(json.dumps(worker_cpu(Path(recipe)) if workers == "0" else child(Path(recipe), Path(out), int(workers), threads == "1")))
        return

    cores = len(os.sched_getaffinity(0))
    data = copies_of(corpus_prefix(args.limit_mb), args.copies)
    print(f"machine: {machine()}")
    def recipe_for(engine: str, name: str) -> Path:
        return write_recipe(args.work / name, {
            "task": "pretrain", "inputs": [{"path": str(data)}], "tokenizer": {"path": str(TOKENIZER), "engine": engine},
            "packing": {"mode": "wrap", "seq_len": 2048, "segment_tokens": args.segment_tokens},
            **({"output": {"chunk_bytes": int(args.chunk_mb * 2**20), "chunk_records": 1 << 30}} if args.chunk_mb else {}),
        })

    recipe = recipe_for(args.encode_engine, "recipe.yaml")
    plan = [(0, False)] + [(n, False) for n in args.workers] + ([(max(args.workers), True)] if args.threads else [])
    rows = []
    os.environ.update({PER_BLOCK: str(args.chunks_per_block)} if args.chunks_per_block else {})
    for workers, threads in plan:
        out = args.work / "out"
        env = os.environ | ({"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"} if workers == 0 else {})
        rows.append(_child([str(recipe), str(out), str(workers), "1" if threads else "0"], env))
        shutil.rmtree(out, ignore_errors=True)
    floor = _child(["-", str(rows[0]["chunks"]), str(max(args.workers)), "0"], os.environ)
    feed_alone = _child(["+", str(rows[0]["chunks"]), str(max(args.workers)), "0"], os.environ)
    slow = None
    if args.fit:  # the same run with slower workers: the driver's CPU per second and per token, apart
        slow = _child([str(recipe_for("tokenizers", "recipe-slow.yaml")), str(args.work / "out"), str(args.workers[0]), "0"],
                      os.environ)
        shutil.rmtree(args.work / "out", ignore_errors=True)

    one, rows = rows[0], rows[1:]
    worker = one["worker"] / (one["tokens"] / MTOK)
    segment = one["segments"] / (one["tokens"] / MTOK)
    print(f"{args.limit_mb:g} MB of the bench corpus{f' x {args.copies}' if args.copies > 1 else ''}, {rows[0]['tokens']:,} tokens in {one['chunks']} chunks, wrap 2048, "
          f"segments of {args.segment_tokens:,} tokens; encode engine {rows[0]['engine']}; {cores} cores here; "
          f"{rows[0]['per_block']} chunk(s) a block")
    print(f"one worker core, in one process, one thread: the chunk function {worker:.4f} CPU s/Mtok, "
          f"its segments' packing {segment:.4f} (what a Ray worker does per token, without Ray)")
    head = (f"{'ray --workers':>14} {'segments on':>12} {'s':>6} {'Mtok/s':>7} {'driver s/Mtok':>14} {'(stream)':>9} "
            f"{'actors s/Mtok':>14} {'readers':>8} {'tasks s/Mtok':>13} {'ray daemons':>12} {'driver busy':>12} {'driver RSS':>11} {'ceiling cores (stream)':>23}")
    print(head)
    for r in rows:
        m = r["tokens"] / MTOK
        driver, stream = r["driver"] / m, r["driver_stream"] / m
        steady = r["steady"][0] / max(r["steady"][1] / MTOK, 1e-9)
        busy = r["workers"] + 1  # the actors, and the driver with the segment tasks beside it
        note = f"  oversubscribed: {busy}+ busy processes on {cores} cores" if busy > cores else ""
        print(f"{r['workers']:>14} {'driver threads' if r['threads'] else 'Ray tasks':>12} {r['seconds']:6.1f} "
              f"{r['tokens'] / r['seconds'] / MTOK:7.3f} {driver:14.4f} {stream:9.4f} {r['actors'] / m:14.3f} "
              f"{r['tasks'] / m:13.3f} {r['ray'] / m:12.3f} {r['driver_stream'] / r['stream_seconds']:12.1%} "
              f"{r['rss'] / 1024:8.0f} MiB"
              f"{(worker + segment) / stream:23.0f} {(worker + segment) / steady:9.0f}{note}")
    print("the driver's stream CPU by thread name (s; /proc/self/task; this script's poller is among the Thread-*):")
    for r in rows:
        top = ", ".join(f"{name} {cpu:.2f}" for name, cpu in r["by_thread"].items())
        print(f"  {r['workers']} workers, {'driver threads' if r['threads'] else 'Ray tasks'}: {top}")
    same = all(r["shards"] == rows[0]["shards"] for r in rows)
    print(f"train shards identical across these runs: {'yes' if same else 'NO'} ({len(rows[0]['shards'])} shards)")
    for name, f in (("the engine's actor loop alone", feed_alone), ("Ray Data alone (the engine until #20)", floor)):
        print(f"{name}: the same {f['blocks']} one-row blocks through {max(args.workers)} no-op actors, taken by the "
              f"driver: driver CPU from the first block on {f['cpu']:.2f} s in {f['seconds']:.1f} s "
              f"({f['cpu'] / max(1, f['blocks'] - 1) * 1e3:.2f} ms a block, {f['cpu'] / max(f['seconds'], 1e-9):.1%} of a core)")
    print("against the runs' stream " + ", ".join(f"{r['driver_stream']:.2f} s" for r in rows))
    if slow is not None:
        fast = next(r for r in rows if r["workers"] == args.workers[0] and not r["threads"])
        # driver stream CPU = per_second * stream seconds + per_mtok * Mtok, from the two runs
        t1, t2, c1, c2, m = fast["stream_seconds"], slow["stream_seconds"], fast["driver_stream"], slow["driver_stream"], fast["tokens"] / MTOK
        per_second = (c2 - c1) / (t2 - t1)
        per_mtok = (c1 - per_second * t1) / m
        print(f"fit, {args.workers[0]} workers, gigatoken vs tokenizers workers ({m:.1f} Mtok, {one['chunks']} chunks; stream "
              f"{t1:.1f} s / {t2:.1f} s, driver CPU {c1:.2f} s / {c2:.2f} s): the driver spends {per_second:.1%} of a core "
              f"whatever the rate and {per_mtok:.4f} CPU s per Mtok; " + (
                  f"ceiling {(1 - per_second) * (worker + segment) / per_mtok:.0f} worker cores" if per_mtok > 0 else
                  "no per-token share left (noise): run it again on a quieter machine"))
    starts = ", ".join(f"{r['ray_start']:.1f} s" for r in rows)
    print(f"Ray start-up (not timed above): {starts}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
