"""Quality filters (dataprep.text.quality) against a plain-Python reading of each rule.

The oracles below walk one document at a time with ``str.split`` and dicts, written from the
rule's definition (the papers, TFDS's C4 code, datatrove's FineWeb filter), sharing no code with
the vectorized filters; on real text (c4_demo, WikiText, Wikipedia, the multilingual XQuAD
paragraphs, the bench corpus's docs pages) each filter must keep exactly the documents its oracle
keeps and count exactly the reasons it gives. Hand-made documents then hit each rule, and a
near-miss beside each shows the threshold is where the docstring says.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from dataprep.errors import ConfigError
from dataprep.text import quality
from dataprep.text.quality import C4Quality, FineWebQuality, GopherQuality, GopherRepetition

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpora"
BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench" / "corpus.jsonl.zst"


# ---- the oracles: one document at a time, from the rules' definitions --------------------------

def _symbolic(word: str) -> bool:
    return all(unicodedata.category(c)[0] in "PS" for c in word)


def gopher_quality_reason(text: str, f: GopherQuality) -> str | None:
    words = text.split()
    n = max(len(words), 1)
    content = [w for w in words if not _symbolic(w)]
    if len(content) < f.min_words:
        return "gopher_too_few_words"
    if len(content) > f.max_words:
        return "gopher_too_many_words"
    mean = sum(unicodedata.category(c)[0] not in "PS" for w in content for c in w) / max(len(content), 1)
    if mean < f.min_mean_word_length:
        return "gopher_short_words"
    if mean > f.max_mean_word_length:
        return "gopher_long_words"
    if text.count("#") / n > f.max_symbol_word_ratio:
        return "gopher_hash_ratio"
    if (text.count("...") + text.count("…")) / n > f.max_symbol_word_ratio:
        return "gopher_ellipsis_ratio"
    lines = text.split("\n")
    if sum(line.lstrip().startswith(tuple("•‣◦⁃*-")) for line in lines) / len(lines) > f.max_bullet_lines:
        return "gopher_bullet_lines"
    if sum(line.rstrip().endswith(("...", "…")) for line in lines) / len(lines) > f.max_ellipsis_lines:
        return "gopher_ellipsis_lines"
    if sum(any(c.isalpha() for c in w) for w in words) / n < f.min_alpha_words:
        return "gopher_alpha_words"
    ascii_words = set(re.findall(r"[A-Za-z0-9_]+", text))  # the maximal runs a \b...\b match needs
    if len(ascii_words & set(f.stop_words)) < f.min_stop_words:
        return "gopher_stop_words"
    return None


def _repeats(items: list) -> tuple[int, int]:
    seen, count, chars = set(), 0, 0
    for item in items:
        if item in seen:
            count, chars = count + 1, chars + len(item)
        seen.add(item)
    return count, chars


def gopher_repetition_reason(text: str, f: GopherRepetition) -> str | None:
    size = max(len(text), 1)
    paragraphs = re.split(r"\n{2,}", text.strip())
    count, chars = _repeats(paragraphs)
    if count / len(paragraphs) > f.max_dup_para_frac:
        return "gopher_dup_para_frac"
    if chars / size > f.max_dup_para_char_frac:
        return "gopher_dup_para_char_frac"
    lines = [line for line in text.split("\n") if line.strip()]
    count, chars = _repeats(lines)
    if count / max(len(lines), 1) > f.max_dup_line_frac:
        return "gopher_dup_line_frac"
    if chars / size > f.max_dup_line_char_frac:
        return "gopher_dup_line_char_frac"
    words = text.split()
    for n, limit in f.top_ngram_char_frac:
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        if grams:
            gram, count = grams.most_common(1)[0]  # the first seen of the most frequent
            if count >= 2 and count * len(" ".join(gram)) / size > limit:
                return f"gopher_top_{n}gram"
    for n, limit in f.dup_ngram_char_frac:
        covered, seen = [False] * len(words), set()
        for i in range(len(words) - n + 1):
            gram = tuple(words[i : i + n])
            if gram in seen:
                covered[i : i + n] = [True] * n
            seen.add(gram)
        if sum(len(w) for w, c in zip(words, covered) if c) / size > limit:
            return f"gopher_dup_{n}gram"
    return None


POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def c4_reason(text: str, f: C4Quality) -> tuple[str | None, str, Counter]:
    """TFDS's clean_page loop: the reason, the kept lines, the removed non-blank lines by rule."""
    kept, sentences, removed = [], 0, Counter()
    for line in text.split("\n"):
        line = re.sub(r"\[\d*\]|\[edit\]|\[citation needed\]", "", line.strip())
        words, lower = line.split(), line.lower()
        if any(len(w) > f.max_word_length for w in words):
            removed["c4_line_long_word"] += 1
        elif not line.endswith((".", "?", "!", '"')) or line.endswith("..."):
            removed["c4_line_no_terminal_punct"] += bool(line)
        elif len(words) < f.min_words_per_line:
            removed["c4_line_too_few_words"] += 1
        elif "lorem ipsum" in lower:
            return "c4_lorem_ipsum", "", Counter()
        elif "javascript" in lower:
            removed["c4_line_javascript"] += 1
        elif "{" in line:
            return "c4_curly_bracket", "", Counter()
        elif any(p in lower for p in POLICY):
            removed["c4_line_policy"] += 1
        else:
            sentences += max(1, len(re.findall(r"[.!?]+[\"')\]]*(?:\s|$)", line)))
            kept.append(line)
    if sentences < f.min_sentences:
        return "c4_too_few_sentences", "", Counter()
    return None, "\n".join(kept), +removed


