"""The encode engines side by side: raw gigatoken, raw tokenizers, and ``dataprep run`` with each.

In one run, on the same corpus prefix, tokenizer and cores:

- raw gigatoken: ``gigatoken.Tokenizer.encode_batch`` (what dataprep's gigatoken engine calls,
  ids as one flat array) and ``encode_batch_list`` (Python lists, as the issue measured) over the
  documents in batches of ``--batch``, in this process (its thread pool on every core);
- raw tokenizers: ``encode_batch_fast``, the same way;
- dataprep: ``dataprep run`` (recipe defaults, ``wrap`` at 2048) with ``tokenizer.engine:
  tokenizers`` and ``auto`` (gigatoken after its probe), with peak RSS; their shards must be
  byte-identical (checked here, by SHA-256 in the manifests).

Rates are the corpus's tokens (raw tokenizers' count, which gigatoken must equal) over wall time;
texts are loaded beforehand for the raw encodes; dataprep's times include interpreter start.

``--memory`` instead streams the corpus (``--limit-mb``, default all of it) through gigatoken in
a child process and prints its RSS every ``--every-mb`` MB of text: flat when the encode caches
are bounded (``gigatoken-cachefix``), growing with the corpus's distinct pre-tokens when not.
``--gigatoken-path DIR`` puts another gigatoken install first on the child's path (``pip install
--no-deps --target DIR gigatoken==0.10.0``) to compare the two. ``--words`` streams text of
ever-new 8-letter words instead (seeded), the worst case for the caches: about 5.6 M distinct
pre-tokens every 25 MB. ``--dataprep`` encodes with dataprep's encoder, which makes its tokenizer
with the cache budget dataprep sets (``encode_engine.CACHE_BYTES``) instead of gigatoken's default. Usage::

    python benchmarks/encode_engine.py --limit-mb 60
    python benchmarks/encode_engine.py --memory
    python benchmarks/encode_engine.py --memory --words --limit-mb 200 [--dataprep | --gigatoken-path /tmp/gt0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from _bench import (CORPUS, TOKENIZER, WORK, corpus_prefix, dataprep_cmd, machine, mb, measure, print_rates, raw_gigatoken,
                    raw_tokenizers, read_texts, write_recipe)


def run_dataprep(work: Path, data: Path, tokenizer: Path, engine: str, workers: int | None) -> dict:
    recipe = {"name": f"bench-{engine}", "task": "pretrain", "inputs": [{"path": str(data)}],
              "tokenizer": {"path": str(tokenizer), "engine": engine}, "packing": {"mode": "wrap", "seq_len": 2048}}
    path = write_recipe(work / f"engine-{engine}.yaml", recipe)
    out = work / f"out-{engine}"
    extra = ["-w", str(workers)] if workers else []
    measured = measure(dataprep_cmd(str(path), "--out", str(out), "--overwrite", *extra))
    manifest = json.loads((out / "manifest.json").read_text())
    shards = {split: [s["sha256"] for s in info["shards"]] for split, info in manifest["splits"].items()}
    result = {"seconds": measured.seconds, "peak_rss": measured.peak_rss, "tokens": manifest["counts"]["tokens"],
              "others": measured.others, "cpu": measured.cpu, "shards": shards,
              "engine": manifest["tokenizer"].get("engine", {})}
    shutil.rmtree(out)
    return result


# The child of --memory: streams JSONL text through gigatoken, printing RSS every EVERY bytes of text.
_MEMORY_CHILD = r"""
import io, json, random, sys, time, zstandard, gigatoken
path, tokenizer, limit, every, batch = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
words, dataprep = sys.argv[6] == "words", sys.argv[7] == "dataprep"
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
if dataprep:
    from dataprep.text.encode_engine import GigatokenEncoder
    encoder = GigatokenEncoder(open(tokenizer, encoding="utf-8").read(), split_special_tokens=True)
    count = lambda texts: len(encoder.encode(texts)[0])
else:
    tok = gigatoken.Tokenizer(tokenizer)
    count = lambda texts: len(tok.encode_batch(texts).layout.content)
print(json.dumps({"gigatoken": gigatoken.__file__, "baseline_rss": rss()}), flush=True)
def corpus():
    raw = open(path, "rb")
    for line in io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True), 1 << 20):
        yield json.loads(line)["text"]
def new_words():
    r, alpha = random.Random(0), "abcdefghijklmnopqrstuvwxyz"
    while True:
        yield " ".join("".join(r.choices(alpha, k=8)) for _ in range(2000))
texts, done, mark, tokens, peak, started = [], 0, every, 0, 0, time.perf_counter()
def flush():
    global texts, tokens, peak
    tokens += count(texts)
    peak = max(peak, rss())
    texts = []
for text in (new_words() if words else corpus()):
    texts.append(text)
    done += len(text.encode("utf-8"))
    if len(texts) == batch:
        flush()
    if done >= mark * 1e6:
        if texts: flush()
        print(json.dumps({"text_mb": round(done / 1e6, 1), "tokens": tokens, "rss": rss(), "peak": peak,
                          "seconds": round(time.perf_counter() - started, 1)}), flush=True)
        mark += every
    if limit and done >= limit * 1e6:
        break
if texts: flush()
print(json.dumps({"text_mb": round(done / 1e6, 1), "tokens": tokens, "rss": rss(), "peak": peak,
                  "seconds": round(time.perf_counter() - started, 1)}), flush=True)
