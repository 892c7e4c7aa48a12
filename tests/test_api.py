"""The Python API (``import dataprep``, issue 16): a light import, builds from a bare script and from
stdin with worker processes, in-memory inputs (records, ``datasets.Dataset``) that give the rows the
file gives, a self-contained output that moves, ``validate`` beside ``datasets``' cache files, and the
README's "Python API" script run as written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dataprep
from dataprep import columns as C
from dataprep.errors import ConfigError, InputError

from .conftest import DATA, RECIPES, REPO

ALPACA = DATA / "pairs" / "instruction" / "alpaca_en_demo.json"
SHAREGPT = DATA / "pairs" / "chat" / "sharegpt_dummy_conversation.json"
GPT2 = DATA / "tokenizers" / "gpt2"


@pytest.fixture(autouse=True)
def _no_transformers_comparison(monkeypatch):
    # the run's transformers comparison only warns, and imports transformers: not what these tests are about
    monkeypatch.setattr("dataprep.build.reference_check.check_run", lambda *args, **kwargs: None)


def columns(out: Path, split: str = "train") -> dict[str, list]:
    table = dataprep.open_dataset(out).table(split)
    return {name: table.column(name).to_pylist() for name in table.column_names}


def alpaca(tokenizer: Path = GPT2, path: Path = ALPACA) -> dict:
    return {"task": "sft", "template": "alpaca", "inputs": [{"path": str(path)}], "tokenizer": {"path": str(tokenizer)},
            "max_length": 512, "overflow": "drop", "max_dropped_fraction": 1.0, "split": {"validation": 0.1}}


# --- the import ---------------------------------------------------------------------------------


def test_import_dataprep_is_light_and_offers_the_api():
    code = ("import sys, dataprep; print(sorted(m for m in ('torch', 'transformers', 'ray', 'tokenizers', 'pyarrow', "
            "'polars', 'datasets', 'numpy', 'dataprep.api') if m in sys.modules)); print(dataprep.__all__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "['__version__', 'build_dataset', 'inspect_dataset', 'open_dataset', 'validate_dataset']"]
    import dataprep.build.run  # noqa: F401  (the subpackages keep their names; the API's functions do not collide)

    assert dataprep.build_dataset is dataprep.api.build_dataset and dataprep.build.run.run is not None


# --- no __main__ guard ----------------------------------------------------------------------------

BARE = """\
import dataprep
print("top level ran", flush=True)
m = dataprep.build_dataset({recipe!r}, {out!r}, workers=2)
print(m.counts.rows.train, m.counts.rows.validation, m.counts.records_read, flush=True)
"""


@pytest.fixture(scope="module")
def sft_reference(tmp_path_factory):
    """demo-sft built in this process with one worker: the counts and shards a bare script must match."""
    out = tmp_path_factory.mktemp("ref") / "demo-sft"
    m = dataprep.build_dataset(RECIPES / "demo-sft.yaml", out, workers=1)
    return m, out


@pytest.mark.parametrize("how", ["script", "stdin"])
def test_a_script_without_a_main_guard_builds_with_two_workers(tmp_path, sft_reference, how):
    m, ref = sft_reference
    out = tmp_path / "out"
    code = BARE.format(recipe=str(RECIPES / "demo-sft.yaml"), out=str(out))
    script = tmp_path / "bare.py"
    script.write_text(code, encoding="utf-8")
    args, stdin = ([sys.executable, str(script)], None) if how == "script" else ([sys.executable, "-"], code)
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["top level ran", f"{m.counts.rows.train} {m.counts.rows.validation} {m.counts.records_read}"]
    built = dataprep.open_dataset(out).manifest
    assert built.run.workers == 2
    assert built.splits == m.splits  # the same shards, byte for byte (sha256), as one worker's


# --- in-memory inputs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def from_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("file") / "alpaca"
    return dataprep.build_dataset(alpaca(), out, workers=1), out


def test_records_in_memory_give_the_rows_the_file_gives(from_file, tmp_path):
    m, out = from_file
    records = json.loads(ALPACA.read_text(encoding="utf-8"))
    spec = alpaca()
    del spec["inputs"]  # inputs= stands for them
    mem = dataprep.build_dataset(spec, tmp_path / "mem", inputs=records, workers=2)
    assert len(mem.inputs) == 1 and re.fullmatch(r"memory://dataprep-inputs/records-999-[0-9a-f]{12}\.json", mem.inputs[0].path)
    assert mem.inputs[0].records_read == mem.counts.records_read == m.counts.records_read == 999
    assert mem.counts.rows == m.counts.rows and mem.counts.tokens == m.counts.tokens
    for split in C.SPLITS:
        assert [s.sha256 for s in mem.splits[split].shards] == [s.sha256 for s in m.splits[split].shards]
    assert columns(tmp_path / "mem")[C.INPUT_IDS] == columns(out)[C.INPUT_IDS]
    assert dataprep.validate_dataset(tmp_path / "mem").ok


def test_a_bad_record_in_memory_is_named_by_its_index(tmp_path):
    records = json.loads(ALPACA.read_text(encoding="utf-8"))[:20]
    records[13] = {"instruction": None, "input": "", "output": "x"}
    spec = {**alpaca(), "on_error": "raise"}
    with pytest.raises(InputError) as caught:
        dataprep.build_dataset(spec, tmp_path / "bad", inputs=records, workers=1)
    assert caught.value.path.startswith("memory://dataprep-inputs/records-20-") and caught.value.location == "record 13"
    with pytest.raises(InputError, match="record 2"):
        dataprep.build_dataset(spec, tmp_path / "bad", inputs=[{}, {}, "text"], workers=1)
    with pytest.raises(ConfigError, match="a list of records"):
        dataprep.build_dataset(spec, tmp_path / "bad", inputs="data.jsonl")


def test_a_datasets_dataset_is_read_from_its_own_arrow_files(from_file, tmp_path):
    datasets = pytest.importorskip("datasets")
    m, out = from_file
    hf = datasets.load_dataset("json", data_files=str(ALPACA), split="train", cache_dir=str(tmp_path / "hf"))
    built = dataprep.build_dataset(alpaca(), tmp_path / "hf-out", inputs=hf, workers=1)
    assert [i.path for i in built.inputs] == [f["filename"] for f in hf.cache_files]  # in place, not copied
    assert built.inputs[0].format == "arrow" and built.counts.records_read == 999
    for split in C.SPLITS:
        assert [s.sha256 for s in built.splits[split].shards] == [s.sha256 for s in m.splits[split].shards]
    # a selection (indices over the files) is streamed as Arrow, named by the datasets fingerprint
    part = hf.select(range(0, 999, 2))
    picked = dataprep.build_dataset(alpaca(), tmp_path / "part", inputs=part, workers=1)
    assert picked.inputs[0].path == f"memory://dataprep-inputs/datasets-{part._fingerprint}-500-rows.arrow"
    assert picked.counts.records_read == 500
    want = [hf[i] for i in range(0, 999, 2)]
    dataprep.build_dataset(alpaca(), tmp_path / "again", inputs=want, workers=1)
    assert columns(tmp_path / "part")[C.INPUT_IDS] == columns(tmp_path / "again")[C.INPUT_IDS]
    assert columns(tmp_path / "part")[C.LOSS_MASK] == columns(tmp_path / "again")[C.LOSS_MASK]


def test_conversations_from_datasets_match_the_file(tmp_path):
    """Nested fields (ShareGPT turns as list<struct>) read from Arrow give the JSON reader's rows."""
    datasets = pytest.importorskip("datasets")
    spec = {"task": "sft", "template": "chat", "masking": "all_assistant", "max_length": 2048, "overflow": "drop",
            "inputs": [{"path": str(SHAREGPT), "fields": {"messages": {"path": "conversations", "kind": "messages"}}}],
            "tokenizer": {"path": str(DATA / "tokenizers" / "phi-3-mini")}, "max_dropped_fraction": 1.0}
    m = dataprep.build_dataset(spec, tmp_path / "file", workers=1)
    hf = datasets.load_dataset("json", data_files=str(SHAREGPT), split="train", cache_dir=str(tmp_path / "hf"))
    built = dataprep.build_dataset(spec, tmp_path / "hf-out", inputs=hf.with_format(None).select(range(len(hf))), workers=1)
    assert built.counts.records_read == m.counts.records_read == 500
    file_rows, hf_rows = columns(tmp_path / "file"), columns(tmp_path / "hf-out")
    assert hf_rows[C.INPUT_IDS] == file_rows[C.INPUT_IDS] and hf_rows[C.LOSS_MASK] == file_rows[C.LOSS_MASK]


