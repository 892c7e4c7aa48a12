"""Resume: what checkpoints cost a run, what a crash loses, and what ``--resume`` costs (issue 14).

In one run, on the same corpus prefix, tokenizer and cores, for the pretraining recipe of
``pretrain_throughput.py`` (NFC, exact dedup, 1% validation split, EOS, 2048-token rows), ``wrap``
and ``bfd``:

1. Overhead: the dataset built with checkpoints off (``run(..., checkpoint_every=None)``), with
   the default interval (60 s) and with a frequent one (``--every``), alternating, ``--repeat``
   times each; wall time (median), checkpoints taken and the seconds spent saving them (the
   manifest's ``run.checkpoints``). A checkpoint's cost, measured at the frequent interval, over
   60 s is what the default costs a run long enough to take them. Then where a checkpoint's time
   goes: one run in this process with a checkpoint after every chunk, the parts of each save timed.
2. Crashes (``--crash-modes``, default ``bfd``): ``dataprep run --checkpoint-every EVERY`` (the
   CLI, a subprocess) killed with SIGKILL at ``--kill-at`` fractions of the same run's
   uninterrupted wall time; then, ``--repeat`` times, alternating, ``--resume`` from a copy of
   what it left and a fresh run of the input's lines after the checkpoint (the work the resume
   had left, start-up included: "remaining"). Work lost = the kill's time minus the last
   checkpoint's (``state.pkl``'s mtime); extra = the resume's wall time less remaining; load = reading
   the checkpoint; re-read = reading the chunks the checkpoint had done (a resumed run reads them
   again, so that every count stays whole, but does not work them); both timed in this process
   with the run's own code. Every shard of every resumed dataset is checked (SHA-256 of the
   file) against the uninterrupted run's and the checkpoint-off runs'.

Usage::

    python benchmarks/resume.py                          # first 100 MB of the corpus (~20 min on 2 cores)
    python benchmarks/resume.py --limit-mb 0 --modes bfd --every 20 --repeat 1 --crash-modes ""   # the default
                                                         # 60 s on a run long enough to take a checkpoint
    python benchmarks/resume.py --limit-mb 20 --repeat 1 --modes bfd   # quick

Goal: checkpoints at the default interval cost < 3% of a run, and a crash loses at most about one
interval of work.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import pickle
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from _bench import TOKENIZER, WORK, Contention, corpus_prefix, dataprep_cmd, machine, measure, write_recipe
from pretrain_throughput import recipe as pretrain_recipe

from dataprep.build.checkpoint import DEFAULT_EVERY, Checkpoints  # DEFAULT_EVERY: a run without --checkpoint-every

STARTUP_MB = 0.5  # a run this small is almost all start-up

# A run through the library, so that checkpoints can be off (the CLI's --checkpoint-every takes seconds only).
CHILD = (
    "import sys\n"
    "from dataprep.build.run import run\n"
    "from dataprep.recipe import load_recipe\n"
    "every = None if sys.argv[3] == 'off' else float(sys.argv[3])\n"
    "run(load_recipe(sys.argv[1]), sys.argv[2], overwrite=True, checkpoint_every=every)\n"
)


def shard_hashes(out: Path) -> dict[str, str]:
    """SHA-256 of every shard file under ``out``, by path relative to it."""
    hashes = {}
    for path in sorted(out.rglob("*.arrow")):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 24):
                digest.update(block)
        hashes[str(path.relative_to(out))] = digest.hexdigest()
    return hashes


def remove(out: Path) -> None:
    for path in (out, out.with_name(out.name + ".incomplete")):
        shutil.rmtree(path, ignore_errors=True)


def build(recipe: Path, out: Path, every: float | None) -> dict:
    """One run in a fresh interpreter with checkpoints every ``every`` seconds (None: off)."""
    remove(out)
    m = measure([sys.executable, "-c", CHILD, str(recipe), str(out), "off" if every is None else str(every)])
    run = json.loads((out / "manifest.json").read_text())["run"]
    result = {"seconds": m.seconds, "saved": run["checkpoints"]["saved"], "saving": run["checkpoints"]["seconds"],
              "others": m.others, "hashes": shard_hashes(out)}
    remove(out)
    return result


def read_time(recipe_path: Path, skip: dict[int, int] | None) -> tuple[float, list[tuple[int, int, int]]]:
    """Seconds the run's reader takes to read past the chunks in ``skip`` (to its first yielded
    chunk, as a resumed run does), or, with ``skip`` None, to read every chunk; and the
    ``(file index, text bytes, last line)`` of each chunk it yielded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dataprep.tasks import pretrain
    from dataprep.read import resolve_inputs
    from dataprep.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    files = resolve_inputs(recipe.inputs, base_dir=recipe.base_dir)
    reader = pretrain.chunk_reader(recipe)
    if skip:
        reader = dataclasses.replace(reader, skip=tuple(sorted(skip.items())))
    started = time.perf_counter()
    chunks = []
    for index, batch in reader.chunks(files, read_drops=Counter(), counts=Counter()):
        if skip is not None:
            break
        text = sum(pc.sum(pc.binary_length(c)).as_py() or 0 for c in batch.columns
                   if pa.types.is_string(c.type) or pa.types.is_large_string(c.type))
        chunks.append((index, text, batch.column("line")[-1].as_py()))
    return time.perf_counter() - started, chunks


