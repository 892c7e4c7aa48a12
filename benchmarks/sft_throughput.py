"""Fine-tuning throughput and packing: dataprep beside padding and TRL on the same pairs.

On ``../shared/bench/pairs50k.jsonl.zst`` (50k prompt/response pairs), in one run:

- dataprep: ``dataprep run`` with the template ``### Prompt:\\n{prompt}\\n\\n### Response:\\n`` +
  ``{response}<|endoftext|>`` (target: the response and its EOS), masks from token offsets, ``bfd``
  at ``seq_len`` 1024 and 2048 (``max_length`` = ``seq_len``, over-long pairs dropped and counted,
  no dedup); examples/s end to end (subprocess: read, template, tokenize, mask, pack, write), once
  per encode engine side by side (``tokenizer.engine: tokenizers``, offsets from ``encode_batch``;
  ``auto``, gigatoken's ids with offsets from their byte lengths where fine-tuning's probe holds,
  :mod:`dataprep.tasks.sft.engine_choice`), with the engine each run's manifest records, the ratio,
  and whether their shards are byte-identical;
- the same bfd 2048 run with the code as it was when #20 was filed (:data:`FILED`, unpacked from git
  history), interleaved with today's, ``--against-filed N`` runs each: #20's "fine-tuning examples/s
  >= 3x today" measured side by side;
- references, from the same examples' lengths (one ``packing: none`` run): one example per row
  padded to ``seq_len``, and padding to the longest of each batch of 8 (input order);
- TRL, when it is installed (``pip install trl``; optional): ``SFTTrainer``'s own dataset
  preparation (add EOS, tokenize prompt and prompt+completion, completion mask, labels) and
  ``pack_dataset`` (``bfd`` and ``wrapped``), timed in this process from an in-memory dataset.

Then the real pair sets (``../shared/data`` via ``recipes/``), packed with ``bfd`` at each ``seq_len``.

Usage::

    python benchmarks/sft_throughput.py                 # 50k pairs + the real sets (~2 min on 2 cores)
    python benchmarks/sft_throughput.py --limit-mb 5    # the first 5 MB of pairs
    python benchmarks/sft_throughput.py --no-trl --no-real
    python benchmarks/sft_throughput.py --no-trl --no-real --workers 1   # no worker processes to start
    python benchmarks/sft_throughput.py --only-against-filed --against-filed 8   # #20's 3x, side by side

Goals: fill >= 99.5% with no token lost (over-long examples dropped by the policy, counted),
examples/s at least TRL's tokenize + pack rate, and >= 3x the examples/s of the code when #20 was filed.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
import types
from pathlib import Path

import numpy as np
import pyarrow as pa

from _bench import PAIRS, REPO, TOKENIZER, WORK, corpus_prefix, dataprep_cmd, machine, measure, write_recipe

PROMPT = "### Prompt:\n{prompt}\n\n### Response:\n"
SEQ_LENS = (1024, 2048)
REAL = ("dialogsum", "alpaca", "chat", "classification")


def pairs_recipe(data: Path, seq_len: int | None) -> dict:
    return {
        "name": "bench-sft",
        "task": "sft",
        "inputs": [{"path": str(data), "fields": {"prompt": "prompt", "response": "response"}}],
        "tokenizer": {"path": str(TOKENIZER)},
        "template": {"name": "bench", "prompt": PROMPT, "response": "{response}"},
        "max_length": seq_len or 1 << 20,  # the unpacked reference keeps every example: its lengths count the drops
        "overflow": "drop",
        "filter": {"dedup": "none"},
        "packing": {"mode": "bfd", "seq_len": seq_len} if seq_len else {"mode": "none"},
        "split": {"validation": 0.0},
    }


def run_dataprep(work: Path, name: str, recipe: Path | dict, overrides: list[str] = ()) -> tuple[dict, float, Path]:
    manifest, measured, out = run_measured(work, name, recipe, overrides)
    return manifest, measured.seconds, out


def run_measured(work: Path, name: str, recipe: Path | dict, overrides: list[str] = (), workers: int | None = None):
    """:func:`run_dataprep`, with the whole measurement (CPU seconds, other processes' share of the machine)."""
    path = recipe if isinstance(recipe, Path) else write_recipe(work / f"{name}.yaml", recipe)
    out = work / f"out-{name}"
    sets = [x for o in overrides for x in ("--set", o)]
    sets += ["--workers", str(workers)] if workers else []
    measured = measure(dataprep_cmd(str(path), "--out", str(out), "--overwrite", *sets))
    return json.loads((out / "manifest.json").read_text()), measured, out


def shard_digest(out: Path) -> str:
    """sha256 over every shard of the dataset, in path order."""
    digest = hashlib.sha256()
    for path in sorted(out.glob("*/*.arrow")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def engine_of(manifest: dict) -> str:
    engine = manifest["tokenizer"].get("engine")
    return "no engine choice recorded (tokenizers)" if engine is None else engine["engine"]


def example_lengths(out: Path) -> np.ndarray:
    """Tokens per example, in input order, from a ``packing: none`` output (one example per row)."""
    state = json.loads((out / "train" / "state.json").read_text())
    tables = [pa.ipc.open_stream(pa.memory_map(str(out / "train" / f["filename"]))).read_all() for f in state["_data_files"]]
    return np.concatenate([t.column("input_ids").combine_chunks().value_lengths().to_numpy() for t in tables])


def padded_fill(lengths: np.ndarray, seq_len: int) -> float:
    kept = lengths[lengths <= seq_len]
    return kept.sum() / (len(kept) * seq_len)


def batch8_fill(lengths: np.ndarray, seq_len: int) -> float:
    kept = lengths[lengths <= seq_len]
    slots = sum(int(kept[i : i + 8].max()) * len(kept[i : i + 8]) for i in range(0, len(kept), 8))
    return kept.sum() / slots


def read_lines(path: Path) -> list[str]:
    import zstandard

    with open(path, "rb") as fh:
        raw = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read() if path.suffix == ".zst" else fh.read()
    return raw.decode("utf-8").splitlines()


def trl_prepare(data: Path, seq_len: int, strategy: str) -> dict | None:
    """TRL's SFTTrainer dataset preparation + pack_dataset, timed from an in-memory dataset."""
    try:
        import datasets
        from transformers import PreTrainedTokenizerFast
        from trl import SFTConfig
        from trl.trainer.sft_trainer import SFTTrainer
    except ImportError:
        return None
    datasets.disable_progress_bars()
    records = [json.loads(line) for line in read_lines(data)]
    dataset = datasets.Dataset.from_dict(
        {"prompt": [PROMPT.format(prompt=r["prompt"]) for r in records], "completion": [r["response"] for r in records]}
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER), eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    args = SFTConfig(output_dir=str(WORK / "trl"), max_length=seq_len, packing=True, packing_strategy=strategy,
                     report_to=[], use_cpu=True, bf16=False)
    trainer = types.SimpleNamespace(_tokenizer=tokenizer, completion_only_loss=True, chat_template=None)  # what _prepare_dataset reads
    started = time.perf_counter()
    packed = SFTTrainer._prepare_dataset(trainer, dataset, tokenizer, args, True, None, "train")
    seconds = time.perf_counter() - started
    lengths = packed.data.column("input_ids").combine_chunks().value_lengths().to_numpy()
    return {"seconds": seconds, "examples": len(records), "rows": len(lengths), "tokens": int(lengths.sum()),
            "fill": lengths.sum() / (len(lengths) * seq_len)}


FILED = "bca6bcd"  # main when #20 was filed (2026-12-04): its goal is fine-tuning examples/s >= 3x this code's
# How a run of one tree of the code is launched: that tree first on sys.path, the editable install's finder gone
BOOT = ("import sys; root = sys.argv.pop(1); sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
        "sys.path.insert(0, root); sys.argv = ['dataprep'] + sys.argv[1:]; import dataprep; "
        "assert dataprep.__file__.startswith(root), dataprep.__file__; from dataprep.cli import main; main()")


def code_at(rev: str, work: Path) -> Path | None:
    """The ``dataprep`` package (and its ``schemas``) as it was at git revision ``rev``, unpacked under ``work`` (None
    without the repository's history)."""
    root = work / f"dataprep-at-{rev}"
    if not (root / "dataprep").is_dir():
        done = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "dataprep", "schemas"], capture_output=True)
        if done.returncode:
            return None
        with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
            tar.extractall(root, filter="data")
    return root