def fineweb_reason(text: str, f: FineWebQuality) -> str | None:
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return "empty"
    if sum(line.endswith(tuple(quality.TERMINAL)) for line in lines) / len(lines) < f.min_line_punct_ratio:
        return "fineweb_line_punct"
    if sum(len(line) <= f.short_line_length for line in lines) / len(lines) > f.max_short_line_ratio:
        return "fineweb_short_lines"
    if _repeats(lines)[1] / max(len(text.replace("\n", "")), 1) > f.max_dup_line_char_ratio:
        return "fineweb_dup_line_chars"
    if text.count("\n") / max(len(text.split()), 1) > f.max_newline_word_ratio:
        return "fineweb_list_like"
    return None


ORACLES = {
    GopherQuality: gopher_quality_reason,
    GopherRepetition: gopher_repetition_reason,
    C4Quality: lambda text, f: c4_reason(text, f)[0],
    FineWebQuality: fineweb_reason,
}


# ---- real text ------------------------------------------------------------------------------

def _jsonl(path: Path, field: str = "text") -> list[str]:
    return [json.loads(line)[field] for line in path.open(encoding="utf-8")]


def _wikitext() -> list[str]:
    """WikiText-2 validation, one document per article (a `` = Title = `` line starts one)."""
    text = (DATA / "wikitext2_valid.txt").read_text(encoding="utf-8")
    return [a for a in re.split(r"\n(?= = [^=].* = \n)", text) if a.strip()]


def _bench_docs(limit: int = 800, max_chars: int = 20_000) -> list[str]:
    """The bench corpus's first documents (docs pages, tldr pages in many languages), short ones."""
    import zstandard

    docs = []
    with BENCH.open("rb") as raw:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
        for line in reader:
            text = json.loads(line)["text"]
            if len(text) <= max_chars:
                docs.append(text)
            if len(docs) == limit:
                break
    return docs


CORPORA = {
    "c4_demo": lambda: _jsonl(DATA / "c4_demo.jsonl"),
    "wikitext2": _wikitext,
    "wiki_demo": lambda: (DATA / "wiki_demo.txt").read_text(encoding="utf-8").split("\n"),
    "xquad": lambda: _jsonl(DATA / "multilingual" / "xquad_contexts.jsonl"),
    "bench": _bench_docs,
}


@pytest.fixture(scope="module", params=sorted(CORPORA))
def corpus(request) -> list[str]:
    return CORPORA[request.param]()


def run(f, texts: list[str]) -> tuple[list[bool], Counter, list[str], Counter]:
    drops, lines = Counter(), Counter()
    keep, kept = f(pa.array(texts, pa.string()), drops, lines)
    return keep.tolist(), drops, kept.filter(pa.array(keep)).to_pylist(), lines


@pytest.mark.parametrize("cls", list(ORACLES), ids=lambda c: c.__name__)
def test_each_filter_keeps_what_its_oracle_keeps_on_real_text(corpus, cls):
    f = cls()
    keep, drops, _, _ = run(f, corpus)
    reasons = [ORACLES[cls](text, f) for text in corpus]
    assert keep == [r is None for r in reasons]
    assert drops == Counter(r for r in reasons if r is not None)


