"""What the benchmarks share: the corpus prefix, timed subprocesses with their peak RSS, the machine.

Peak RSS is the largest sum of resident memory over a process and all its descendants
(sampled every 20 ms from /proc), so worker processes count: an upper bound, since pages shared
between processes count once per process.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO.parent / "shared" / "bench"
CORPUS = BENCH / "corpus.jsonl.zst"
PAIRS = BENCH / "pairs50k.jsonl.zst"
TOKENIZER = BENCH / "bpe32k.json"
WORK = Path(os.environ.get("DATAPREP_BENCH_WORK", "/tmp/dataprep-bench"))
PAGE = os.sysconf("SC_PAGE_SIZE")


def corpus_prefix(limit_mb: float | None, *, corpus: Path = CORPUS, work: Path = WORK) -> Path:
    """The first ``limit_mb`` MB of the corpus as plain JSONL (whole lines), made once and reused.

    The corpus is shuffled, so any prefix has the same mix of sources as the whole.
    """
    import zstandard

    work.mkdir(parents=True, exist_ok=True)
    name = "all" if limit_mb is None else f"{limit_mb:g}MB"
    path = work / f"{corpus.name.split('.')[0]}-{name}.jsonl"
    if path.is_file():
        return path
    limit = None if limit_mb is None else int(limit_mb * 1e6)
    written = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(corpus, "rb") as raw, open(tmp, "wb") as out:
        reader = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True), 1 << 20)
        for line in reader:
            if limit is not None and written + len(line) > limit:
                break
            out.write(line)
            written += len(line)
    os.replace(tmp, path)
    return path


def read_texts(path: Path, field: str = "text") -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)[field] for line in fh]


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except OSError:
            pass
        stack.extend(children.get(pid, ()))
    return total


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and its waited-for children."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Contention:
    """How much of the machine *other* processes used while a block ran (0.0: quiet).

    ``with Contention() as c: ...`` then ``c.others``: their CPU seconds over (wall x cores).
    """

    def __enter__(self) -> "Contention":
        self._start = (time.perf_counter(), _busy_seconds(), _own_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy, own = (b - a for a, b in zip(self._start, (time.perf_counter(), _busy_seconds(), _own_seconds())))
        self.others = max(0.0, busy - own) / (wall * len(os.sched_getaffinity(0))) if wall > 0 else 0.0
        self.cpu = own


@dataclass
class Measured:
    seconds: float
    peak_rss: int
    returncode: int
    output: str
    others: float = 0.0  # share of the machine other processes used meanwhile
    cpu: float = 0.0  # CPU seconds of the measured process tree


def measure(cmd: list[str], *, env: dict[str, str] | None = None, interval: float = 0.02, check: bool = True) -> Measured:
    """Run ``cmd``; its wall time and the peak RSS of its process tree."""
    contention = Contention().__enter__()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    seconds = time.perf_counter() - started
    contention.__exit__(None, None, None)
    done.set()
    sampler.join()
    if check and proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{output[-4000:]}")
    return Measured(seconds, peak[0], proc.returncode, output, contention.others, contention.cpu)


def du(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def dataprep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dataprep", "-q", "run", *args]


def write_recipe(path: Path, recipe: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recipe, indent=2))  # JSON is YAML
    return path


def machine() -> str:
    """One line: CPU model, cores, memory, load, library versions."""
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration):
        mem = 0
    import pyarrow
    import tokenizers

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model}; {len(os.sched_getaffinity(0))} cores; {mem / 2**30:.0f} GiB; load {load}; "
        f"Python {platform.python_version()}, tokenizers {tokenizers.__version__}, pyarrow {pyarrow.__version__}"
    )


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def build_once(spec: dict, out: Path, *, base_dir: Path, workers: int | None) -> Path:
    """Build the dataset ``spec`` describes at ``out``, or reuse the one already there when it was
    built from the same recipe (same ``recipe_hash``)."""
    from dataprep.build.run import run
    from dataprep.recipe import recipe_from_dict

    recipe = recipe_from_dict(spec, base_dir=base_dir)
    manifest = out / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text())["recipe_hash"] == recipe.hash:
        print(f"reusing {out}")
        return out
    started = time.perf_counter()
    run(recipe, out, workers=workers, overwrite=True, progress=None)
    print(f"built {out} in {time.perf_counter() - started:.0f} s")
    return out


def shard_files(dataset: Path) -> list[Path]:
    """Every shard file of a built dataset, in manifest order (train, then validation)."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    return [dataset / split / s["file"] for split, info in manifest["splits"].items() for s in info["shards"]]


