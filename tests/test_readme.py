"""README.md says what is true: its commands, module paths and figures, and its promise about ../shared.

- Every ``dataprep ...`` line in a README code block parses with the CLI's own options (strictly:
  unknown options, bad values and missing files fail), names recipes and files that exist and load
  (recipes with their ``--set`` overrides), or datasets an earlier README command builds; the cheap
  ones run: ``--help`` of every command used, ``schema``, ``check-recipe``. Every
  ``python benchmarks/...`` line in README.md and benchmarks/README.md names a script that exists,
  with options it defines.
- Every module path written in README.md and benchmarks/README.md exists in the package (and every
  path under ``schemas/``, ``recipes/``, ``tests/``, ``benchmarks/`` beside it), and every
  file the "Layout" table names exists where its row says.
- Every measured figure in README.md (throughput, seconds, sizes, percentages, ratios, losses) names
  what produces it, in its paragraph, table or code block, or the one introducing it: a script under
  ``benchmarks/``, the ``dataprep train`` command that prints it, ``make``, or a ``pytest`` command.
  Figures that are settings or thresholds, not measurements, are listed in ``NOT_MEASURED``.
- "The tests read real public data from ../shared/data": without it they fail with the fix
  (conftest's rule), never skip.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import click
from click.testing import CliRunner

from dataprep.cli import cli
from dataprep.recipe import load_recipe

from .conftest import REPO, require_shared

CONFTEST = REPO / "tests" / "conftest.py"
PACKAGE = REPO / "dataprep"
README = REPO / "README.md"
BENCH_README = REPO / "benchmarks" / "README.md"


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S)]


def shell_lines(text: str, program: str) -> list[list[str]]:
    """Every command line of the bash blocks that starts with ``program``, split as the shell splits it
    (continuation lines joined, comments dropped, cut at the first redirection or pipe)."""
    found = []
    for language, body in code_blocks(text):
        if language != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[: len(program.split())] == program.split():
                cut = next((i for i, w in enumerate(words) if w in (">", ">>", "|", "&&", ";", "2>")), len(words))
                found.append(words[:cut])
    return found


# --- commands -----------------------------------------------------------------------------------

COMMANDS = shell_lines(README.read_text(encoding="utf-8"), "dataprep")
# names a README command uses for the reader's own files, not files of this repository
PLACEHOLDERS = {"recipe.yaml": "the cluster example: the reader's recipe, inputs on s3:// or a shared mount"}
GLOBAL_OPTIONS = {opt: not param.is_flag for param in cli.params if isinstance(param, click.Option) for opt in param.opts}


def split_command(words: list[str]) -> tuple[list[str], str, list[str]]:
    """``dataprep [global options] COMMAND ARGS`` -> (global options, command, args)."""
    i = 1
    while words[i] in GLOBAL_OPTIONS:
        i += 2 if GLOBAL_OPTIONS[words[i]] else 1
    return words[1:i], words[i], words[i + 1 :]


def option_values(params: dict, name: str) -> list:
    value = params.get(name)
    return [] if value is None else list(value) if isinstance(value, (tuple, list)) else [value]


def test_readme_has_the_commands_it_shows():
    assert len(COMMANDS) == 55, [" ".join(c) for c in COMMANDS]
    assert {split_command(c)[1] for c in COMMANDS} == {"run", "check-recipe", "schema", "validate", "inspect", "report", "train", "export"}


def test_every_readme_command_parses_and_names_files_that_exist(tmp_path, monkeypatch):
    """Each command parsed strictly, as the CLI would, in a folder holding the repository's recipes
    and, as empty folders, only the datasets the README's earlier ``run`` commands build."""
    require_shared()  # the README's recipes read ../shared
    (tmp_path / "recipes").symlink_to(RECIPES_DIR)
    for name in PLACEHOLDERS:
        (tmp_path / name).write_text("")
    monkeypatch.chdir(tmp_path)
    built: list[str] = []
    for words in COMMANDS:
        global_options, name, args = split_command(words)
        group = cli.make_context("dataprep", [*global_options, name])
        command = cli.get_command(group, name)
        assert command is not None, words
        params = command.make_context(name, list(args), parent=group).params  # raises on any bad option or path
        recipes = option_values(params, "recipe")
        recipes += [p for p in option_values(params, "paths") + option_values(params, "path") if str(p).endswith(".yaml")]
        for recipe in recipes:
            if recipe in PLACEHOLDERS:
                continue
            loaded = load_recipe(REPO / recipe, option_values(params, "overrides"))  # raises on a bad recipe or --set
            if name == "run":
                out = params["out"]
                built.append(out)
                if not out.startswith(("s3://", "gs://")):
                    (tmp_path / out).mkdir(parents=True, exist_ok=True)
                    if loaded.tokenizer.train is not None:  # the tokenizer it trains is saved beside the shards
                        (tmp_path / out / "tokenizer").mkdir(exist_ok=True)
        for path in option_values(params, "paths") + option_values(params, "path"):
            if str(path).endswith((".jsonl", ".json")):  # a raw input file: it parses
                text = (REPO / path).read_text(encoding="utf-8")
                assert all(json.loads(line) for line in text.splitlines()), path
    assert "out/demo-sft" in built and "out/demo-pretrain" in built