def against_filed(work: Path, data: Path, n: int, repeats: int, workers: int | None) -> None:
    """dataprep now (engine auto) beside the code at :data:`FILED`, bfd 2048, ``repeats`` interleaved
    runs each, launched the same way, both trees byte-compiled first (as an installed package is)."""
    old = code_at(FILED, work)
    if old is None:
        print(f"\nagainst the code when #20 was filed ({FILED}): no git history here, skipped")
        return
    for root in (old, REPO):
        compileall.compile_dir(root / "dataprep", quiet=1)
    seconds: dict[str, list[float]] = {"filed": [], "now": []}
    digests = {}
    for i in range(repeats):
        for name in ("filed", "now") if i % 2 == 0 else ("now", "filed"):
            recipe = pairs_recipe(data, max(SEQ_LENS))
            if name == "now":
                recipe["tokenizer"]["engine"] = "auto"
            path, out = write_recipe(work / f"{name}.yaml", recipe), work / f"out-{name}"
            sets = ["--workers", str(workers)] if workers else []
            cmd = [sys.executable, "-c", BOOT, str(old if name == "filed" else REPO), "-q", "run", str(path),
                   "--out", str(out), "--overwrite", *sets]
            seconds[name].append(measure(cmd).seconds)
            digests[name] = shard_digest(out)
    filed, now = (float(np.median(seconds[k])) for k in ("filed", "now"))
    print(f"\nagainst the code when #20 was filed ({FILED}), bfd {max(SEQ_LENS)}, {repeats} interleaved runs each "
          f"(median; end to end, subprocess):")
    print(f"  {'dataprep at ' + FILED:34} {filed:5.2f} s  {n / filed:7,.0f} examples/s  (runs: "
          f"{', '.join(f'{x:.2f}' for x in seconds['filed'])})")
    print(f"  {'dataprep now, engine auto':34} {now:5.2f} s  {n / now:7,.0f} examples/s  (runs: "
          f"{', '.join(f'{x:.2f}' for x in seconds['now'])})")
    print(f"  {'now / when filed':34} {filed / now:.2f}x examples/s (#20's goal >= 3); shards "
          f"{'byte-identical' if digests['filed'] == digests['now'] else 'DIFFER'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mb", type=float, default=None, help="use the first MB of the pairs (default: all 50k)")
    parser.add_argument("--work", type=Path, default=WORK / "sft")
    parser.add_argument("--no-trl", action="store_true", help="skip TRL even when it is installed")
    parser.add_argument("--no-real", action="store_true", help="skip the real pair sets of ../shared/data")
    parser.add_argument("--workers", type=int, default=None,
                        help="dataprep's --workers for the side-by-side engine runs (default: all cores)")
    parser.add_argument("--against-filed", type=int, default=5, metavar="N",
                        help=f"runs each of the code at {FILED} (when #20 was filed) and now, interleaved (0: skip)")
    parser.add_argument("--only-against-filed", action="store_true", help="only that comparison")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = PAIRS if args.limit_mb is None else corpus_prefix(args.limit_mb, corpus=PAIRS)
    print(f"machine: {machine()}")

    manifest, seconds, out = run_dataprep(args.work, "none", pairs_recipe(data, None))
    lengths = example_lengths(out)
    shutil.rmtree(out)
    n = manifest["counts"]["records_read"]
    print(f"pairs: {data.name}, {n:,} examples, {lengths.sum():,} tokens with template and EOS; "
          f"median {int(np.median(lengths))}, p90 {int(np.percentile(lengths, 90))}, max {lengths.max():,}")
    print(f"\ndataprep, template + tokenize + mask, no packing: {seconds:.1f} s, {n / seconds:,.0f} examples/s")
    if args.against_filed:
        against_filed(args.work, data, n, args.against_filed, args.workers)
    if args.only_against_filed:
        return

    trl_rate = None
    for seq_len in SEQ_LENS:
        runs = {}
        for engine in ("tokenizers", "auto"):  # side by side: the same recipe, each encode engine
            recipe = pairs_recipe(data, seq_len)
            recipe["tokenizer"]["engine"] = engine
            manifest, measured, out = run_measured(args.work, f"bfd{seq_len}-{engine}", recipe, workers=args.workers)
            runs[engine] = (manifest, measured, shard_digest(out))
            shutil.rmtree(out)
        manifest, seconds = runs["auto"][0], runs["auto"][1].seconds
        c = manifest["counts"]
        over = lengths[lengths > seq_len]
        assert c["tokens"] == lengths[lengths <= seq_len].sum(), "bfd lost or added tokens"
        assert sum(c["dropped"].values()) == len(over), f"drops {c['dropped']} vs {len(over)} over-long examples"
        print(f"\nseq_len {seq_len}: {len(over)} over-long examples ({over.sum():,} tokens) dropped by `overflow: drop` and counted")
        for engine, (m, run, _) in runs.items():
            label = f"dataprep bfd, engine {engine}"
            print(f"  {label:34} fill {m['counts']['packing_efficiency']:7.2%}  {m['counts']['rows']['train']:6,} rows  "
                  f"{run.seconds:5.1f} s  {n / run.seconds:7,.0f} examples/s (end to end, subprocess, --workers "
                  f"{args.workers or 'default'}; {run.cpu:.1f} CPU s; "
                  f"others used {run.others:.0%} of the machine; encoded by {engine_of(m)})")
        wall, cpu = (runs["tokenizers"][1].seconds / seconds, runs["tokenizers"][1].cpu / runs["auto"][1].cpu)
        print(f"  {'engine auto / engine tokenizers':34} {wall:.2f}x examples/s, {cpu:.2f}x CPU s per example; "
              f"shards {'byte-identical' if runs['auto'][2] == runs['tokenizers'][2] else 'DIFFER'}")
        print(f"  {'one example per row, padded':34} fill {padded_fill(lengths, seq_len):7.2%}")
        print(f"  {'pad to longest, batches of 8':34} fill {batch8_fill(lengths, seq_len):7.2%}")
        if args.no_trl:
            continue
        for strategy in ("bfd", "wrapped"):
            trl = trl_prepare(data, seq_len, strategy)
            if trl is None:
                print("  TRL: not installed (pip install trl), skipped")
                break
            lost = lengths.sum() - trl["tokens"] if strategy == "bfd" else 0
            print(f"  {'TRL tokenize + pack_dataset ' + strategy:34} fill {trl['fill']:7.2%}  {trl['rows']:6,} rows  "
                  f"{trl['seconds']:5.1f} s  {trl['examples'] / trl['seconds']:7,.0f} examples/s (in process)"
                  + (f"; {lost:,} tokens cut from over-long examples" if strategy == "bfd" else "; examples cut across rows"))
            if strategy == "bfd" and seq_len == max(SEQ_LENS):
                trl_rate = trl["examples"] / trl["seconds"]
    if trl_rate:
        print(f"\ndataprep bfd {max(SEQ_LENS)} (engine auto) / TRL tokenize + bfd pack = {(n / seconds) / trl_rate:.2f}x "
              "examples/s (goal >= 1)")

    if args.no_real:
        return
    print("\nreal pair sets (recipes/, ../shared/data), bfd, end to end:")
    for name in REAL:
        for seq_len in SEQ_LENS:
            sets = ["packing.mode=bfd", f"packing.seq_len={seq_len}", f"max_length={seq_len}", "filter.dedup=none"]
            if name == "classification":
                sets[-2] = "max_length=256"
            manifest, seconds, out = run_dataprep(args.work, f"{name}-{seq_len}", REPO / "recipes" / f"{name}.yaml", sets)
            shutil.rmtree(out)
            c = manifest["counts"]
            dropped = ", ".join(f"{k} {v}" for k, v in c["dropped"].items()) or "none dropped"
            print(f"  {name:15} seq_len {seq_len}: {c['records_read']:6,} examples, fill {c['packing_efficiency']:7.2%}, "
                  f"{seconds:4.1f} s ({c['records_read'] / seconds:6,.0f} examples/s incl. start-up); {dropped}")


if __name__ == "__main__":
    main()