def done_share(chunks: list[tuple[int, int, int]], done: dict[int, int]) -> float:
    """The share of the input's text in the chunks a checkpoint had done."""
    seen: Counter = Counter()
    worked = 0
    for index, size, _ in chunks:
        seen[index] += 1
        worked += size if seen[index] <= done.get(index, 0) else 0
    return worked / sum(size for _, size, _ in chunks)


def rest_of(data: Path, chunks: list[tuple[int, int, int]], done: dict[int, int], path: Path) -> Path:
    """The input's lines after the chunks a checkpoint had done (one input file), as a file of its own."""
    assert set(done) <= {0} and all(index == 0 for index, _, _ in chunks), "one input file"
    after = chunks[done[0] - 1][2] if done.get(0) else 0  # the last line (1-based) of the last done chunk
    with open(data, "rb") as src, open(path, "wb") as dst:
        for number, line in enumerate(src, 1):
            if number > after:
                dst.write(line)
    return path


def breakdown(recipe_path: Path, out: Path) -> tuple[dict[str, list[float]], list[int]]:
    """One run in this process with a checkpoint after every chunk, timing the parts of each save
    (self time: a part's seconds exclude the parts it calls); and the size of each ``state.pkl``."""
    import types

    from dataprep.build import checkpoint, write
    from dataprep.build.run import run
    from dataprep.recipe import load_recipe

    parts: dict[str, list[float]] = {}
    stack: list[list[float]] = []  # per open part: seconds its callees took
    sizes: list[int] = []

    def timed(label: str, fn, *, within_save: bool = False):
        def call(*a, **k):
            if within_save and not stack:  # e.g. a shard closed outside a checkpoint
                return fn(*a, **k)
            stack.append([0.0])
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                took = time.perf_counter() - started
                inner = stack.pop()[0]
                parts.setdefault(label, []).append(took - inner)
                if stack:
                    stack[-1][0] += took
        return call

    def dumps(obj, *a, **k):
        data = pickle.dumps(obj, *a, **k)
        sizes.append(len(data))
        return data

    saved = (checkpoint.Checkpoints.save, write.SplitWriter.state, write._sync, write._sync_folder,
             checkpoint.write_bytes_atomic, checkpoint.pickle)
    checkpoint.Checkpoints.save = timed("seen.bin append + fsync, the rest of save", checkpoint.Checkpoints.save)
    write.SplitWriter.state = timed("writers: pending rows to IPC", write.SplitWriter.state, within_save=True)
    write._sync = timed("fsync (open shards; state.pkl)", write._sync, within_save=True)
    write._sync_folder = timed("fsync of the checkpoint folder (the rename)", write._sync_folder, within_save=True)
    checkpoint.write_bytes_atomic = timed("state.pkl write + rename", checkpoint.write_bytes_atomic,
                                          within_save=True)
    checkpoint.pickle = types.SimpleNamespace(dumps=timed("pickle.dumps", dumps, within_save=True), loads=pickle.loads,
                                              HIGHEST_PROTOCOL=pickle.HIGHEST_PROTOCOL)
    level = logging.getLogger("dataprep").level
    logging.getLogger("dataprep").setLevel(logging.ERROR)  # the tokenizer's warning, as -q does
    try:
        remove(out)
        run(load_recipe(recipe_path), out, overwrite=True, checkpoint_every=0)
    finally:
        (checkpoint.Checkpoints.save, write.SplitWriter.state, write._sync, write._sync_folder,
         checkpoint.write_bytes_atomic, checkpoint.pickle) = saved
        logging.getLogger("dataprep").setLevel(level)
        remove(out)
    return parts, sizes


