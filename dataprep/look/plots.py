"""The report's plots, drawn with matplotlib's object API (no pyplot, no global state, no display).

Each function takes the numbers :func:`dataprep.look.stats.compute` gathered and returns PNG bytes.
Histograms are binned with numpy first and drawn as a few hundred bars at most, so a plot of
a million examples costs what a plot of a hundred does.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from dataprep.look.stats import Stats

SIZE = (8, 4)  # inches; at DPI 100 -> 800 x 400 px
DPI = 100
BINS = 60
COLORS = {"train": "#1f77b4", "validation": "#ff7f0e", "prompt": "#7f7f7f", "response": "#2ca02c"}
MAX_BARS = 25


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # no Software/URL text chunk: the report must not name any external address
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _figure(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _hist(ax, series: dict[str, np.ndarray], *, upper: float | None = None, integer: bool = True) -> None:
    """Overlaid histograms over shared bins, each as a share of its own series (splits differ in size).

    Bins are computed once with numpy; a long tail (max > 50 x median) gets log-spaced bins.
    """
    data = [v for v in series.values() if len(v)]
    if not data:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    hi = upper if upper is not None else max(float(v.max()) for v in data)
    lo = min(0.0, min(float(v.min()) for v in data))
    median = float(np.median(np.concatenate(data)))
    if integer and lo >= 0 and hi > 50 * max(median, 1.0):
        edges = np.unique(np.round(np.geomspace(1, hi + 1, BINS + 1))) - 0.5
        edges = np.concatenate(([-0.5], edges[edges > -0.5]))
        ax.set_xscale("symlog", linthresh=1)
    elif integer:
        width = max(1, int(np.ceil((hi - lo + 1) / BINS)))
        edges = np.arange(lo, hi + width + 1, width) - 0.5
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        edges = np.linspace(lo, max(hi, lo + 1e-9), BINS + 1)
    for name, values in series.items():
        if len(values):
            counts, _ = np.histogram(values, bins=edges)
            share = 100.0 * counts / len(values)
            ax.stairs(share, edges, label=f"{name} (n={len(values):,})", fill=True, alpha=0.45, color=COLORS.get(name))
    ax.set_ylabel(f"% of {ax.get_ylabel() or 'values'}")
    ax.legend()


def lengths(report: Stats) -> bytes:
    s = report.summary
    if s["documents_are"] == "examples":
        fig, ax = _figure("Example lengths: prompt vs response (target) tokens", "tokens", "examples")
        prompt = np.concatenate([a.lengths - a.targets for a in report.arrays.values()]) if report.arrays else np.zeros(0)
        response = np.concatenate([a.targets for a in report.arrays.values()]) if report.arrays else np.zeros(0)
        _hist(ax, {"prompt": prompt, "response": response})
    else:
        what = {"eos_delimited": "Document lengths", "pieces": "Document piece lengths"}[s["documents_are"]]
        fig, ax = _figure(f"{what} (tokens)", "tokens", "documents")
        _hist(ax, {split: a.lengths for split, a in report.arrays.items()})
    return _png(fig)


def targets(report: Stats) -> bytes:
    fig, ax = _figure("Target tokens per example", "target tokens", "examples")
    _hist(ax, {split: a.targets for split, a in report.arrays.items() if a.targets is not None})
    return _png(fig)


def fill(report: Stats) -> bytes:
    eff = report.summary["total"]["efficiency"]
    fig, ax = _figure(f"Row fill (content / seq_len); packing efficiency {eff:.1%}", "fill", "rows")
    _hist(ax, {split: a.fill for split, a in report.arrays.items()}, upper=1.0, integer=False)
    ax.axvline(eff, color="black", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1.02)
    return _png(fig)


def drops(report: Stats) -> bytes:
    s = report.summary
    bars = {f"dropped: {k}": v for k, v in s["records"]["dropped"].items()}
    if s["truncated"]["examples"]:
        bars["truncated (prompt cut)"] = s["truncated"]["examples"]
    fig, ax = _figure("Records dropped and truncated, by reason", "records", "")
    _barh(ax, bars, empty="no records dropped or truncated")
    return _png(fig)


def sources(report: Stats) -> bytes:
    items = report.summary["sources"]
    have_tokens = items and all(i.get("tokens") is not None for i in items)
    key, label = ("tokens", "tokens written") if have_tokens else ("bytes", "input bytes (tokens per source not in this manifest)")
    names = _short_names([str(i["path"]) for i in items])
    fig, ax = _figure(f"Per source file: {label}", key, "")
    _barh(ax, {n: int(i.get(key) or 0) for n, i in zip(names, items)}, empty="no inputs")
    return _png(fig)


def _barh(ax, bars: dict[str, int], *, empty: str) -> None:
    if not bars:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
        return
    items = sorted(bars.items(), key=lambda kv: -kv[1])
    if len(items) > MAX_BARS:
        rest = sum(v for _, v in items[MAX_BARS - 1 :])
        items = items[: MAX_BARS - 1] + [(f"{len(bars) - MAX_BARS + 1} others", rest)]
    labels, values = zip(*reversed(items))
    ax.barh(range(len(values)), values, color="#1f77b4")
    ax.set_yticks(range(len(values)), labels)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,}", va="center")
    ax.margins(x=0.15)


def _short_names(paths: list[str]) -> list[str]:
    """File names, with parent folders added only where names repeat."""
    names = [Path(p).name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(Path(*Path(p).parts[-2:])) for p in paths]


def draw_all(report: Stats) -> dict[str, bytes]:
    """Every plot that applies to the dataset, by file name, in report order."""
    images = {"lengths.png": lengths(report)}
    if report.summary["documents_are"] == "examples":
        images["targets.png"] = targets(report)
    images["fill.png"] = fill(report)
    images["drops.png"] = drops(report)
    images["sources.png"] = sources(report)
    return images