# --- a self-contained output ------------------------------------------------------------------------


def test_a_moved_dataset_loads_and_validates_its_own_tokenizer(tmp_path):
    tokenizer = tmp_path / "tokenizers" / "gpt2"
    shutil.copytree(GPT2, tokenizer)
    built = tmp_path / "built"
    m = dataprep.build_dataset(alpaca(tokenizer), built, workers=1)
    assert m.tokenizer.saved_as == "tokenizer" and m.tokenizer.source == str(tokenizer)  # provenance: the source
    copied = sorted(p.name for p in (built / "tokenizer").iterdir())
    assert copied == ["merges.txt", "vocab.json"]
    assert [(Path(f.path).name, f.sha256) for f in m.tokenizer.files] == [
        (name, dataprep_sha256(built / "tokenizer" / name)) for name in ("vocab.json", "merges.txt")]
    moved = tmp_path / "elsewhere" / "alpaca"
    shutil.move(built, moved)
    tokenizer.rename(tmp_path / "tokenizers" / "gone")
    ds = dataprep.open_dataset(moved)
    loaded = ds.tokenizer()
    assert loaded.fingerprint == m.tokenizer.fingerprint and loaded.special_ids == m.tokenizer.special_ids
    row = ds.table("train").column(C.INPUT_IDS)[0].as_py()
    assert loaded.tokenizer.decode(row).startswith("Below is an instruction")
    report = dataprep.validate_dataset(moved)
    assert report.ok, report.to_text()
    assert not [n for n in report.notes if "skipped" in n], report.notes