def test_cheap_readme_commands_run(monkeypatch):
    """``--help`` of every command used, and the README's ``schema`` and ``check-recipe`` lines as written."""
    require_shared()
    monkeypatch.chdir(REPO)
    runner = CliRunner()
    for name in sorted({split_command(c)[1] for c in COMMANDS}):
        result = runner.invoke(cli, [name, "--help"], prog_name="dataprep")
        assert result.exit_code == 0 and f"Usage: dataprep {name}" in result.output, result.output
    ran = []
    for words in COMMANDS:
        _, name, args = split_command(words)
        if name in ("schema", "check-recipe"):
            result = runner.invoke(cli, words[1:])
            assert result.exit_code == 0, (words, result.output)
            ran.append((name, *args))
    assert ran == [("check-recipe", "recipes/demo-pretrain.yaml"), ("schema", "recipe"), ("schema",)]
    assert json.loads(runner.invoke(cli, ["schema", "recipe"]).output)["$id"].endswith("/recipe.schema.json")


BENCH_LINES = [(doc.name, words) for doc in (README, BENCH_README) for words in shell_lines(doc.read_text(encoding="utf-8"), "python")
               if len(words) > 1 and words[1].startswith("benchmarks/")]


def test_benchmark_lines_name_scripts_and_options_that_exist():
    assert len(BENCH_LINES) == 39, BENCH_LINES  # the usage lines of the 22 scripts in benchmarks/README.md, and the README's two_stage line
    for doc, words in BENCH_LINES:
        script = REPO / words[1]
        assert script.is_file(), (doc, words)
        defined = set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", script.read_text(encoding="utf-8")))
        used = {w for w in words[2:] if w.startswith("--")}
        assert used <= defined, (doc, words, used - defined)


# --- module paths -------------------------------------------------------------------------------

RECIPES_DIR = REPO / "recipes"


def bound_names(module: Path) -> set[str]:
    """Names a module binds at its top level (defs, classes, assignments, imports), and, when it has
    a module ``__getattr__`` (the package's lazy API), the names its ``__all__`` offers."""
    names, offered = set(), set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                offered = {e.value for e in getattr(node.value, "elts", []) if isinstance(e, ast.Constant)}
    return names | offered if "__getattr__" in names else names