def test_c4_rewrites_documents_and_counts_lines_as_its_oracle_does(corpus):
    f = C4Quality()
    _, _, kept, lines = run(f, corpus)
    expected = [c4_reason(text, f) for text in corpus]
    assert kept == [text for reason, text, _ in expected if reason is None]
    assert lines == sum((removed for _, _, removed in expected), Counter())


def test_the_oracle_comparison_fails_on_other_thresholds():
    """The proof above can fail: a filter one threshold away disagrees with the oracle."""
    docs = CORPORA["c4_demo"]()
    for f, other in [(GopherQuality(), GopherQuality(min_words=40)),
                     (GopherRepetition(), GopherRepetition(top_ngram_char_frac=((2, 0.1),))),
                     (C4Quality(), C4Quality(min_sentences=5)),
                     (FineWebQuality(), FineWebQuality(max_newline_word_ratio=0.05))]:
        oracle = ORACLES[type(f)]
        assert run(other, docs)[0] != [oracle(t, f) is None for t in docs], type(f).__name__


def test_c4_keeps_all_of_c4_and_datatroves_defaults_would_not():
    """c4_demo is C4 output: C4's own rules (3 sentences, 5 words a line) drop none of it, and
    remove no line; datatrove's defaults (5 sentences, 3 words) drop some."""
    docs = CORPORA["c4_demo"]()
    keep, drops, kept, lines = run(C4Quality(), docs)
    assert all(keep) and kept == [text.strip() for text in docs] and lines == Counter()
    keep, drops, _, _ = run(C4Quality(min_sentences=5, min_words_per_line=3), docs)
    assert not all(keep) and set(drops) == {"c4_too_few_sentences"}


def test_documents_in_one_batch_are_not_repeats_of_each_other():
    docs = [t for t in CORPORA["c4_demo"]() if gopher_repetition_reason(t, GopherRepetition()) is None][:20]
    keep, drops, _, _ = run(GopherRepetition(), docs + docs)
    assert all(keep) and drops == Counter()
    keep, _, _, _ = run(FineWebQuality(), docs + docs)
    assert keep == run(FineWebQuality(), docs)[0] * 2


# ---- hand-made documents, one rule each ---------------------------------------------------------

SENTENCES = [
    "The river runs past the old mill and into the valley below.",
    "Farmers bring their grain to the market every Thursday morning.",
    "Children walk along the path to school with their friends.",
    "A small bakery sells fresh bread that smells of butter and honey.",
    "Visitors often stop at the bridge to watch the boats drift by.",
    "In winter the hills turn white and the roads become quiet.",
    "Local musicians play in the square during the summer festival.",
    "Historians say the town was founded by traders from the coast.",
]
PROSE = "\n".join(SENTENCES)  # 86 words, 8 lines, passes every filter


def reason(f, text: str) -> str | None:
    _, drops, _, _ = run(f, [text])
    assert sum(drops.values()) <= 1
    return next(iter(drops), None)


def test_the_prose_passes_every_filter():
    for cls, oracle in ORACLES.items():
        assert reason(cls(), PROSE) is None and oracle(PROSE, cls()) is None, cls.__name__


def _words(n: int) -> str:
    return " ".join(PROSE.split()[:n])


@pytest.mark.parametrize("text, expected", [
    (_words(49), "gopher_too_few_words"),
    (_words(50), None),
    ("We go to be or do it as we go up and so on to me. " * 8, "gopher_short_words"),
    (" ".join(["the internationalization and characterization responsibilities"] * 20), "gopher_long_words"),
    (PROSE + " #tag" * 9, None),  # 9 per 95 words: under 0.1
    (PROSE + " #tag" * 10, "gopher_hash_ratio"),
    (PROSE + " and so on..." * 12, None),  # 12 per 122 words
    (PROSE + " and so on..." * 13, "gopher_ellipsis_ratio"),  # 13 per 125
    ("\n".join("- " + s for s in SENTENCES * 2), "gopher_bullet_lines"),
    ("\n".join(("- " if i > 1 else "") + s for i, s in enumerate(SENTENCES * 2)), None),  # 14 of 16 lines
    ("\n".join(s[:-1] + ("…" if i % 2 else ".") for i, s in enumerate(SENTENCES)), "gopher_ellipsis_lines"),
    ("\n".join(s[:-1] + ("…" if i in (0, 1) else ".") for i, s in enumerate(SENTENCES)), None),  # 2 of 8
    (PROSE + " 1234 5678 9012" * 8, "gopher_alpha_words"),
    (re.sub(r"\b(the|and|to|of|with|that|have|be)\b", "a", PROSE), "gopher_stop_words"),
    (re.sub(r"\b(to|of|with|that|have|be)\b", "a", PROSE), None),  # "the" and "and" are left
    (re.sub(r"\b(and|to|of|with|that|have|be)\b", "a", PROSE).replace("the", "The"), "gopher_stop_words"),
])
def test_gopher_quality_rules(text, expected):
    assert reason(GopherQuality(), text) == expected
    assert gopher_quality_reason(text, GopherQuality()) == expected