def dataprep_sha256(path: Path) -> str:
    from dataprep.storage import sha256_file

    return sha256_file(path)


# --- views ----------------------------------------------------------------------------------------


def test_polars_and_torch_views_hold_the_arrow_rows(sft_reference):
    pl = pytest.importorskip("polars")
    _, out = sft_reference
    ds = dataprep.open_dataset(out)
    table = ds.table("validation")
    df = ds.polars("validation")
    assert df.shape == (table.num_rows, table.num_columns)
    assert df[C.INPUT_IDS].to_list() == table.column(C.INPUT_IDS).to_pylist()
    lazy = ds.lazy("validation").select(pl.col(C.INPUT_IDS).list.len().sum()).collect().item()
    assert lazy == sum(len(r) for r in table.column(C.INPUT_IDS).to_pylist())
    rows = ds.torch("validation")
    assert len(rows) == table.num_rows
    assert np.array_equal(rows[7][C.INPUT_IDS], table.column(C.INPUT_IDS)[7].as_py())
    text = dataprep.inspect_dataset(out, split="validation", rows=[7])
    assert "validation row 7" in text and "⟦" in text


# --- datasets' cache files --------------------------------------------------------------------------


def test_validate_ignores_the_cache_files_of_a_datasets_map(sft_reference, tmp_path):
    datasets = pytest.importorskip("datasets")
    _, ref = sft_reference
    out = tmp_path / "sft"
    shutil.copytree(ref, out)
    loaded = datasets.load_from_disk(str(out))
    assert loaded["train"].num_rows == dataprep.open_dataset(out).manifest.counts.rows.train
    for split in C.SPLITS:
        loaded[split].map(lambda row: {"n": len(row[C.INPUT_IDS])})
        loaded[split].filter(lambda row: len(row[C.INPUT_IDS]) > 20)
    cache = sorted(p.relative_to(out).as_posix() for p in out.glob("*/cache-*.arrow"))
    assert [c.split("/")[0] for c in cache] == ["train", "train", "validation", "validation"]
    report = dataprep.validate_dataset(out)
    assert report.ok, report.to_text()
    assert [n for n in report.notes if "cache" in n] == [
        "ignored 4 datasets cache file(s) (cache-*.arrow, left by datasets' .map or .filter; not part of the dataset): "
        "train 2, validation 2; Dataset.cleanup_cache_files() removes them"]
    (out / "train" / "data-00099-of-00100.arrow").write_bytes(b"")  # any other stray file is still a finding
    assert dataprep.validate_dataset(out).counts.get("shard_extra") == 1


# --- the README ------------------------------------------------------------------------------------


def readme_script() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section shows one script"
    return blocks[0]


def test_the_readme_python_api_script_runs_as_a_bare_script(tmp_path):
    script = tmp_path / "readme_api.py"
    script.write_text(readme_script(), encoding="utf-8")
    (tmp_path / "recipes").symlink_to(RECIPES)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    m = dataprep.open_dataset(tmp_path / "out" / "demo-sft-api").manifest
    assert done.stdout.splitlines()[0] == f"{m.counts.rows.train} train rows from {m.counts.records_read} records"
    small = dataprep.open_dataset(tmp_path / "out" / "demo-sft-records").manifest
    assert small.counts.records_read == 30 and small.inputs[0].path.startswith("memory://dataprep-inputs/records-30-")
    assert "train row 0" in done.stdout
