"""Shared fixtures: paths to the real data beside the checkout (``../shared/data``).

**One rule for missing shared data: fail with the fix, never skip.** Tests read real public data
from ``../shared/data`` (``DATA``) by path. When it is missing, every test that needs it FAILS with
``put the shared data beside the checkout at ../shared``; tests that do not need it still run. A
test needs it when it asks for the ``data_dir`` fixture, calls :func:`require_shared`, or lives in
a module that names a path under ``../shared`` (``from .conftest import DATA``, ``GPT2 = DATA /
...``). A skip because the data is missing (a module-level ``pytest.skip``) is turned into that
failure too, so a missing folder can never pass for a green run (tests/test_readme.py checks the rule).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
RECIPES = REPO / "recipes"
MISSING = (
    f"the real test data is missing: {DATA} does not exist. "
    "fix: put the shared data beside the checkout at ../shared (so that ../shared/data/README.md exists)"
)


def require_shared() -> None:
    """Fail the calling test with the fix when ``../shared/data`` is missing."""
    if not DATA.is_dir():
        pytest.fail(MISSING, pytrace=False)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    require_shared()
    return DATA


def _names_shared(module) -> bool:
    """Whether a test module names a path under ``../shared`` at its top level."""
    for value in vars(module).values():
        if isinstance(value, Path) and value.is_relative_to(SHARED):
            return True
    return False


@pytest.fixture(autouse=True)
def _shared_data_or_fail(request) -> None:
    if not DATA.is_dir() and request.module is not None and _names_shared(request.module):
        require_shared()


@pytest.fixture(scope="session", autouse=True)
def _short_loader_probe():
    """Every training run ends by timing its loader alone for ``seconds`` of wall clock (1 s:
    :func:`dataprep.train.speed.loader_tokens_per_s`, an informational figure that never decides a
    verdict); the suite trains ~40 times, so that was ~40 s of reading batches nobody looks at. Here
    it reads for 0.1 s: the figure is still measured on the same loader (and still > 0)."""
    import functools

    from dataprep.train import speed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(speed, "loader_tokens_per_s", functools.partial(speed.loader_tokens_per_s, seconds=0.1))
        yield


def _skipped_for_missing_data(report) -> bool:
    if DATA.is_dir() or not report.skipped:
        return False
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    return str(DATA) in reason or str(SHARED) in reason or "shared data" in reason.lower()


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    if _skipped_for_missing_data(report):
        report.outcome, report.longrepr = "failed", MISSING
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if _skipped_for_missing_data(report):
        report.outcome, report.longrepr = "failed", MISSING
    return report


def read_split(out: Path, split: str = "train"):
    """Every row of one split of a dataset, read into memory (a test may rewrite a shard afterwards)."""
    import json

    import pyarrow as pa

    state = json.loads((out / split / "state.json").read_text())
    return pa.concat_tables(pa.ipc.open_stream((out / split / f["filename"]).read_bytes()).read_all() for f in state["_data_files"])


# --- the shared tokenizers, loaded once per session ----------------------------------------------
# Parsing Gemma 3's 33 MB tokenizer.json takes seconds, and transformers 5 takes about ten to build its
# AutoTokenizer; each test module used to pay both again. What these return is shared by every test
# that asks for the same thing: use it read-only (encode, decode, apply_chat_template); a test that
# changes a tokenizer's settings or tokens loads its own.


@functools.lru_cache(maxsize=None)
def shared_tokenizer(name: str, **options):
    """``load_tokenizer`` of ``../shared/data/tokenizers/NAME`` with ``TokenizerSpec`` options (and
    ``warn``): one ``LoadedTokenizer`` per distinct call for the whole session. Read-only."""
    from dataprep.text.tokenizer import TokenizerSpec, load_tokenizer

    require_shared()
    warn = options.pop("warn", True)
    return load_tokenizer(TokenizerSpec(path=str(DATA / "tokenizers" / name), **options), base_dir=DATA, warn=warn)


@functools.lru_cache(maxsize=None)
def transformers_tokenizer(name: str):
    """``transformers.AutoTokenizer.from_pretrained`` of ``../shared/data/tokenizers/NAME`` (a local
    folder: nothing is downloaded), loaded once per session by the tests themselves, independently
    of dataprep's own loader. Read-only."""
    import transformers

    require_shared()
    return transformers.AutoTokenizer.from_pretrained(str(DATA / "tokenizers" / name), local_files_only=True)


@functools.lru_cache(maxsize=None)
def tokenizer_json(name: str):
    """``tokenizers.Tokenizer.from_file`` of ``../shared/data/tokenizers/NAME/tokenizer.json`` as
    shipped (no dataprep code in between), parsed once per session. Read-only."""
    from tokenizers import Tokenizer

    require_shared()
    return Tokenizer.from_file(str(DATA / "tokenizers" / name / "tokenizer.json"))