"""


def memory(tokenizer: Path, limit_mb: float | None, every_mb: float, batch: int, path: Path | None, *,
           words: bool, dataprep: bool) -> None:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-c", _MEMORY_CHILD, str(CORPUS), str(tokenizer), str(limit_mb or 0), str(every_mb), str(batch),
           "words" if words else "corpus", "dataprep" if dataprep else "gigatoken"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    head = json.loads(proc.stdout.readline())
    print(f"gigatoken: {head['gigatoken']}; {'dataprep' if dataprep else 'its own default'} cache budget; "
          f"{'ever-new words' if words else 'the corpus'}; RSS after loading the tokenizer {mb(head['baseline_rss'])}")
    print(f"{'text MB':>8} {'M tokens':>9} {'RSS':>9} {'peak RSS':>9} {'seconds':>8}")
    for line in proc.stdout:
        r = json.loads(line)
        print(f"{r['text_mb']:8.1f} {r['tokens'] / 1e6:9.2f} {mb(r['rss']):>9} {mb(r['peak']):>9} {r['seconds']:8.1f}")
    if proc.wait():
        raise SystemExit(f"the memory child failed ({proc.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mb", type=float, default=60, help="use the first MB of the corpus (default 60)")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    parser.add_argument("--work", type=Path, default=WORK / "encode_engine")
    parser.add_argument("--batch", type=int, default=1000, help="documents per raw encode call")
    parser.add_argument("--workers", type=int, default=None, help="dataprep --workers (default: all cores)")
    parser.add_argument("--memory", action="store_true", help="stream the corpus through gigatoken and print its RSS")
    parser.add_argument("--every-mb", type=float, default=20, help="--memory: print every this many MB of text")
    parser.add_argument("--gigatoken-path", type=Path, default=None, help="--memory: a gigatoken install to use instead")
    parser.add_argument("--words", action="store_true", help="--memory: ever-new words instead of the corpus")
    parser.add_argument("--dataprep", action="store_true", help="--memory: dataprep's encoder (its cache budget)")
    args = parser.parse_args()

    if args.memory:
        limit = None if args.limit_mb == parser.get_default("limit_mb") else args.limit_mb
        if args.words and limit is None:
            parser.error("--words needs --limit-mb (the words never end)")
        memory(args.tokenizer, limit, args.every_mb, args.batch, args.gigatoken_path, words=args.words, dataprep=args.dataprep)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    data = corpus_prefix(args.limit_mb)
    print(f"machine: {machine()}")
    from dataprep.text.encode_engine import gigatoken_version

    print(f"encode engine: {gigatoken_version()}")
    texts = read_texts(data)
    print(f"corpus: {data.name}, {len(texts):,} documents, {data.stat().st_size / 1e6:,.1f} MB of JSONL")
    results = {
        "raw tokenizers encode_batch_fast": raw_tokenizers(texts, args.tokenizer, args.batch),
        "raw gigatoken encode_batch": raw_gigatoken(texts, args.tokenizer, args.batch, lists=False),
        "raw gigatoken encode_batch_list": raw_gigatoken(texts, args.tokenizer, args.batch, lists=True),
    }
    del texts
    for engine in ("tokenizers", "auto"):
        results[f"dataprep run wrap, engine {engine}"] = run_dataprep(args.work, data, args.tokenizer, engine, args.workers)

    corpus_tokens = results["raw tokenizers encode_batch_fast"]["tokens"]
    rate = print_rates(results, corpus_tokens, {"/gigatoken": "raw gigatoken encode_batch",
                                                "/tokenizers": "raw tokenizers encode_batch_fast"})
    giga, fast = rate["raw gigatoken encode_batch"], rate["raw tokenizers encode_batch_fast"]
    auto, plain = results["dataprep run wrap, engine auto"], results["dataprep run wrap, engine tokenizers"]
    print()
    print(f"raw gigatoken encode_batch / raw tokenizers encode_batch_fast = {giga / fast:.2f}x")
    print(f"raw gigatoken encode_batch_list / raw tokenizers encode_batch_fast = {rate['raw gigatoken encode_batch_list'] / fast:.2f}x")
    print(f"dataprep (auto) / dataprep (tokenizers) = {rate['dataprep run wrap, engine auto'] / rate['dataprep run wrap, engine tokenizers']:.2f}x")
    print(f"dataprep (auto) / raw gigatoken = {rate['dataprep run wrap, engine auto'] / giga:.2f}x (issue #20 goal >= 0.6)")
    print(f"dataprep (tokenizers) / raw tokenizers = {rate['dataprep run wrap, engine tokenizers'] / fast:.2f}x")
    chose = auto["engine"]
    print(f"engine auto chose: {chose['engine']} ({chose['reason']})" if chose else
          "engine auto chose: not in the manifest (the run made no choice before its work: LoadedTokenizer.choose_engine)")
    same = auto["shards"] == plain["shards"] and auto["tokens"] == plain["tokens"]
    print(f"shards byte-identical across engines: {same}")
    gigatoken_tokens = results["raw gigatoken encode_batch"]["tokens"]
    print(f"raw token counts equal: {gigatoken_tokens == corpus_tokens} ({gigatoken_tokens:,} vs {corpus_tokens:,})")
    if not same:
        raise SystemExit("the engines wrote different shards")


if __name__ == "__main__":
    main()
