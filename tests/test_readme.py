"""README.md says what is true: its commands, module paths and figures, and its promise about ../shared.

- Every ``dataprep ...`` line in a README code block names a command and options the CLI has,
  reads recipes and files that exist (or datasets an earlier README command builds), and the
  cheap ones run: ``--help`` of every command used, ``schema``, ``check-recipe``.
- Every module path written in README.md and benchmarks/README.md exists in the package.
- Every measured figure in README.md names what produces it (a script under ``benchmarks/``, the
  ``dataprep train`` command that prints it, ``make``), in its paragraph or the one introducing it.
- "The tests read real public data from ../shared/data": without it they fail with the fix
  (conftest's rule), never skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from xml.etree import ElementTree

from .conftest import REPO

CONFTEST = REPO / "tests" / "conftest.py"


# --- missing shared data: fail with the fix, never skip -----------------------------------------

SANDBOX_TESTS = {
    "test_names.py": "from .conftest import DATA\nGPT2 = DATA / 'tokenizers' / 'gpt2'\n\ndef test_a():\n    assert GPT2.name == 'gpt2'\n",
    "test_fixture.py": "def test_b(data_dir):\n    assert data_dir.name == 'data'\n",
    "test_module_skip.py": (
        "import pytest\nfrom .conftest import DATA\nif not DATA.is_dir():\n"
        "    pytest.skip(f'shared data not found at {DATA}', allow_module_level=True)\n\ndef test_c():\n    pass\n"
    ),
    "test_inner_skip.py": "import pytest\n\ndef test_d():\n    pytest.skip('needs the shared data')\n",
    "test_plain.py": "import pytest\n\ndef test_e():\n    assert 1 + 1 == 2\n\ndef test_f():\n    pytest.skip('not about the data')\n",
}


def run_sandbox(root, *, data: bool) -> dict[str, tuple[str, str]]:
    """Run SANDBOX_TESTS under a copy of conftest.py in ``root/checkout``; ``root/shared/data`` exists
    when ``data``. Returns each test's (or uncollectable module's) outcome and message, from JUnit XML."""
    tests = root / "checkout" / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    shutil.copy(CONFTEST, tests / "conftest.py")
    (tests / "__init__.py").write_text("")
    (root / "checkout" / "pytest.ini").write_text("[pytest]\n")
    for name, text in SANDBOX_TESTS.items():
        (tests / name).write_text(text)
    if data:
        (root / "shared" / "data").mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--continue-on-collection-errors", "--junitxml=out.xml", "tests"],
        cwd=root / "checkout", capture_output=True, text=True, timeout=120,
    )
    outcomes = {}
    for case in ElementTree.parse(root / "checkout" / "out.xml").iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}".strip(".").removeprefix("tests.")  # module.test, or the module
        found = [(child.tag, f"{child.get('message', '')}\n{child.text or ''}") for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[name] = found[0] if found else ("passed", "")
    return outcomes


def test_missing_shared_data_fails_with_the_fix_and_never_skips(tmp_path):
    missing = run_sandbox(tmp_path / "missing", data=False)
    fix = "fix: put the shared data beside the checkout at ../shared"
    assert {name: (kind, fix in message) for name, (kind, message) in missing.items()} == {
        "test_names.test_a": ("error", True),  # names a path under ../shared: fails at set-up
        "test_fixture.test_b": ("error", True),  # asks for data_dir
        "test_module_skip": ("error", True),  # a module-level skip for missing data becomes the failure
        "test_inner_skip.test_d": ("failure", True),  # so does a skip inside a test that says why
        "test_plain.test_e": ("passed", False),  # tests that do not need the data still run
        "test_plain.test_f": ("skipped", False),  # and other skips stay skips
    }, missing
    present = run_sandbox(tmp_path / "present", data=True)
    assert {name: kind for name, (kind, _) in present.items()} == {
        "test_names.test_a": "passed", "test_fixture.test_b": "passed", "test_module_skip.test_c": "passed",
        "test_inner_skip.test_d": "skipped", "test_plain.test_e": "passed", "test_plain.test_f": "skipped",
    }, present
