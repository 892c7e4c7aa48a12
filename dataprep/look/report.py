"""``dataprep report``: a dataset's numbers (:mod:`dataprep.look.stats`) as text, JSON, or ``report.html``
with its plots (:mod:`dataprep.look.plots`) embedded and saved as PNGs."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from dataprep.errors import OutputError
from dataprep.look.stats import Stats, compute

__all__ = ["REPORT_FILE", "compute", "summary_text", "summary_rows", "filter_tables", "write_report", "render_html"]

REPORT_FILE = "report.html"


def summary_text(summary: dict[str, Any]) -> str:
    """The summary table as aligned text (the terminal's version of the HTML's top table), then the
    filters section's tables when the run dropped or redacted anything."""
    lines = [f"{k:<22} {v}" for k, v in summary_rows(summary)]
    for title, (head, body) in filter_tables(summary.get("filters")).items():
        widths = [max(len(row[c]) for row in [head, *body]) for c in range(len(head))]
        numeric = [all(_NUMBER.fullmatch(row[c]) for row in body) for c in range(len(head))]
        lines += ["", title] + ["  " + "  ".join(cell.rjust(w) if right else cell.ljust(w)
                                                 for cell, w, right in zip(row, widths, numeric)).rstrip()
                                for row in ([head, *body] if title != OTHER else body)]
    return "\n".join(lines)


_NUMBER = re.compile(r"[\d,.%?]+")
REASONS, INPUTS, OTHER = "filters: records dropped per reason", "filters: per input", "filters: also"
LANGUAGES, MIXTURE = "languages written", "mixture: per source and split"
DECONTAMINATION = "decontamination: per evaluation set (each match in contamination.jsonl)"
EXAMPLES = "filters: the first documents each reason dropped"