LINES_ONLY = GopherRepetition(top_ngram_char_frac=(), dup_ngram_char_frac=())  # one rule group at a time
TOP2_ONLY = replace(LINES_ONLY, top_ngram_char_frac=((2, 0.2),))


@pytest.mark.parametrize("f, text, expected", [
    (LINES_ONLY, "\n\n".join(SENTENCES[:3] + SENTENCES[:2]), "gopher_dup_para_frac"),  # 2 of 5 repeat
    (LINES_ONLY, "\n\n".join(SENTENCES + SENTENCES[:2]), None),  # 2 of 10: 0.2; their characters 0.19
    (LINES_ONLY, "\n\n".join(SENTENCES + SENTENCES[:3]), "gopher_dup_para_char_frac"),  # 3 of 11: chars 0.28
    (LINES_ONLY, "\n".join(SENTENCES + SENTENCES[:3]), "gopher_dup_line_char_frac"),
    (LINES_ONLY, "\n".join(SENTENCES + SENTENCES[:2] + [" ", ""]), None),  # blank lines are no repeats
    (TOP2_ONLY, PROSE + "\n" + " ".join(["sunny weather"] * 10), "gopher_top_2gram"),  # 130 of 636 chars
    (TOP2_ONLY, PROSE + "\n" + " ".join(["sunny weather"] * 9), None),  # 117 of 622
    (GopherRepetition(), PROSE + "\n" + " ".join(["sunny weather"] * 9), "gopher_top_3gram"),  # 5 x 19 of 622
    (GopherRepetition(), PROSE + "\n" + "the river runs past the old mill " * 4, "gopher_dup_5gram"),
    (GopherRepetition(), PROSE + "\nthe river runs past the old mill", None),  # 23 of 551 chars, under 0.15
])
def test_gopher_repetition_rules(f, text, expected):
    assert reason(f, text) == expected
    assert gopher_repetition_reason(text, f) == expected


def test_c4_drops_lines_and_rewrites_the_document():
    text = "\n".join([
        "  " + SENTENCES[0] + "[3]  ",          # stripped, citation removed: kept
        "Please enable JavaScript to view the comments below.",
        "Home | About | Contact",                # no terminal mark
        "Read more.",                             # under 5 words
        "By using this site you agree to our Privacy Policy and terms.",
        "",
        SENTENCES[1] + " It opens early. Prices vary.",
        "if (x) { return } with no end mark",    # a brace on a line removed before the brace check
    ])
    f, lines = C4Quality(), Counter()
    keep, kept = f(pa.array([text]), Counter(), lines)
    assert keep.tolist() == [True]
    assert kept.to_pylist() == [SENTENCES[0] + "\n" + SENTENCES[1] + " It opens early. Prices vary."]
    assert lines == Counter({"c4_line_javascript": 1, "c4_line_no_terminal_punct": 2,
                             "c4_line_too_few_words": 1, "c4_line_policy": 1})


