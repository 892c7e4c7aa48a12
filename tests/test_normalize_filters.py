"""Normalization steps and filters: exact outputs, drop reasons, split stability."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.text.filters import content_hashes, filter_mask, validation_flags
from dataprep.text.normalize import normalize_array, normalize_text
from dataprep.text.filters import FilterSpec
from dataprep.text.normalize import NormalizeSpec

ALL_OFF = NormalizeSpec(unicode="none", newlines=False, strip_bom=False, control_chars=False, strip=False)


def test_each_step_exactly():
    from dataclasses import replace

    assert normalize_text("\ufeffhi\ufeff", replace(ALL_OFF, strip_bom=True)) == "hi\ufeff"
    assert normalize_text("a\r\nb\rc\n", replace(ALL_OFF, newlines=True)) == "a\nb\nc\n"
    assert normalize_text("a\x00b\x1bc\td\ne\x7f\x85", replace(ALL_OFF, control_chars=True)) == "ab" + "c\td\ne"
    # NFC composes, NFKC also folds compatibility forms (ﬁ ligature, full-width digits)
    assert normalize_text("e\u0301", replace(ALL_OFF, unicode="NFC")) == "\u00e9"
    assert normalize_text("\ufb01 \uff11", replace(ALL_OFF, unicode="NFKC")) == "fi 1"
    assert normalize_text("\ufb01", replace(ALL_OFF, unicode="NFC")) == "\ufb01"
    assert normalize_text("a  \t b", replace(ALL_OFF, collapse_spaces=True)) == "a b"
    assert normalize_text("a\n\n\n\n\nb\n \n\t\nc", replace(ALL_OFF, max_blank_lines=1)) == "a\n\nb\n\nc"
    assert normalize_text("a\n\n\n\nb", replace(ALL_OFF, max_blank_lines=0)) == "a\nb"
    assert normalize_text("  \n a b \n ", replace(ALL_OFF, strip=True)) == "a b"


def test_defaults_keep_ordinary_text_unchanged():
    text = "Hello, world.\n\nSecond paragraph — with ünïcödé and 中文."
    assert normalize_text(text, NormalizeSpec()) == text


def test_nulls_survive():
    out = normalize_array(pa.array(["a", None], pa.large_string()), NormalizeSpec())
    assert out.to_pylist() == ["a", None]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_normalization_is_idempotent(text):
    spec = NormalizeSpec(collapse_spaces=True, max_blank_lines=1)
    once = normalize_text(text, spec)
    assert normalize_text(once, spec) == once
    assert "\r" not in once and "\ufeff" != once[:1]


def test_filter_reasons_counted_once_each():
    texts = pa.array(["", "ab", "abcdef", "x" * 50, "one two three", "one two"], pa.large_string())
    drops: Counter = Counter()
    keep = filter_mask(texts, FilterSpec(min_chars=3, max_chars=20, min_words=2), drops)
    assert keep.tolist() == [False, False, False, False, True, True]
    assert drops == Counter({"empty": 1, "too_short": 1, "too_long": 1, "too_few_words": 1})


def test_validation_split_is_a_function_of_content():
    texts = [f"document number {i}" for i in range(4000)]
    hashes = content_hashes(texts)
    flags = validation_flags(hashes, fraction=0.1, salt="")
    assert 300 < flags.sum() < 500  # ~10%
    # growing the corpus never moves a document; duplicates share their split
    more = content_hashes(texts + [f"new {i}" for i in range(1000)] + texts[:10])
    flags_more = validation_flags(more, fraction=0.1, salt="")
    assert np.array_equal(flags_more[:4000], flags)
    assert np.array_equal(flags_more[-10:], flags[:10])
    # a salt reshuffles, deterministically
    salted = validation_flags(hashes, fraction=0.1, salt="x")
    assert not np.array_equal(salted, flags)
    assert np.array_equal(salted, validation_flags(hashes, fraction=0.1, salt="x"))
    assert not validation_flags(hashes, fraction=0.0, salt="").any()
    assert validation_flags(hashes, fraction=1.0, salt="").all()