def crash(recipe: Path, out: Path, every: float, fraction: float, full_seconds: float, *,
          data: Path, chunks: list[tuple[int, int, int]], repeat: int) -> dict:
    """Start ``dataprep run``, SIGKILL it at ``fraction`` of ``full_seconds``; then, ``repeat``
    times, alternating: ``--resume`` from a copy of what it left, and a fresh run of the input
    after the checkpoint (the work the resume had left)."""
    cmd = dataprep_cmd(str(recipe), "--out", str(out), "--checkpoint-every", f"{every:g}")
    for attempt in range(1, 4):
        remove(out)
        started = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=fraction * full_seconds)
            full_seconds = min(full_seconds, time.time() - started)  # it ran faster this time: kill sooner
        except subprocess.TimeoutExpired:
            killed = time.time()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
    else:
        return {"fraction": fraction, "finished": True}
    left = out.with_name(out.name + ".incomplete")
    folder = left / "checkpoint"
    state_file = folder / "state.pkl"
    result = {"fraction": fraction, "finished": False, "kill": killed - started, "attempt": attempt}
    if not state_file.is_file():  # killed before its first checkpoint: nothing to resume, all is lost
        result.update(checkpoint=None, lost=killed - started)
        return result
    checkpointed = state_file.stat().st_mtime
    loading = time.perf_counter()
    state = Checkpoints(folder).load()  # what the resumed run does first: unpickle, rebuild the dedup set
    load = time.perf_counter() - loading
    done = dict(state["done"])
    result.update(checkpoint=checkpointed - started, lost=killed - checkpointed, done_by_input=done, load=load,
                  state_bytes=state_file.stat().st_size, seen_bytes=(folder / "seen.bin").stat().st_size)
    del state
    kept = out.with_name(out.name + ".killed")
    shutil.rmtree(kept, ignore_errors=True)
    left.rename(kept)
    # The remaining work on its own: the same recipe over the input's lines after the checkpoint,
    # from scratch (start-up included, as in the resume; no checkpoint to load, nothing to re-read).
    rest = rest_of(data, chunks, done, out.parent / f"{out.name}-rest.jsonl")
    spec = json.loads(recipe.read_text())
    rest_recipe = write_recipe(out.parent / f"{out.name}-rest.yaml", {**spec, "inputs": [{"path": str(rest)}]})
    resumes, fresh, others, hashes = [], [], [], []
    for _ in range(repeat):
        remove(out)
        shutil.copytree(kept, left)
        resumed = measure(dataprep_cmd(str(recipe), "--out", str(out), "--resume", "--checkpoint-every", f"{every:g}"),
                          check=False)
        if resumed.returncode:  # say what failed, and go on with the other points
            result["failed"] = resumed.output.strip().splitlines()[-2:]
            break
        resumes.append(resumed.seconds)
        hashes.append(shard_hashes(out))
        remove(out)
        again = measure(dataprep_cmd(str(rest_recipe), "--out", str(out), "--checkpoint-every", f"{every:g}"))
        fresh.append(again.seconds)
        others += [resumed.others, again.others]
    remove(out)
    shutil.rmtree(kept)
    rest.unlink()
    result.update(resumes=resumes, fresh=fresh, others=max(others, default=0.0), hashes=hashes)
    result["reread"] = read_time(recipe, done)[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mb", type=float, default=100, help="use the first MB of the corpus (0: all of it; default 100)")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    parser.add_argument("--work", type=Path, default=WORK / "resume")
    parser.add_argument("--modes", default="wrap,bfd", help="packing modes, comma-separated")
    parser.add_argument("--every", type=float, default=2.0,
                        help="the frequent interval, seconds: several checkpoints even on a short run (default 2)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each overhead setting, and resumes of each kill (the median is shown)")
    parser.add_argument("--crash-modes", default="bfd",
                        help="modes to crash and resume (default bfd: the larger checkpoint; empty: none)")
    parser.add_argument("--kill-at", default="0.3,0.6,0.9", help="fractions of the uninterrupted wall time to kill at")
    args = parser.parse_args()
    modes = args.modes.split(",")
    crash_modes = [m for m in args.crash_modes.split(",") if m]
    assert set(crash_modes) <= set(modes), "--crash-modes must be among --modes"
    fractions = [float(f) for f in args.kill_at.split(",")]

    args.work.mkdir(parents=True, exist_ok=True)
    data = corpus_prefix(args.limit_mb or None)
    print(f"machine: {machine()}")
    docs = sum(1 for _ in open(data, "rb"))
    print(f"corpus: {data.name}, {docs:,} documents, {data.stat().st_size / 1e6:,.1f} MB of JSONL")
    recipes = {mode: write_recipe(args.work / f"pretrain-{mode}.yaml", pretrain_recipe(data, args.tokenizer, mode)) for mode in modes}
    full_read, chunk_sizes = read_time(recipes[modes[0]], None)
    print(f"{len(chunk_sizes)} chunks; reading them all (the run's reader, no work): {full_read:.2f} s")

    # 1. Overhead, alternating the settings so that a busy spell of the machine hits all of them.
    settings = {"off": None, f"default {DEFAULT_EVERY:g} s": DEFAULT_EVERY, f"every {args.every:g} s": args.every}
    runs: dict[tuple[str, str], list[dict]] = {}
    with Contention() as contention:
        for _ in range(args.repeat):
            for mode in modes:
                for name, every in settings.items():
                    runs.setdefault((mode, name), []).append(build(recipes[mode], args.work / f"out-{mode}", every))
    reference = {mode: runs[(mode, "off")][0]["hashes"] for mode in modes}
    same = all(r["hashes"] == reference[mode] for (mode, _), rs in runs.items() for r in rs)

    print(f"\n1. checkpoint overhead: median of {args.repeat} run(s) each, alternating; others: other processes' "
          f"share of the machine, the most over a row's runs ({contention.others:.0%} over the whole part)\n")
    print(f"{'mode':5} {'checkpoints':12} {'seconds':>8} {'(runs)':24} {'saved':>5} {'saving s':>9} {'per ckpt':>9} "
          f"{'saving/wall':>11} {'wall/off':>9} {'others':>7}")
    per_checkpoint: dict[str, float] = {}
    for mode in modes:
        off = statistics.median(r["seconds"] for r in runs[(mode, "off")])
        for name in settings:
            rs = runs[(mode, name)]
            seconds = statistics.median(r["seconds"] for r in rs)
            saved = statistics.median(r["saved"] for r in rs)
            saving = statistics.median(r["saving"] for r in rs)
            each = [r["saving"] / r["saved"] for r in rs if r["saved"]]
            if each and settings[name] == args.every:
                per_checkpoint[mode] = statistics.median(each)
            each_run = "(" + ", ".join(f"{r['seconds']:.1f}" for r in rs) + ")"
            print(f"{mode:5} {name:12} {seconds:8.1f} {each_run:24} "
                  f"{saved:5g} {saving:9.3f} {(statistics.median(each) * 1e3 if each else 0):7.0f}ms "
                  f"{saving / seconds:11.2%} {seconds / off:8.3f}x {max(r['others'] for r in rs):7.0%}")
    print()
    for mode, each in per_checkpoint.items():
        print(f"{mode}: one checkpoint costs {each * 1e3:.0f} ms of the ordered stage's time (median at every "
              f"{args.every:g} s); at the default {DEFAULT_EVERY:g} s that is {each / DEFAULT_EVERY:.2%} of a long run "
              f"(goal < 3%)")
    print(f"shards of every overhead run identical to the checkpoint-off run's (sha256 of every shard): {'yes' if same else 'NO'}")

    # Where a checkpoint's time goes: the largest state (bfd when measured), a checkpoint after every chunk.
    mode = "bfd" if "bfd" in modes else modes[0]
    parts, sizes = breakdown(recipes[mode], args.work / f"out-{mode}")
    saves = len(parts.get("pickle.dumps", []))
    total = sum(sum(v) for v in parts.values())
    print(f"\nwhere a checkpoint's time goes ({mode}, in this process, a checkpoint after each of {saves} chunks; "
          f"state.pkl {min(sizes) / 1e6:.1f}-{max(sizes) / 1e6:.1f} MB, median {statistics.median(sizes) / 1e6:.1f} MB):")
    for label, seconds in sorted(parts.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {label:42} {sum(seconds) / saves * 1e3:6.1f} ms per checkpoint ({sum(seconds) / total:4.0%})")
    print(f"  {'total':42} {total / saves * 1e3:6.1f} ms")

    # 2. Crashes and resumes, with the CLI.
    if not crash_modes:
        return
    small = write_recipe(args.work / "startup.yaml", pretrain_recipe(corpus_prefix(STARTUP_MB), args.tokenizer, "bfd"))
    startup = statistics.median(
        measure(dataprep_cmd(str(small), "--out", str(args.work / "out-startup"), "--overwrite")).seconds for _ in range(3))
    remove(args.work / "out-startup")
    print(f"\n2. SIGKILL at {', '.join(f'{f:.0%}' for f in fractions)} of the uninterrupted run, then --resume; "
          f"--checkpoint-every {args.every:g}")
    print(f"start-up of any run (interpreter, imports, tokenizer, input SHA-256; a run of the first {STARTUP_MB:g} MB): "
          f"{startup:.1f} s, median of 3\n")
    print(f"{'mode':5} {'kill at':>8} {'ckpt at':>8} {'lost':>6} {'done':>6} {'state.pkl':>9} {'seen.bin':>8} "
          f"{'remaining':>9} {'resume':>7} {'extra':>6} {'load':>7} {'re-read':>7} {'crash cost':>10} {'others':>6} "
          f"{'identical':>9}")
    checked = identical = 0
    for mode in crash_modes:
        out = args.work / f"crash-{mode}"
        remove(out)
        full = measure(dataprep_cmd(str(recipes[mode]), "--out", str(out), "--checkpoint-every", f"{args.every:g}"))
        full_hashes = shard_hashes(out)
        full_saved = json.loads((out / "manifest.json").read_text())["run"]["checkpoints"]["saved"]
        remove(out)
        checked += 1
        identical += full_hashes == reference[mode]
        # The same work, timed 1 + repeat times; kills are at fractions of the fastest (so that a
        # slower run is still running at 90%).
        same = [full.seconds] + [r["seconds"] for r in runs[(mode, f"every {args.every:g} s")]]
        uninterrupted = statistics.median(same)
        print(f"{mode:5} {'-':>8} {'':>8} {'':>6} {'all':>6} {'':>9} {'':>8} {uninterrupted:8.1f}s {'':>7} {'':>6} "
              f"{'':>7} {'':>7} {'':>10} {full.others:6.0%} {'yes' if full_hashes == reference[mode] else 'NO':>9}"
              f"   uninterrupted: median of "
              f"{len(same)} runs ({', '.join(f'{x:.1f}' for x in same)}), {full_saved} checkpoints in the CLI run")
        for fraction in fractions:
            r = crash(recipes[mode], out, args.every, fraction, min(same), data=data, chunks=chunk_sizes,
                      repeat=args.repeat)
            if r["finished"]:
                print(f"{mode:5} {fraction:8.0%}  the run finished before the kill, three times")
                continue
            if r["checkpoint"] is None:
                print(f"{mode:5} {fraction:8.0%}  killed at {r['kill']:.1f} s, before the first checkpoint: all lost")
                continue
            share = done_share(chunk_sizes, r["done_by_input"])
            head = (f"{mode:5} {r['kill']:7.1f}s {r['checkpoint']:7.1f}s {r['lost']:5.1f}s {share:6.0%} "
                    f"{r['state_bytes'] / 1e6:7.1f}MB {r['seen_bytes'] / 1e3:6.0f}kB")
            ok = all(h == full_hashes == reference[mode] for h in r["hashes"])
            checked += len(r["hashes"])
            identical += sum(h == full_hashes == reference[mode] for h in r["hashes"])
            if "failed" in r:
                checked += 1
                print(f"{head}  RESUME FAILED (run {len(r['resumes']) + 1}): {' / '.join(r['failed'])}")
                continue
            remaining = statistics.median(r["fresh"])  # a fresh run of the input after the checkpoint
            resume = statistics.median(r["resumes"])
            extra = resume - remaining  # loading the checkpoint, re-reading the done chunks (and noise)
            print(f"{head} {remaining:8.1f}s {resume:6.1f}s {extra:5.1f}s {r['load']:6.2f}s {r['reread']:6.2f}s "
                  f"{r['lost'] + startup + extra:9.1f}s {r['others']:6.0%} {'yes' if ok else 'NO':>9}"
                  f"   resume {', '.join(f'{x:.1f}' for x in r['resumes'])}; fresh {', '.join(f'{x:.1f}' for x in r['fresh'])}"
                  + (f"; killed on try {r['attempt']} (faster runs finished first)" if r["attempt"] > 1 else ""))
    print(f"\nresumed and uninterrupted datasets byte-identical to the checkpoint-off run (sha256 of every shard): "
          f"{identical} of {checked}")
    print("kill at, ckpt at: seconds after the killed run started; lost: between them (work lost); done: the share of "
          "the input's text the checkpoint had worked;\nremaining: a fresh run (start-up included) of the input's "
          "lines after the checkpoint; resume and remaining: medians, alternating; extra: resume - remaining (load, re-read);\n"
          "load: reading state.pkl and seen.bin (in this process); re-read: reading the done chunks again (in this "
          "process, the run's reader);\ncrash cost: lost + start-up + extra, what the crash added to the run; others: "
          "other processes' share of the machine, the most over the resumes and the fresh runs")

if __name__ == "__main__":
    main()