def print_rates(results: dict[str, dict], corpus_tokens: int, ratios: dict[str, str] | None = None,
                note: str = "") -> dict[str, float]:
    """The table every throughput benchmark prints: one row per measurement (``seconds``, ``cpu``,
    ``others``, ``tokens``; ``peak_rss`` where a process of its own was measured), its rate (the
    corpus's tokens over wall seconds, so every row counts the same tokens), the same over CPU
    seconds (steadier than wall time on a busy machine) and, per entry of
    ``ratios`` (column title -> row name), its rate over that row's. Returns the rates."""
    ratios = {title: row for title, row in (ratios or {}).items() if row in results}
    rate = {name: corpus_tokens / r["seconds"] for name, r in results.items()}
    print(f"\n{corpus_tokens:,} corpus tokens; rate = corpus tokens / wall seconds{note}")
    print("others: share of the machine other processes used during the measurement (0% = quiet)\n")
    width = max(map(len, results)) + 1
    head = "".join(f" {title:>{max(len(title), 6)}}" for title in ratios)
    print(f"{'':{width}} {'seconds':>8} {'M tokens/s':>11} {'CPU s':>6} {'M tok/CPU s':>11} {'peak RSS':>10}{head} {'others':>7}  tokens")
    for name, r in results.items():
        rss = mb(r["peak_rss"]) if "peak_rss" in r else "-"
        cells = "".join(f" {rate[name] / rate[row]:>{max(len(title), 6)}.2f}" for title, row in ratios.items())
        per_cpu = f"{corpus_tokens / r['cpu'] / 1e6:11.2f}" if r["cpu"] > 0 else f"{'-':>11}"
        print(f"{name:{width}} {r['seconds']:8.2f} {rate[name] / 1e6:11.3f} {r['cpu']:6.1f} {per_cpu} {rss:>10}{cells} "
              f"{r['others']:7.0%}  {r['tokens']:,}")
    return rate


def raw_tokenizers(texts: list[str], tokenizer: Path, batch: int) -> dict:
    """``tokenizers``' ``encode_batch_fast`` over ``texts`` (loaded beforehand) in batches of ``batch``,
    in this process (its thread pool on every core), counting tokens only."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    tok.encode_batch_fast(texts[:1], add_special_tokens=False)  # warm: not timed
    with Contention() as contention:
        started = time.perf_counter()
        tokens = 0
        for i in range(0, len(texts), batch):
            tokens += sum(len(e) for e in tok.encode_batch_fast(texts[i : i + batch], add_special_tokens=False))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "tokens": tokens, "others": contention.others, "cpu": contention.cpu}


def raw_gigatoken(texts: list[str], tokenizer: Path, batch: int, *, lists: bool = False) -> dict:
    """gigatoken's ``encode_batch`` (ids as one flat array, what dataprep's engine calls) or
    ``encode_batch_list`` (Python lists) the same way; the first call, which imports awkward, is not timed."""
    import gigatoken

    tok = gigatoken.Tokenizer(str(tokenizer))
    len(tok.encode_batch(texts[:1]).layout.content)  # warm: not timed
    with Contention() as contention:
        started = time.perf_counter()
        tokens = 0
        for i in range(0, len(texts), batch):
            if lists:
                tokens += sum(map(len, tok.encode_batch_list(texts[i : i + batch])))
            else:
                tokens += len(tok.encode_batch(texts[i : i + batch]).layout.content)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "tokens": tokens, "others": contention.others, "cpu": contention.cpu}