def filter_tables(f: dict[str, Any] | None) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The filters section (:func:`dataprep.look.stats.filters_section`) as tables of text cells,
    ``{title: (header, rows)}``: per reason within its group (with each group's total), per input
    (dropped per group), then near-duplicate clusters and redactions. Empty when nothing was dropped
    or redacted."""
    if not f or not (f["dropped"] or any((f["redacted"] or {}).values()) or f.get("languages") or f.get("mixture")
                      or f.get("decontamination") or f.get("mojibake_fixed")):
        return {}
    tables = {}
    if f["dropped"]:
        rows = []
        for g in f["groups"]:
            rows += [[g["group"], r["reason"], f"{r['records']:,}", _share(r["share"])] for r in g["reasons"]]
            if len(g["reasons"]) > 1:
                rows.append([g["group"], "(all)", f"{g['records']:,}", _share(g["share"])])
        rows.append(["all", f"of {_n(f['records_read'])} read", f"{f['dropped']:,}", _share(f["share"])])
        tables[REASONS] = (["group", "reason", "records", "share"], rows)
        groups = [g["group"] for g in f["groups"]]
        tables[INPUTS] = (["input", "read", "dropped", "share", *groups],
                          [[i["path"], _n(i["records_read"]), f"{i['dropped']:,}", _share(i["share"]),
                            *(f"{i['groups'].get(g, 0):,}" for g in groups)] for i in f["inputs"]])
    other = []
    if (near := f["near_duplicates"]) is not None:
        other.append(["near-duplicates", f"{near['documents']:,} dropped in {near['clusters']:,} clusters (largest "
                      f"{near['largest_cluster']:,} documents), {near['candidates_rejected']:,} band candidates rejected"])
    if f["redacted"] is not None:
        other.append(["redacted", ", ".join(f"{kind} {n:,}" for kind, n in f["redacted"].items()) + " (placeholders written)"])
    if f.get("mojibake_fixed") is not None:
        other.append(["mojibake fixed", f"{f['mojibake_fixed']:,} documents written (ftfy.fix_encoding)"])
    if other:
        tables[OTHER] = (["what", "count"], other)
    if f.get("languages"):
        tables[LANGUAGES] = (["language", "documents", "tokens", "share of tokens"],
                             [[r["language"], f"{r['documents']:,}", f"{r['tokens']:,}", _share(r["share"])] for r in f["languages"]])
    if f.get("examples"):
        tables[EXAMPLES] = (["reason", "document", "text (normalized, cut short)"],
                            [[reason, e["document"], e["text"]] for reason, shown in f["examples"].items() for e in shown])
    if f.get("decontamination"):
        d = f["decontamination"]
        tables[DECONTAMINATION] = (["evaluation set", "items", "short items", f"{d['ngram']}-grams", "documents dropped"], [
            [name, f"{c['items']:,}", f"{c['short_items']:,}", f"{c['ngrams']:,}", f"{c['documents']:,}"]
            for name, c in d["sets"].items()])
    if f.get("mixture"):
        tables[MIXTURE] = (["source", "split", "asked", "share", "epochs", "documents", "written", "tokens"], [
            [source["name"], split, _share(d["requested_share"]), _share(d["share"]), f"{d['epochs']:.2f}",
             f"{d['documents']:,} of {d['available_documents']:,}", f"{d['occurrences']:,}", f"{d['tokens']:,}"]
            for source in f["mixture"]["sources"] for split in ("train", "validation") for d in [source[split]]])
    return tables


def _share(x: float | None) -> str:
    return "?" if x is None else f"{x:.2%}"


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    rec, tot = s["records"], s["total"]
    dropped = f"{rec['dropped_total']:,} dropped" + (" (per reason and input: the filters tables)" if rec["dropped_total"] else "")
    head = [
        ("dataset", f"{s['dataset']} ({s['task']}, {s['name'] or 'unnamed'})"),
        ("records", f"{_n(rec['read'])} read, {_n(rec['written'])} written, {dropped}"),
    ]
    if "preference" in s:
        return head + _pair_rows(s) + _tail_rows(s)
    rows = head + [
        ("rows", ", ".join(f"{k} {v['rows']:,}" for k, v in s["splits"].items()) + f" (seq_len {s['seq_len']:,}, {s['packing']})"),
        (
            "examples" if s["documents_are"] == "examples" else "documents",
            ", ".join(f"{k} {v['documents']:,}" for k, v in s["splits"].items()),
        ),
        ("tokens", f"{tot['tokens']:,} ({tot['pad_tokens']:,} pad)"),
        ("packing efficiency", f"{tot['efficiency']:.2%}"),
    ]
    if s["documents_are"] == "examples":
        rows.append(("target tokens", f"{tot['target_tokens']:,} ({tot['target_ratio']:.2%} of tokens)"))
        rows.append(("truncated", f"{s['truncated']['examples']:,} examples ({s['truncated']['tokens']:,} tokens)"))
        rows.append(("boundary straddles", f"{s['boundary_straddles']:,} examples"))
    elif s["remainder_tokens_dropped"]:
        rows.append(("remainder dropped", f"{s['remainder_tokens_dropped']:,} tokens"))
    for split, v in s["splits"].items():
        length = v["length"]
        rows.append((f"{split} lengths", f"mean {length['mean']:,.1f}, p50 {length['p50']:,}, p99 {length['p99']:,}, max {length['max']:,}"))
    return rows + _tail_rows(s)


def _pair_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """A preference dataset's pairs (KTO: examples) and what they hold; no packing (one pair per row)."""
    p, kto = s["preference"], s["preference"]["shape"] == "kto"
    pairs = sum(v["rows"] for v in s["splits"].values())
    rows = [("examples" if kto else "pairs", ", ".join(f"{k} {v['rows']:,}" for k, v in s["splits"].items())
             + f" (one per row, max_length {s['seq_len']:,})")]
    if kto:
        rows.append(("tokens", f"{s['total']['tokens']:,}: prompts {p['prompt_tokens']:,}, completions {p['completion_tokens']:,}"))
        rows.append(("labels", f"desirable {p['desirable']:,}, undesirable {p['undesirable']:,}"))
    else:
        rows.append(("tokens", f"{s['total']['tokens']:,}: prompts {p['prompt_tokens']:,} (each once), chosen "
                     f"{p['chosen_tokens']:,}, rejected {p['rejected_tokens']:,}"))
        rows.append(("chosen longer", f"{p['chosen_longer']:,} of {pairs:,} pairs ({p['chosen_longer'] / max(pairs, 1):.1%})"))
    rows.append(("boundary", f"{p['boundary']} ({p['boundary_cuts']:,} pairs cut)"))
    rows.append(("truncated", f"{s['truncated']['examples']:,} pairs ({s['truncated']['tokens']:,} prompt tokens)"))
    return rows


def _tail_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if "unknown_tokens" in s:
        rows += _unknown_rows(s["unknown_tokens"])
    tok = s["tokenizer"]
    rows.append(("tokenizer", f"{tok['source']} (vocab {tok['vocab_size']:,})"))
    rows.append(("recipe hash", str(s["recipe_hash"])))
    for problem in s["mismatches"]:
        rows.append(("MISMATCH", problem))
    return rows


def _unknown_rows(u: dict[str, Any]) -> list[tuple[str, str]]:
    """``unknown tokens  train 3 (0.0100%), validation 0 (0.0000%); id 2 '<unk>'`` and one row per input."""
    def count(n: int | None, share: float | None) -> str:
        return "?" if n is None else f"{n:,}" + ("" if share is None else f" ({share:.4%})")

    rows = [("unknown tokens", ", ".join(f"{k} {count(v['count'], v['share'])}" for k, v in u["splits"].items()) + f"; id {u['id']} {u['token']!r}")]
    rows += [("  from input", f"{i['path']}: {count(i['count'], i['share'])}") for i in u["inputs"] if i["count"] is not None]
    return rows


def _n(x: int | None) -> str:
    return "?" if x is None else f"{x:,}"


# --- files -----------------------------------------------------------------------------


def write_report(report: Stats, out: str | Path) -> Path:
    """Write the PNGs and ``report.html`` (PNGs embedded as base64, nothing fetched) into ``out``.

    Returns:
        The HTML file's path.

    Raises:
        OutputError: ``out`` cannot be written.
    """
    from dataprep.look.plots import draw_all

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        images = draw_all(report)
        for name, png in images.items():
            (out / name).write_bytes(png)
        page = out / REPORT_FILE
        page.write_text(render_html(report.summary, images), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the report ({exc.strerror or exc}); choose another --out") from exc
    return page


def render_html(summary: dict[str, Any], images: dict[str, bytes]) -> str:
    """One self-contained page: the summary table, a per-split table, then every plot inline."""
    esc = html.escape
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary_rows(summary))
    columns = ["rows", "documents", "tokens", "pad_tokens", "target_tokens", "efficiency"]
    if "unknown_tokens" in summary:
        columns.insert(-1, "unknown_tokens")
    head = "".join(f"<th>{esc(c)}</th>" for c in ["split", *columns])
    body = "".join(
        "<tr><td>" + esc(split) + "</td>" + "".join(f"<td>{esc(_cell(v.get(c)))}</td>" for c in columns) + "</tr>"
        for split, v in summary["splits"].items()
    )
    figures = "".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{esc(name)}</figcaption></figure>"
        for name, png in images.items()
    )
    filters = "".join(
        f"<h3>{esc(title)}</h3><table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in head) + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in body) + "</table>"
        for title, (head, body) in filter_tables(summary.get("filters")).items()
    )
    filters = f"<h2>Filters</h2>{filters}" if filters else ""
    numbers = esc(json.dumps(summary, indent=2))
    title = esc(f"dataprep report: {summary['name'] or summary['dataset']}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
figure {{ display: inline-block; margin: 0.5em; }}
img {{ max-width: 100%; }}
details pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; }}
</style></head>
<body>
<h1>{title}</h1>
<table>{table}</table>
<h2>Splits</h2>
<table><tr>{head}</tr>{body}</table>
{filters}
<h2>Plots</h2>
{figures}
<details><summary>All numbers (JSON)</summary><pre>{numbers}</pre></details>
</body></html>
"""


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.2%}"
    return f"{v:,}"