def resolves(dotted: str) -> bool:
    """``dataprep.a.b`` is a module (or package), or ``dataprep.a.B`` a name module ``dataprep.a`` binds."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:cut])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            rest = parts[cut:]
            return not rest or (len(rest) == 1 and rest[0] in bound_names(module))
    return False


def test_every_module_path_in_the_readmes_exists():
    checked = []
    for doc in (README, BENCH_README):
        text = doc.read_text(encoding="utf-8")
        for path in re.findall(r"(?<![\w/.-])(dataprep/[\w/]*\w(?:\.py)?/?)", text):
            assert (REPO / path).exists(), (doc.name, path)
            checked.append(path)
        for dotted in re.findall(r"(?<![\w/.-])(dataprep(?:\.\w+)+)(?![\w/])", text):
            assert resolves(dotted), (doc.name, dotted)
            checked.append(dotted)
        for path in re.findall(r"(?<![\w/.<-])((?:schemas|recipes|tests|benchmarks)/[\w./-]*[\w/])(?![\w<>])", text):
            assert (REPO / path).exists(), (doc.name, path)  # files beside the package too
            checked.append(path)
    assert {"dataprep/train/model.py", "dataprep.train.loader", "dataprep.train.objectives", "dataprep/read/",
            "schemas/recipe.schema.json", "recipes/data/generate.py", "tests/test_report.py"} <= set(checked)


def layout_rows() -> list[tuple[list[Path], list[str]]]:
    """The Layout table: for each row, the folders its first cell names and every file or folder it names."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Layout") :]
    rows = []
    for line in section.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| `dataprep/") or len(cells) < 2:
            continue
        first = [REPO / n for n in re.findall(r"`([^`]+)`", cells[0])]
        folders = [f if f.is_dir() else f.parent for f in first]
        rows.append((folders, re.findall(r"`([\w./-]+(?:\.py|/))`", line)))
    return rows


def test_layout_names_modules_that_exist_where_it_says():
    rows = layout_rows()
    assert len(rows) == 13
    named = set()
    for folders, names in rows:
        bases = [*folders, *(f / n for f in folders for n in names if n.endswith("/") and (f / n).is_dir()), PACKAGE, REPO]
        for name in names:
            assert any((base / name).exists() for base in bases), (name, folders)
            named.add(name)
    # every package of the flow is in the table
    packages = {p.name + "/" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert {f"dataprep/{p}" for p in packages} <= named, packages


# --- figures ------------------------------------------------------------------------------------

FIGURE = re.compile(
    r"(?<![\w.])~?\d[\d,]*(?:\.\d+)?\s*(?:M tokens/s|tok/s|tokens/s|examples/s|records/s|rows/s|ms|s|seconds|min|minutes|h|hours"
    r"|days|MiB|GiB|MB|GB|%|x)(?![\w/])"
    r"|\d+\.\d+\s*(?:→|->)\s*\d+\.\d+"
)
PRODUCER = re.compile(r"benchmarks/(\w+\.py)|dataprep train|make (?:test|demo)|pytest ")
NOT_MEASURED = {  # README text holding a figure that is a setting, a threshold or an example, not a measurement
    "Every 60 s (`--checkpoint-every SECONDS`)": "the default checkpoint interval",
    "more than `max_dropped_fraction` (1%)": "the default drop ceiling",
    "with a warning above 0.01%": "the unknown-token warning threshold",
    "the mean loss of the last 10% of steps is at least 25% below the first 10%'s": "the learning check's rule",
    "at least 90% must be found": "the targets check's rule",
    "fell by at least 25%, and by more than on the prompt tokens": "the learned check's rule",
    "expected at least 10x faster": "the loader's expected margin",
    "a log line every 10 s otherwise": "the progress log interval",
    "error: more than max_dropped_fraction (1.0%) of an input's records were dropped": "an example error message",
    "412 of 689 records dropped (59.8%)": "an example error message",
    "(242.5 MB of JSONL, 61.8M tokens, 32k BPE)": "the bench corpus's size",
    "took over 3 minutes": "the budget for re-measuring a figure",
}


def blocks(text: str) -> list[str]:
    """Paragraphs, tables, list groups and fenced code blocks, in order."""
    out, current, fence = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            if not fence and current:
                out.append("\n".join(current))
                current = []
            current.append(line)
            if fence:
                out.append("\n".join(current))
                current = []
            fence = not fence
        elif fence or line.strip():
            current.append(line)
        elif current:
            out.append("\n".join(current))
            current = []
    return out + (["\n".join(current)] if current else [])


def unattributed_figures(text: str) -> list[tuple[list[str], str]]:
    for phrase in NOT_MEASURED:
        text = text.replace(phrase, "")
    found = blocks(text)
    missing = []
    for i, block in enumerate(found):
        if block.startswith("```yaml"):  # recipe settings
            continue
        figures = FIGURE.findall(block)
        if not figures:
            continue
        around = [block] + found[max(i - 1, 0) : i] + (found[i + 1 : i + 2] if block.rstrip().endswith(":") else [])
        if not any(PRODUCER.search(b) for b in around):
            missing.append((figures, block[:120]))
    return missing


def test_every_figure_names_what_produces_it():
    text = README.read_text(encoding="utf-8")
    for phrase in NOT_MEASURED:
        assert text.count(phrase) == 1, phrase  # an exemption that no longer matches is removed
    assert unattributed_figures(text) == []
    for script in PRODUCER.findall(text):
        assert not script or (REPO / "benchmarks" / script).is_file(), script


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
