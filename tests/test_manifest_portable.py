"""Portable manifests (issue 14, point 10): two builds of one recipe from two checkouts give the
same bytes and the same manifest outside ``run``; every reader finds the files through
``manifest_paths.resolve``, in manifests of both layouts.

The two checkouts are copies of ``recipes/`` and the shared data those recipes read, at two depths
(``A/main/recipes`` + ``A/shared/data``, ``B/x/y/main/recipes`` + ``B/x/y/shared/data``), built
once per module with ``pipeline.run``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from dataprep import columns as C
from dataprep.look import report
from dataprep.dataset.manifest import read_json
from dataprep.dataset.reader import open_dataset
from dataprep.dataset.paths import MOVED_TO_RUN, portable, recipe_dir, resolve, tokenizer_path
from dataprep.build.run import run
from dataprep.recipe import load_recipe, recipe_from_dict
from dataprep.schema import iter_issues
from dataprep.validate import validate_dataset

from .conftest import RECIPES, REPO

# inputs + tokenizer files + chat template (chat-tools); a trained tokenizer (demo-pretrain);
# a tokenizer saved in the dataset that also names its source files (span-c4)
BUILT = ("chat-tools", "demo-pretrain", "span-c4")
PATH_KEYS = ("inputs[].path", "tokenizer.source", "tokenizer.files[].path", "sft.chat.template_file")


# --- helpers -----------------------------------------------------------------------------------


def checkout(root: Path, names: tuple[str, ...]) -> Path:
    """``root/main/recipes`` (a copy of recipes/) and, under ``root``, the shared data the named
    recipes read, at the same places relative to the recipes; returns the recipes folder."""
    recipes = root / "main" / "recipes"
    shutil.copytree(RECIPES, recipes)
    for name in names:
        spec = yaml.safe_load((RECIPES / f"{name}.yaml").read_text(encoding="utf-8"))
        paths = [i["path"] for i in spec["inputs"]] + [(spec.get("tokenizer") or {}).get("path"), (spec.get("chat") or {}).get("template")]
        for path in filter(None, paths):
            source = Path(os.path.normpath(RECIPES / path))
            where = os.path.relpath(source, REPO.parent)
            if where.startswith(".."):
                continue  # inside recipes/: copied already
            target = root / where
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target)
    return recipes


def outside_run(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k != "run"}


def strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def stored_paths(manifest: dict) -> list[str]:
    """Every path the manifest holds (the ones PATH_KEYS names)."""
    tok = manifest["tokenizer"]
    paths = [i["path"] for i in manifest["inputs"]] + [f["path"] for f in tok["files"]]
    paths += [] if tok["trained"] else [tok["source"]]
    chat = (manifest.get("sft") or {}).get("chat") or {}
    return paths + ([chat["template_file"]] if chat.get("template_file") else [])


def old_layout(manifest: dict) -> dict:
    """The manifest as dataprep wrote it before this change: ``created_unix`` and ``recipe_dir``
    top-level, absolute paths (tokenizer and template joined to the recipe folder, unnormalized),
    and (before #16) no copy of a tokenizer it did not train or extend (``saved_as`` null)."""
    base = str(recipe_dir(manifest))
    raw = lambda p: p if os.path.isabs(p) else os.path.join(base, p)  # noqa: E731
    old = json.loads(json.dumps(manifest))
    run_section = old.pop("run")
    created, folder = run_section.pop("created_unix"), run_section.pop("recipe_dir")
    out = {}
    for key, value in old.items():
        out[key] = value
        if key == "dataprep_version":
            out["created_unix"] = created
        if key == "recipe_hash":
            out["recipe_dir"] = folder
    out["run"] = run_section
    for entry in out["inputs"]:
        entry["path"] = resolve(manifest, entry["path"])
    tok = out["tokenizer"]
    if not tok["trained"]:
        tok["source"] = raw(tok["source"])
        tok["saved_as"] = None  # no copy in the dataset: the readers load the source files
    for entry in tok["files"]:
        entry["path"] = raw(entry["path"])
    chat = (out.get("sft") or {}).get("chat") or {}
    if chat.get("template_file"):
        chat["template_file"] = raw(chat["template_file"])
    return out


def save(out: Path, manifest: dict) -> None:
    (out / C.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


# --- two checkouts ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """{recipe name: [(recipe, out, manifest as run returned it)] for checkouts A and B}."""
    base = tmp_path_factory.mktemp("checkouts")
    made: dict[str, list] = {name: [] for name in BUILT}
    for root in (base / "A", base / "B" / "x" / "y"):
        recipes = checkout(root, BUILT)
        (root / "out").mkdir()
        for name in BUILT:
            recipe = load_recipe(recipes / f"{name}.yaml")
            with pytest.MonkeyPatch.context() as patch:  # the transformers comparison only warns, and is slow
                patch.setattr("dataprep.build.reference_check.check_run", lambda *args, **kwargs: None)
                manifest = run(recipe, root / "out" / name, workers=1, progress=False)
            made[name].append((recipe, root / "out" / name, manifest))
    return made


@pytest.mark.parametrize("name", BUILT)
def test_two_checkouts_write_the_same_bytes(builds, name):
    (_, a, _), (_, b, _) = builds[name]
    files = lambda out: sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.name != C.MANIFEST_FILE)  # noqa: E731
    assert files(a) == files(b) and files(a)
    for rel in files(a):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.parametrize("name", BUILT)
def test_portable_manifests_of_two_checkouts_are_equal_outside_run(builds, name):
    (ra, a, ma), (rb, b, mb) = builds[name]
    pa_, pb = portable(ma, ra, ma["run"]), portable(mb, rb, mb["run"])
    assert outside_run(pa_) == outside_run(pb)
    for p, out, recipe in ((pa_, a, ra), (pb, b, rb)):
        assert list(iter_issues(p, "manifest")) == []
        assert not set(MOVED_TO_RUN) & set(p) and list(p)[-1] == "run"
        assert p["run"]["recipe_dir"] == str(recipe.base_dir) and p["run"]["workers"] == 1
        root = str(out.parents[1])
        assert not [s for s in strings(outside_run(p)) if root in s]  # nothing names the checkout
        for path in stored_paths(p):
            assert not os.path.isabs(path) and os.path.normpath(path) == path and "\\" not in path
            assert os.path.exists(resolve(p, path)), path
        assert portable(p, recipe) == p  # idempotent: the run may pass it through again


@pytest.mark.parametrize("name", BUILT)
def test_run_writes_portable_manifests(builds, name):
    (_, a, ma), (_, b, mb) = builds[name]
    written = [json.loads((out / C.MANIFEST_FILE).read_text(encoding="utf-8")) for out in (a, b)]
    assert written == [ma, mb]
    assert outside_run(ma) == outside_run(mb)
    assert {"created_unix", "recipe_dir", "seconds", "workers", "engine"} <= set(ma["run"])
    assert not [s for s in strings(outside_run(ma)) if str(a.parents[1]) in s]


# --- readers, both layouts -------------------------------------------------------------------


@pytest.fixture(params=["portable", "old"])
def layout_copy(request, builds, tmp_path):
    """chat-tools from checkout A, copied, with its manifest in the portable or the old layout."""
    recipe, built, manifest = builds["chat-tools"][0]
    out = tmp_path / "chat-tools"
    shutil.copytree(built, out)
    new = portable(manifest, recipe, manifest["run"])
    save(out, new if request.param == "portable" else old_layout(new))
    return request.param, out, recipe


def test_validate_passes_either_layout(layout_copy):
    layout, out, _ = layout_copy
    manifest = json.loads((out / C.MANIFEST_FILE).read_text(encoding="utf-8"))
    assert ("created_unix" in manifest) == (layout == "old")
    result = validate_dataset(out, recheck=20)
    assert result.ok, result.to_text()
    assert not [n for n in result.notes if "skipped" in n], result.notes  # tokenizer files and sources found


def test_readers_find_the_files_either_layout(layout_copy):
    layout, out, recipe = layout_copy
    ds = open_dataset(out)
    m = read_json(out)  # the JSON as written: what the path helpers read
    base = Path(recipe.base_dir)
    tokenizer_dir = os.path.normpath(base / "../../shared/data/tokenizers/llama-3")
    found = lambda path: os.path.normpath(path)  # noqa: E731  (old manifests hold unnormalized absolute paths, used as they are)
    # the dataset's own copy; a dataset from before the copy loads the source files
    assert found(tokenizer_path(m, out)) == (str(out / "tokenizer") if layout == "portable" else tokenizer_dir)
    assert ds.tokenizer().fingerprint == m["tokenizer"]["fingerprint"]
    files = [found(resolve(m, f["path"])) for f in m["tokenizer"]["files"]]
    assert files == [os.path.join(tokenizer_dir, n) for n in ("tokenizer.json", "tokenizer_config.json")]
    assert found(resolve(m, m["sft"]["chat"]["template_file"])) == os.path.normpath(base / "../../shared/data/chat_templates/llama3_1.jinja")
    typed = ds.manifest  # the typed manifest finds the same files, in either layout
    assert typed.tokenizer_path(out) == tokenizer_path(m, out)
    assert [typed.resolve(f.path) for f in typed.tokenizer.files] == [resolve(m, f["path"]) for f in m["tokenizer"]["files"]]
    summary = report.compute(ds).summary
    assert found(summary["tokenizer"]["source"]) == tokenizer_dir
    assert [s["path"] for s in summary["sources"]] == [os.path.normpath(base / "../../shared/data/pairs/chat/glaive_toolcall_en_demo.json")]


def test_a_moved_dataset_still_finds_its_sources(builds, tmp_path):
    """The manifest's relative paths are the recipe folder's, not the dataset's: the dataset may move."""
    recipe, built, manifest = builds["span-c4"][1]
    out = tmp_path / "elsewhere" / "span"
    shutil.copytree(built, out)
    save(out, portable(manifest, recipe, manifest["run"]))
    ds = open_dataset(out)
    assert tokenizer_path(read_json(out), out) == ds.manifest.tokenizer_path(out) == str(out / "tokenizer")  # saved in the dataset
    assert ds.tokenizer().fingerprint == ds.manifest.tokenizer.fingerprint
    result = validate_dataset(out)
    assert result.ok and not [n for n in result.notes if n.startswith("tokenizer checks skipped")], result.to_text()


# --- portable() and resolve() on their own -----------------------------------------------------


def _manifest(base: Path, **sections) -> dict:
    return {
        "format": "dataprep.sft/2", "dataprep_version": "0", "created_unix": 1700000000,
        "recipe": {}, "recipe_hash": "0" * 64, "recipe_dir": str(base), "task": "sft",
        "tokenizer": sections.pop("tokenizer"), "inputs": sections.pop("inputs"), **sections,
        "run": {"seconds": 1.5, "workers": 2, "engine": "local"},
    }


def _recipe(base: Path, inputs: list[str], tokenizer: str, template: str | None = None):
    spec = {"task": "sft", "template": "chat" if template else "alpaca", "inputs": [{"path": p} for p in inputs], "tokenizer": {"path": tokenizer}}
    if template:
        spec["chat"] = {"template": template}
    return recipe_from_dict(spec, base_dir=base)


def test_paths_are_stored_as_the_recipe_wrote_them(tmp_path):
    base = tmp_path / "repo" / "recipes"
    recipe = _recipe(base, ["../data/a/*.jsonl", "/srv/corpus/b.jsonl", "s3://bucket/c.jsonl", "~/d.jsonl"],
                     "./tok/../tok", template="../templates/t.jinja")
    home = os.path.expanduser("~")
    manifest = _manifest(
        base,
        inputs=[{"path": os.path.normpath(base / "../data/a/x.jsonl")}, {"path": "/srv/corpus/b.jsonl"},
                {"path": "s3://bucket/c.jsonl"}, {"path": os.path.join(home, "d.jsonl")}],
        tokenizer={"source": f"{base}/./tok/../tok", "trained": False, "files": [{"path": f"{base}/./tok/../tok/tokenizer.json"}]},
        sft={"chat": {"template_file": f"{base}/../templates/t.jinja"}},
    )
    before = json.loads(json.dumps(manifest))
    p = portable(manifest, recipe, {"seconds": 2.0, "workers": 4, "engine": "ray"})
    assert manifest == before  # not changed in place
    assert [i["path"] for i in p["inputs"]] == ["../data/a/x.jsonl", "/srv/corpus/b.jsonl", "s3://bucket/c.jsonl", os.path.join(home, "d.jsonl")]
    assert p["tokenizer"]["source"] == "tok" and p["tokenizer"]["files"] == [{"path": "tok/tokenizer.json"}]
    assert p["sft"]["chat"]["template_file"] == "../templates/t.jinja"
    assert p["run"] == {"seconds": 2.0, "workers": 4, "engine": "ray", "created_unix": 1700000000, "recipe_dir": str(base)}
    assert list(p) == [k for k in manifest if k not in ("created_unix", "recipe_dir")]
    assert portable(p, recipe) == p
    for stored, recorded in zip(p["inputs"], manifest["inputs"]):
        assert resolve(p, stored["path"]) == recorded["path"]


def test_an_absolute_tokenizer_and_a_trained_one_keep_their_source(tmp_path):
    recipe = _recipe(tmp_path, ["x.jsonl"], "/opt/tok/")
    manifest = _manifest(tmp_path, inputs=[{"path": str(tmp_path / "x.jsonl")}],
                         tokenizer={"source": "/opt/tok/", "trained": False, "files": [{"path": "/opt//tok/vocab.txt"}]})
    p = portable(manifest, recipe)
    assert p["inputs"][0]["path"] == "x.jsonl"
    assert p["tokenizer"]["source"] == "/opt/tok" and p["tokenizer"]["files"][0]["path"] == "/opt/tok/vocab.txt"
    manifest["tokenizer"] = {"source": "trained", "trained": True, "saved_as": "tokenizer", "files": []}
    assert portable(manifest, recipe)["tokenizer"]["source"] == "trained"
    assert tokenizer_path(portable(manifest, recipe), "/data/out") == "/data/out/tokenizer"


def test_created_unix_is_kept_or_taken_now(tmp_path):
    recipe = _recipe(tmp_path, ["x.jsonl"], "tok")
    manifest = _manifest(tmp_path, inputs=[], tokenizer={"source": "trained", "trained": True, "files": []})
    del manifest["created_unix"]
    p = portable(manifest, recipe, {"seconds": 0.1, "workers": 1})
    assert isinstance(p["run"]["created_unix"], int) and p["run"]["created_unix"] > 1700000000


def test_resolve_reads_both_layouts():
    new = {"run": {"recipe_dir": "/r"}, "recipe_dir": "/old"}
    assert resolve(new, "/abs/tokenizer.json") == "/abs/tokenizer.json"
    assert resolve(new, "s3://b/k.jsonl") == "s3://b/k.jsonl"
    assert resolve(new, "../data/./x.jsonl") == "/data/x.jsonl"
    assert resolve({"recipe_dir": "/old"}, "tok/tokenizer.json") == "/old/tok/tokenizer.json"
    assert resolve({"run": {"seconds": 1.0, "workers": 1}, "recipe_dir": "/old"}, "tok") == "/old/tok"


def test_recipe_dir_of_manifests_older_than_recipe_dir():
    """Neither key: recovered from the absolute paths and the recipe's relative ones."""
    old = {"recipe": {"tokenizer": {"path": "../tok"}, "inputs": [{"path": "data/x.jsonl"}]},
           "tokenizer": {"source": "/home/a/recipes/../tok", "trained": False}, "inputs": [{"path": "/home/a/recipes/data/x.jsonl"}]}
    assert recipe_dir(old) == Path("/home/a/recipes")
    assert resolve(old, "data/y.jsonl") == "/home/a/recipes/data/y.jsonl"
    old["recipe"]["tokenizer"]["path"] = "/abs/tok"
    old["recipe"]["inputs"][0]["path"] = "/abs/x.jsonl"
    assert recipe_dir(old) == Path("/")  # nothing relative: any folder resolves them
    assert recipe_dir({"recipe": {"inputs": [{"path": "x"}]}, "tokenizer": {"trained": True}, "inputs": [{"path": "/elsewhere/y"}]}) is None
    assert resolve({"recipe": {"inputs": [{"path": "x"}]}, "tokenizer": {"trained": True}, "inputs": [{"path": "/e/y"}]}, "x") == "x"
