"""The light install: the library and `make demo` pull neither Ray nor transformers nor the test tools.

- ``pyproject.toml``'s core dependencies name none of the optional packages; ``make demo`` installs
  ``.`` and ``make test`` installs ``.[test]`` (read from ``make -n``, so the Makefile cannot drift).
- ``import dataprep.cli`` and the modules the demo's commands run import neither Ray nor
  transformers (``sys.modules`` of a fresh interpreter).
- The demo's commands (run, validate, train on both demos) succeed in interpreters where Ray and
  transformers cannot be imported, worker processes included, as in the light install.
- Everything the ``test`` extra names is installed: a missing test dependency fails here with the
  fix, instead of its tests skipping (``pytest.importorskip``) and a green run hiding it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .conftest import REPO

OPTIONAL = ("ray", "transformers", "pytest", "hypothesis")  # what the core install must not pull
FIX = "fix: pip install -e '.[test]' (what `make test` installs)"


def project() -> dict:
    """pyproject.toml's [project] table."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: tomli is what tomllib was before 3.11
        import tomli as tomllib
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def name_of(requirement: str) -> str:
    """The distribution name a requirement string names (lowercase, ``-`` for ``_``)."""
    return re.split(r"[\s\[<>=!~;,]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_core_dependencies_name_no_optional_package():
    core = {name_of(r) for r in project()["dependencies"]}
    assert core.isdisjoint(OPTIONAL), core & set(OPTIONAL)
    extras = project()["optional-dependencies"]
    assert {name_of(r) for r in extras["ray"]} == {"ray"}
    assert {"pytest", "hypothesis", "transformers"} <= {name_of(r) for r in extras["test"]}
    assert "dataprep[ray]" in extras["test"]  # the Ray engine's tests run in `make test`


def make_dry_run(target: str, tmp_path: Path) -> list[str]:
    """The pip install lines ``make TARGET`` would run on a fresh machine (``make -n``, nothing runs)."""
    out = subprocess.run(["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if "pip install" in line]


def test_make_demo_installs_the_core_and_make_test_the_test_extra(tmp_path):
    demo = make_dry_run("demo", tmp_path)
    assert demo[-1].endswith("pip install -q -e .") and not any("[" in line for line in demo), demo
    assert any("torch==2.13.0" in line for line in demo)  # the CPU wheel on disk; an unpinned torch pulls CUDA
    test = make_dry_run("test", tmp_path)
    assert test[-2].endswith("""pip install -q -e ".[test]\""""), test
    assert test[-1].endswith('pip install -q --no-deps "mosaicml-streaming==0.13.0"'), test  # its pins would undo ours


def fresh_interpreter(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)


def test_the_cli_and_the_demo_modules_import_neither_ray_nor_transformers():
    modules = ["dataprep.cli", "dataprep.build.run", "dataprep.validate.check_dataset", "dataprep.train.loop",
               "dataprep.tasks.sft.worker", "dataprep.tasks.pretrain"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))")
    done = fresh_interpreter(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# Loaded first in every interpreter of the demo (PYTHONPATH; worker processes inherit it): the
# optional packages cannot be imported, as in the light install.
BLOCK = '''
import sys

class Absent:
    """Ray and transformers are not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
'''


def test_the_demo_commands_run_without_ray_or_transformers(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCK, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hook), str(REPO)]))
    assert "ModuleNotFoundError" in fresh_interpreter("import transformers", env).stderr  # the block works
    out = tmp_path / "out"
    tiny = ["--steps", "30", "--batch-size", "16", "--lr", "3e-3", "--set", "d_model=64", "--set", "n_layers=2",
            "--set", "n_heads=2", "--set", "warmup=0.05", "--set", "eval_every=0", "--set", "checkpoint_every=0"]
    commands = [
        ["run", "recipes/demo-pretrain.yaml", "--out", str(out / "demo-pretrain")],
        ["validate", str(out / "demo-pretrain")],
        ["run", "recipes/demo-sft.yaml", "--out", str(out / "demo-sft"), "--workers", "2"],  # worker processes
        ["validate", str(out / "demo-sft")],
        ["train", str(out / "demo-pretrain"), *tiny],
        ["train", str(out / "demo-sft"), *tiny, "--set", "task_proof=off"],
    ]
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "dataprep", *command], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        assert "Traceback" not in done.stderr and "ModuleNotFoundError" not in done.stderr, (command, done.stderr)
    assert done.stdout.rstrip().endswith("verdict: PASS")


def requirements(extra: str) -> list[str]:
    """The requirements of an extra that apply to this Python, with ``dataprep[other]`` expanded."""
    found = []
    for requirement in project()["optional-dependencies"][extra]:
        inner = re.fullmatch(r"dataprep\[(\w+)\]", requirement.strip())
        if inner:
            found += requirements(inner[1])
        elif Requirement(requirement).marker is None or Requirement(requirement).marker.evaluate():
            found.append(requirement)
    return found


@pytest.mark.parametrize("requirement", requirements("test"))
def test_every_test_dependency_is_installed(requirement):
    """A missing one fails with the fix; its tests would otherwise skip, and a green run hide it."""
    wanted = Requirement(requirement)
    try:
        installed = metadata.version(wanted.name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{wanted.name} is not installed, and the tests need it ({requirement}). {FIX}", pytrace=False)
    if not wanted.specifier.contains(installed, prereleases=True):
        pytest.fail(f"{wanted.name} {installed} is installed; the tests need {requirement}. {FIX}", pytrace=False)