@pytest.mark.parametrize("text, expected", [
    (PROSE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", "c4_lorem_ipsum"),
    (PROSE + "\nThe function returns {x} when it is called twice.", "c4_curly_bracket"),
    (SENTENCES[0] + "\n" + SENTENCES[1], "c4_too_few_sentences"),
    ("\n".join(SENTENCES[:3]), None),
    ("\n".join(SENTENCES[:3]).replace(".", "..."), "c4_too_few_sentences"),  # ellipses end nothing
])
def test_c4_document_rules(text, expected):
    assert reason(C4Quality(), text) == expected
    assert c4_reason(text, C4Quality())[0] == expected


@pytest.mark.parametrize("text, expected", [
    ("\n".join(s.rstrip(".") for s in SENTENCES), "fineweb_line_punct"),
    ("\n".join(s.rstrip(".") if i else s for i, s in enumerate(SENTENCES)), None),  # 1 of 8: 0.125
    ("\n".join(["Short line one.", "Another one here.", "And a third."] * 3 + SENTENCES[:4]), "fineweb_short_lines"),
    (PROSE + "\n" + SENTENCES[3], "fineweb_dup_line_chars"),
    ("\n".join(f"{'x' * 31}{i:02d}." for i in range(30)) + "\n" + PROSE, "fineweb_list_like"),  # 37 / 118 words
    ("\n".join(f"{'x' * 31}{i:02d}." for i in range(27)) + "\n" + PROSE, None),  # 34 newlines / 115 words
    ("  \n\t\n", "empty"),
])
def test_fineweb_rules(text, expected):
    assert reason(FineWebQuality(), text) == expected
    assert fineweb_reason(text, FineWebQuality()) == expected


# ---- configuration and the chain ----------------------------------------------------------------

def test_quality_filters_builds_in_run_order_with_overrides():
    filters = quality.quality_filters({"fineweb": True, "c4": {"min_sentences": 5}, "gopher_quality": {},
                                       "gopher_repetition": False})
    assert filters == (GopherQuality(), C4Quality(min_sentences=5), FineWebQuality())
    with pytest.raises(ConfigError, match="unknown filter 'gopher'") as err:
        quality.quality_filters({"gopher": True})
    assert "gopher_quality" in err.value.explain()[1]
    with pytest.raises(ConfigError, match=r"filter.quality.c4: unknown option 'min_sentence'"):
        quality.quality_filters({"c4": {"min_sentence": 2}})


def test_apply_quality_counts_each_document_once_under_the_first_filter_that_drops_it():
    docs = [PROSE, _words(20), PROSE + "\n" + " ".join(["sunny weather"] * 30),
            PROSE + "\nNot a sentence", PROSE.replace("\n", "\n\n")]
    drops, lines = Counter(), Counter()
    keep, kept = quality.apply_quality(pa.array(docs), quality.quality_filters(dict.fromkeys(quality.FILTERS, True)),
                                       drops, lines)
    assert keep.tolist() == [True, False, False, True, True]
    assert kept.to_pylist() == [PROSE, PROSE, PROSE]  # C4 removed the unterminated line and blank lines
    # _words(20) fails gopher_quality and c4 too: counted once, under the first filter to run
    assert drops == Counter({"gopher_too_few_words": 1, "gopher_top_2gram": 1})
    assert lines == Counter({"c4_line_no_terminal_punct": 1})
    assert replace(C4Quality(), min_sentences=3) == C4Quality()


# ---- the recipe schema for filter.quality (for the lead to put in schemas/recipe.schema.json) ----

def _number(default: float, description: str, **limits) -> dict:
    return {"type": "number", "minimum": 0, **limits, "default": default, "description": description}


def _integer(default: int, description: str) -> dict:
    return {"type": "integer", "minimum": 0, "default": default, "description": description}


def _ngram_limits(default: list, description: str) -> dict:
    pair = {"type": "array", "prefixItems": [{"type": "integer", "minimum": 1}, {"type": "number", "minimum": 0}],
            "minItems": 2, "maxItems": 2}
    return {"type": "array", "items": pair, "default": default, "description": description}


def _flag(description: str) -> dict:
    return {"type": "boolean", "default": True, "description": description}


def _one_filter(description: str, properties: dict) -> dict:
    return {"description": description, "oneOf": [
        {"type": "boolean"}, {"type": "object", "additionalProperties": False, "properties": properties}]}


QUALITY_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "description": "Quality filters (dataprep/text/quality.py), each run on the documents the earlier ones kept, "
                   "in the order below (FineWeb's): true for the published thresholds, an object to change some, "
                   "false or absent for off. Each drop is counted under its rule (gopher_*, c4_*, fineweb_*).",
    "properties": {
        "gopher_repetition": _one_filter("Gopher's repetition rules (Rae et al. 2021, table A1).", {
            "max_dup_line_frac": _number(0.3, "Share of non-blank lines repeating an earlier one.", maximum=1),
            "max_dup_para_frac": _number(0.3, "Share of paragraphs repeating an earlier one.", maximum=1),
            "max_dup_line_char_frac": _number(0.2, "Share of characters in repeated lines.", maximum=1),
            "max_dup_para_char_frac": _number(0.2, "Share of characters in repeated paragraphs.", maximum=1),
            "top_ngram_char_frac": _ngram_limits(
                [[2, 0.2], [3, 0.18], [4, 0.16]], "[n, limit]: characters of the most frequent word n-gram times "
                "its count, over the document's."),
            "dup_ngram_char_frac": _ngram_limits(
                [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.1]],
                "[n, limit]: characters of words inside repeated n-grams, over the document's."),
        }),
        "gopher_quality": _one_filter("Gopher's quality rules (Rae et al. 2021, appendix A.1.1).", {
            "min_words": _integer(50, "Fewest words (words of punctuation only do not count)."),
            "max_words": _integer(100000, "Most words."),
            "min_mean_word_length": _number(3.0, "Shortest mean word length (letters and digits)."),
            "max_mean_word_length": _number(10.0, "Longest mean word length."),
            "max_symbol_word_ratio": _number(0.1, "Most '#', and most ellipses, per word."),
            "max_bullet_lines": _number(0.9, "Most lines starting with a bullet.", maximum=1),
            "max_ellipsis_lines": _number(0.3, "Most lines ending in an ellipsis.", maximum=1),
            "min_alpha_words": _number(0.8, "Fewest words holding a letter.", maximum=1),
            "min_stop_words": _integer(2, "Fewest distinct stop words present."),
            "stop_words": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                           "default": list(quality.STOP_WORDS), "description": "Whole lower-case words."},
        }),
        "c4": _one_filter("C4's rules (Raffel et al. 2020) with TFDS's values; rewrites kept documents to their "
                          "kept lines.", {
            "min_sentences": _integer(3, "Fewest sentences in the kept lines, else the document is dropped."),
            "min_words_per_line": _integer(5, "Lines with fewer words are removed."),
            "max_word_length": _integer(1000, "Lines with a longer word are removed."),
            "remove_citations": _flag("Remove [1], [edit], [citation needed] from lines."),
            "drop_unterminated_lines": _flag("Remove lines not ending in . ? ! or \"."),
            "lorem_ipsum": _flag("Drop documents saying lorem ipsum."),
            "javascript": _flag("Remove lines mentioning javascript."),
            "curly_bracket": _flag("Drop documents with a { in a kept line."),
            "policy": _flag("Remove privacy-policy, cookie and terms-of-use lines."),
        }),
        "fineweb": _one_filter("FineWeb's line rules (Penedo et al. 2024; datatrove's FineWebQualityFilter).", {
            "min_line_punct_ratio": _number(0.12, "Fewest non-blank lines ending in terminal punctuation.", maximum=1),
            "max_short_line_ratio": _number(0.67, "Most non-blank lines of short_line_length or fewer characters.",
                                            maximum=1),
            "short_line_length": _integer(30, "What a short line is, in characters."),
            "max_dup_line_char_ratio": _number(0.01, "Most characters in lines repeating an earlier one.", maximum=1),
            "max_newline_word_ratio": _number(0.3, "Most newlines per word (a list, not prose)."),
        }),
    },
}


def test_the_schema_snippet_names_every_threshold_with_the_dataclass_default():
    import jsonschema
    from dataclasses import fields

    for name, cls in quality.FILTERS.items():
        properties = QUALITY_SCHEMA["properties"][name]["oneOf"][1]["properties"]
        assert list(properties) == [f.name for f in fields(cls)], name
        defaults = {key: spec["default"] for key, spec in properties.items()}
        assert quality.quality_filters({name: json.loads(json.dumps(defaults))}) == (cls(),)  # JSON lists: tuples
        assert hash(quality.quality_filters({name: defaults})[0]) == hash(cls())
    validator = jsonschema.Draft202012Validator(QUALITY_SCHEMA)
    assert not list(validator.iter_errors({"c4": {"min_sentences": 5}, "fineweb": True, "gopher_quality": False}))
    assert list(validator.iter_errors({"c4": {"min_sentence": 5}}))
    assert list(validator.iter_errors({"gopher": True}))
    assert list(validator.iter_errors({"gopher_repetition": {"top_ngram_char_frac": [[2]]}}))
