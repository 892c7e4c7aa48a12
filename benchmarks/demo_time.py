"""How long `make demo` takes from a fresh clone, install included, and each of its steps.

Clones the repository (its committed HEAD) into a new folder, runs `make demo` there with a
timestamp on every line it prints, and prints the seconds of each step: the install (venv, torch,
`pip install -e .`), then every command of the demo, then the total. The machine's cores and load
average are printed before and after, since a shared machine makes every figure slower; the README
quotes the quietest run.

    python benchmarks/demo_time.py                 # clone this checkout into a temporary folder
    python benchmarks/demo_time.py --threads 1     # make demo THREADS=1 (a busy machine)
    python benchmarks/demo_time.py --keep          # keep the clone (its .venv and out/) to look at

pip downloads what it needs from the package index (no cache is assumed); torch comes from the
wheel the Makefile pins (`TORCH_SPEC`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"
    except (AttributeError, OSError):
        return "unknown"


def installed(folder: Path) -> str:
    """Whether the optional packages made it into the clone's .venv (they must not)."""
    code = ("import importlib.util as u; print(', '.join(f'{m} ' + ('yes' if u.find_spec(m) else 'no') "
            "for m in ('torch', 'ray', 'transformers', 'pytest', 'hypothesis')))")
    done = subprocess.run([str(folder / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip()


def run_make(folder: Path, args: list[str]) -> tuple[list[tuple[float, str]], int]:
    """`make demo ARGS` in ``folder``: every output line with its time since the start, and the exit status."""
    start = time.perf_counter()
    proc = subprocess.Popen(["make", "demo", *args], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
        print(f"{lines[-1][0]:7.1f}  {lines[-1][1]}", flush=True)
    lines.append((time.perf_counter() - start, ""))
    return lines, proc.wait()


def steps(lines: list[tuple[float, str]]) -> list[tuple[str, float]]:
    """(step, seconds): the install up to the first demo command, then each command make echoed."""
    bin_ = ".venv/bin/"
    starts = [(t, text) for t, text in lines if text.startswith(bin_ + "dataprep ") or text.startswith(bin_ + "python -c \"import datasets")]
    if not starts:
        return [("install (no demo command ran)", lines[-1][0])]
    found = [("install: venv, torch, pip install -e .", starts[0][0])]
    ends = [t for t, _ in starts[1:]] + [lines[-1][0]]
    for (t, text), end in zip(starts, ends):
        found.append((" ".join(text.removeprefix(bin_).split()[:3]), end - t))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="The git repository to clone (default: this checkout).")
    parser.add_argument("--threads", type=int, help="make demo THREADS=N (training threads; default: the cores).")
    parser.add_argument("--keep", action="store_true", help="Keep the clone and print where it is.")
    opts = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="demo-time-")) / "dataprep"
    head = subprocess.run(["git", "-C", str(opts.repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", str(opts.repo), str(folder)], check=True)
    print(f"make demo from a fresh clone of {opts.repo} (HEAD {head}) in {folder}")
    print(f"{cores()} cores; load average at the start {load()}")
    args = [f"THREADS={opts.threads}"] if opts.threads else []
    lines, status = run_make(folder, args)
    verdicts = [text.split(": ", 1)[1] for _, text in lines if text.startswith("verdict: ")]

    print(f"\nseconds  step (from a fresh clone, {cores()} cores{', THREADS=' + str(opts.threads) if opts.threads else ''})")
    for name, seconds in steps(lines):
        print(f"{seconds:7.1f}  {name}")
    print(f"{lines[-1][0]:7.1f}  total: make demo exited {status}; verdicts {', '.join(verdicts) or 'none'}")
    print(f"load average at the end {load()}")
    venv = sum(f.stat().st_size for f in (folder / ".venv").rglob("*") if f.is_file() and not f.is_symlink())
    print(f".venv: {venv / 1e9:.2f} GB; installed: {installed(folder)}")
    if opts.keep:
        print(f"kept: {folder}")
    else:
        shutil.rmtree(folder.parent, ignore_errors=True)
    return 0 if status == 0 and verdicts and all(v == "PASS" for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
