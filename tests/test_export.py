"""dataprep export: every format read back by its consumer's own reader, token for token.

The oracle is the dataset's rows read with pyarrow alone (``conftest.read_split``), never the
exporter's code: content = each row's ``input_ids`` less its ``num_pad`` trailing pads; documents
= the content stream cut after each EOS (wrap: every demo document ends with one and none holds
another, which the count against the manifest's documents proves) or each content piece (bfd).
Megatron files are read with megatron-core's ``IndexedDataset``, nanoGPT's with ``np.memmap`` as
its ``train.py`` does, MDS with mosaicml-streaming's ``StreamingDataset``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shlex

import numpy as np
import pyarrow.parquet as pq
import pytest

from dataprep import columns as C
from dataprep.build.run import run
from dataprep.cli import cli, main
from dataprep.errors import ConfigError, OutputError
from dataprep.export import EXPORTERS, export
from dataprep.export.megatron import Megatron
from dataprep.export.nanogpt import token_dtype
from dataprep.recipe import load_recipe

from .conftest import RECIPES, read_split

EOS = BOS = 0  # the demo tokenizers' EOS (the trained BPE's and the byte tokenizer's), also BOS where asked


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Tiny datasets, built once: pretraining wrap (documents framed by EOS, by BOS, by neither) and
    bfd, fine-tuning unpacked and packed."""
    root = tmp_path_factory.mktemp("export")
    recipes = {
        "wrap": ("demo-pretrain.yaml", ["output.batch_tokens=4096"]),  # several record batches per split
        "bfd": ("demo-pretrain.yaml", ["packing.mode=bfd", "packing.seq_len=256", "output.batch_tokens=4096"]),
        "wrap-bos": ("demo-pretrain.yaml", ["tokenizer.add_eos=false", "tokenizer.add_bos=true", "tokenizer.bos_token=<|endoftext|>"]),
        "wrap-bare": ("demo-pretrain.yaml", ["tokenizer.add_eos=false"]),  # no EOS, no BOS: row ends are ambiguous
        "sft": ("demo-sft.yaml", []),
        "sft-packed": ("demo-sft.yaml", ["packing.mode=bfd"]),
    }
    for name, (recipe, overrides) in recipes.items():
        run(load_recipe(RECIPES / recipe, overrides), root / name, workers=1)
    return root


def content_rows(out, split):
    """Each row's content tokens (pads dropped) and content piece lengths, from the rows alone."""
    table = read_split(out, split).to_pylist()
    return [(r[C.INPUT_IDS][: len(r[C.INPUT_IDS]) - r[C.NUM_PAD]], r[C.SEQ_LENS][: len(r[C.SEQ_LENS]) - (r[C.NUM_PAD] > 0)])
            for r in table]


def stream(out, split):
    return [t for ids, _ in content_rows(out, split) for t in ids]


def documents(out, split, layout):
    if layout == "bfd":  # every content piece is one whole document
        docs = []
        for ids, lens in content_rows(out, split):
            start = 0
            for n in lens:
                docs.append(ids[start : start + n])
                start += n
        return docs
    if layout == "wrap-bare":  # inside a row pieces are documents; at a row's end one runs on
        docs = []
        for r, (ids, lens) in enumerate(content_rows(out, split)):
            start = 0
            for p, n in enumerate(lens):
                if r and p == 0:
                    docs[-1] += ids[:n]
                else:
                    docs.append(ids[start : start + n])
                start += n
        return docs
    docs, current = [], []
    for t in stream(out, split):
        if layout == "wrap-bos" and t == BOS and current:
            docs.append(current)
            current = []
        current.append(t)
        if layout == "wrap" and t == EOS:
            docs.append(current)
            current = []
    return docs + ([current] if current else [])


def manifest(out):
    return json.loads((out / "manifest.json").read_text())


def megatron_docs(prefix):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    data = IndexedDataset(str(prefix))
    assert data.document_indices.tolist() == list(range(len(data) + 1))  # one sequence per document
    return [data[i].tolist() for i in range(len(data))], data[0].dtype


@pytest.mark.parametrize("layout", ["wrap", "wrap-bos", "bfd"])
def test_megatron_round_trip_through_megatron_core(built, tmp_path, layout):
    out, dest = built / layout, tmp_path / "megatron"
    export(out, "megatron", dest=dest)
    for split, prefix in (("train", "train"), ("validation", "validation")):
        expected = documents(out, split, layout)
        assert len(expected) == manifest(out)["counts"]["documents"][split]  # the oracle finds every document
        docs, dtype = megatron_docs(dest / prefix)
        assert dtype == np.uint16  # a 955-id vocabulary: Megatron's own choice below 65,500
        assert docs == expected


def test_megatron_warns_where_row_ends_are_ambiguous(built, tmp_path, caplog):
    """Without EOS or BOS a document ending exactly at a row's end is joined with the next: said, not hidden."""
    out, dest = built / "wrap-bare", tmp_path / "megatron"
    with caplog.at_level("WARNING", logger="dataprep.export"):
        record = export(out, "megatron", dest=dest)
    for split in C.SPLITS:
        docs, _ = megatron_docs(dest / split)
        assert docs == documents(out, split, "wrap-bare")
        stated = manifest(out)["counts"]["documents"][split]
        assert record["splits"][split]["documents"] == len(docs) < stated  # the demo has such documents
        assert f"{len(docs):,} Megatron documents written for {stated:,} dataset documents" in caplog.text
    assert "no EOS or BOS to tell" in caplog.text


@pytest.mark.parametrize("layout", ["wrap", "bfd"])
def test_nanogpt_round_trip_as_train_py_reads_it(built, tmp_path, layout):
    out = built / layout
    export(out, "nanogpt", dest=tmp_path / "nanogpt")
    data_dir = str(tmp_path / "nanogpt")
    for split, name in (("train", "train.bin"), ("validation", "val.bin")):
        data = np.memmap(os.path.join(data_dir, name), dtype=np.uint16, mode="r")  # nanoGPT train.py's line
        assert data.tolist() == stream(out, split)
        assert len(data) == sum(s["tokens"] for s in manifest(out)["splits"][split]["shards"])
    with open(os.path.join(data_dir, "meta.pkl"), "rb") as f:
        assert pickle.load(f) == {"vocab_size": manifest(out)["tokenizer"]["vocab_size"], "dtype": "uint16"}


def test_nanogpt_ids_past_uint16_are_uint32():
    assert (token_dtype(65536), token_dtype(65537), token_dtype(200_019)) == (np.uint16, np.uint32, np.uint32)


def mds_rows(folder):
    from dataprep.export.mds import import_streaming

    streaming = import_streaming()
    data = streaming.StreamingDataset(local=str(folder), shuffle=False, batch_size=1)
    return [{k: (v.tolist() if isinstance(v, np.ndarray) else int(v)) for k, v in data[i].items()} for i in range(len(data))]


@pytest.mark.parametrize("layout", ["wrap", "bfd", "sft", "sft-packed"])
def test_mds_round_trip_through_streaming_dataset(built, tmp_path, layout):
    out, dest = built / layout, tmp_path / "mds"
    export(out, "mds", dest=dest)
    for split in C.SPLITS:
        rows = read_split(out, split).to_pylist()
        assert mds_rows(dest / split) == rows  # every column: tokens, lengths, pads and, for sft, the mask
        if layout.startswith("sft"):
            assert sum(sum(r[C.LOSS_MASK]) for r in rows) > 0
        index = json.loads((dest / split / "index.json").read_text())
        for shard in index["shards"]:  # mosaicml-streaming's own hashes, recorded and right
            raw = (dest / split / shard["raw_data"]["basename"]).read_bytes()
            assert shard["raw_data"]["hashes"]["sha1"] == hashlib.sha1(raw).hexdigest()


@pytest.mark.parametrize("layout", ["wrap", "bfd", "sft", "sft-packed"])
def test_parquet_keeps_every_column(built, tmp_path, layout):
    out = built / layout
    export(out, "parquet", dest=tmp_path / "pq", split="validation")
    assert pq.read_table(tmp_path / "pq" / "validation.parquet").equals(read_split(out, "validation"))
    assert not (tmp_path / "pq" / "train.parquet").exists()


def test_jsonl_rows_text_and_targets(built, tmp_path):
    out = built / "sft"
    export(out, "jsonl", dest=tmp_path / "jsonl")
    records = [json.loads(line) for line in (RECIPES / "data" / "sft_tasks.jsonl").read_text().splitlines()]
    rendered = {f"Q: {r['prompt']}\nA: {r['completion']}<|endoftext|>": f"{r['completion']}<|endoftext|>" for r in records}
    for split in C.SPLITS:
        lines = [json.loads(line) for line in (tmp_path / "jsonl" / f"{split}.jsonl").read_text().splitlines()]
        rows = read_split(out, split).to_pylist()
        assert [{k: v for k, v in line.items() if k not in ("text", "targets")} for line in lines] == rows
        for line in lines:  # each example decodes to a source record as the template renders it
            (text,), ((target,),) = line["text"], line["targets"]
            assert rendered[text] == target


@pytest.mark.parametrize("layout", ["wrap", "bfd"])
def test_jsonl_pretraining_rows_and_pieces(built, tmp_path, layout):
    out = built / layout
    export(out, "jsonl", dest=tmp_path / "jsonl", split="validation")
    lines = [json.loads(line) for line in (tmp_path / "jsonl" / "validation.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in line.items() if k != "text"} for line in lines] == read_split(out, "validation").to_pylist()
    assert [len(line["text"]) for line in lines] == [len(lens) for _, lens in content_rows(out, "validation")]


def test_jsonl_packed_rows_have_one_text_per_example(built, tmp_path):
    out = built / "sft-packed"
    export(out, "jsonl", dest=tmp_path / "jsonl", split="validation")
    lines = [json.loads(line) for line in (tmp_path / "jsonl" / "validation.jsonl").read_text().splitlines()]
    assert sum(len(line["text"]) for line in lines) == manifest(out)["counts"]["documents"]["validation"]
    assert all(len(line["targets"]) == len(line["text"]) for line in lines)
    assert all(t.startswith("Q: ") and t.endswith("<|endoftext|>") for line in lines for t in line["text"])


def _flip_megatron(dest):
    path = dest / "train.bin"
    data = bytearray(path.read_bytes())
    data[10] ^= 1  # the low byte of the 6th uint16 token
    path.write_bytes(bytes(data))


def _flip_nanogpt(dest):
    data = np.memmap(dest / "train.bin", dtype=np.uint16, mode="r+")
    data[5] ^= 1
    data.flush()


def test_the_mds_check_fails_on_a_flipped_token(built, tmp_path):
    out, dest = built / "sft", tmp_path / "mds"
    export(out, "mds", dest=dest, split="validation")
    rows = read_split(out, "validation").to_pylist()
    shard = dest / "validation" / "shard.00000.mds"
    data = bytearray(shard.read_bytes())
    at = data.index(np.array(rows[0][C.INPUT_IDS][:8], dtype=np.int32).tobytes())
    data[at + 4 * 3] ^= 1  # the 4th token of the first row
    shard.write_bytes(bytes(data))
    found = mds_rows(dest / "validation")
    assert found[1:] == rows[1:]
    with pytest.raises(AssertionError):
        assert found[0] == rows[0]
    index = json.loads((dest / "validation" / "index.json").read_text())
    assert index["shards"][0]["raw_data"]["hashes"]["sha1"] != hashlib.sha1(bytes(data)).hexdigest()


@pytest.mark.parametrize("fmt", ["megatron", "nanogpt"])
def test_the_round_trip_check_fails_on_a_flipped_token(built, tmp_path, fmt):
    out, dest = built / "wrap", tmp_path / fmt
    export(out, fmt, dest=dest)
    if fmt == "megatron":
        _flip_megatron(dest)
        docs, _ = megatron_docs(dest / "train")
        with pytest.raises(AssertionError):
            assert docs == documents(out, "train", "wrap")
    else:
        _flip_nanogpt(dest)
        with pytest.raises(AssertionError):
            assert np.memmap(dest / "train.bin", dtype=np.uint16, mode="r").tolist() == stream(out, "train")
    record = json.loads((dest / "export.json").read_text())
    assert record["splits"]["train"]["files"]["train.bin"]["sha256"] != hashlib.sha256((dest / "train.bin").read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["megatron", "nanogpt"])
def test_token_only_formats_refuse_fine_tuning_rows(built, tmp_path, fmt):
    dest = tmp_path / fmt
    with pytest.raises(ConfigError) as info:
        export(built / "sft", fmt, dest=dest)
    message, fix = info.value.explain()
    assert C.LOSS_MASK in message and "mds" in fix and "parquet" in fix and "jsonl" in fix
    assert not dest.exists() and not (tmp_path / f"{fmt}.incomplete").exists()


def test_cli_export_and_its_refusal(built, tmp_path, capsys):
    assert list(next(p for p in cli.commands["export"].params if p.name == "fmt").type.choices) == list(EXPORTERS)
    with pytest.raises(SystemExit) as info:
        main(["export", str(built / "sft-packed"), "--to", "megatron", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.startswith("error: ") and "fix: export with --to mds / parquet / jsonl" in err
    with pytest.raises(SystemExit) as info:
        main(["export", str(built / "bfd"), "--to", "megatron", "--split", "validation", "--out", str(tmp_path / "m")])
    assert info.value.code == 0 and "validation.bin" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["export.json", "validation.bin", "validation.idx"]


def test_unknown_format_and_split_list_the_choices(built):
    with pytest.raises(ConfigError) as info:
        export(built / "wrap", "arrow")
    assert all(name in info.value.explain()[1] for name in EXPORTERS)
    with pytest.raises(ConfigError, match="train, validation, all"):
        export(built / "wrap", "megatron", split="test")


def test_provenance_names_the_dataset_and_every_file(built, tmp_path):
    out, dest = built / "bfd", tmp_path / "megatron"
    record = export(out, "megatron", dest=dest)
    assert json.loads((dest / "export.json").read_text()) == record
    m = manifest(out)
    assert (record["format"], record["split"], record["export"]) == ("megatron", "all", "dataprep.export/1")
    assert record["dataprep_version"] == m["dataprep_version"]
    assert record["dataset"]["manifest_sha256"] == hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert record["dataset"]["recipe_hash"] == m["recipe_hash"]
    assert record["dataset"]["tokenizer_fingerprint"] == m["tokenizer"]["fingerprint"]
    for split in C.SPLITS:
        entry = record["splits"][split]
        assert entry["rows"] == m["counts"]["rows"][split]
        assert entry["documents"] == m["counts"]["documents"][split]
        assert entry["tokens"] == sum(s["tokens"] for s in m["splits"][split]["shards"])
        assert entry["dtype"] == "uint16"
        for name, f in entry["files"].items():
            data = (dest / name).read_bytes()
            assert (f["bytes"], f["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


def test_an_export_appears_whole_or_not_at_all(built, tmp_path, monkeypatch):
    out, dest = built / "wrap", tmp_path / "megatron"

    def broken(self, ds, split, folder):
        (folder / f"{split}.bin").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Megatron, "write", broken)
    with pytest.raises(OSError):
        export(out, "megatron", dest=dest)
    assert not dest.exists()  # only DEST.incomplete, which the next export replaces
    monkeypatch.undo()
    export(out, "megatron", dest=dest)
    assert not (tmp_path / "megatron.incomplete").exists()
    with pytest.raises(OutputError, match="already exists"):
        export(out, "megatron", dest=dest)
    export(out, "megatron", dest=dest, overwrite=True)
    (tmp_path / "mine").mkdir()
    with pytest.raises(OutputError, match="not a dataprep export"):
        export(out, "megatron", dest=tmp_path / "mine", overwrite=True)
    with pytest.raises(ConfigError, match="inside the dataset"):
        export(out, "megatron", dest=out / "megatron")
    assert not (out / "megatron").exists() and not (out / "megatron.incomplete").exists()


def readme_section() -> str:
    text = (RECIPES.parent / "README.md").read_text(encoding="utf-8")
    start = text.index("## Export:")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_export_section_runs_as_written(built, tmp_path, monkeypatch, capsys):
    """The section's `dataprep export` lines, then its Python block, on the demo datasets."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "demo-pretrain").symlink_to(built / "wrap")
    (tmp_path / "out" / "demo-sft").symlink_to(built / "sft")
    monkeypatch.chdir(tmp_path)
    section = readme_section()
    commands = [shlex.split(line, comments=True) for line in re.findall(r"^dataprep export .*$", section, re.M)]
    assert len(commands) == 5
    for words in commands:
        with pytest.raises(SystemExit) as info:
            main(words[1:])
        assert info.value.code == 0, (words, capsys.readouterr().err)
    from dataprep.export.mds import import_streaming

    import_streaming()  # streaming without torchvision, as the section says
    capsys.readouterr()
    exec(compile(re.search(r"```python\n(.*?)```", section, re.S).group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    counts = manifest(built / "wrap")["counts"]
    assert f"megatron: {counts['documents']['train']} documents" in printed
    assert f"nanogpt: {len(stream(built / 'wrap', 'train'))} tokens; mds: {manifest(built / 'sft')['counts']['rows']['train']} rows" in printed
    assert hashlib.sha256((built / "wrap" / "manifest.json").read_bytes()).hexdigest()[:16] in printed


def test_documents_join_across_rows_and_batches():
    """pieces.py's example: docs [1 1 9] [2 9] [3 3 3 3 9] (9 = EOS), wrap seq_len 4, the last row padded."""
    from types import SimpleNamespace

    import pyarrow as pa

    from dataprep.export.pieces import Documents, content

    rows = pa.record_batch({C.INPUT_IDS: [[1, 1, 9, 2], [9, 3, 3, 3], [3, 9, 0, 0]],
                            C.SEQ_LENS: [[3, 1], [1, 3], [2, 2]], C.NUM_PAD: pa.array([0, 0, 2], pa.int32())})
    facts = SimpleNamespace(rows=SimpleNamespace(layout="stream", ends_with_eos=True, starts_with_bos=False),
                            tokenizer=SimpleNamespace(eos_id=9, bos_id=None))
    for parts in ([rows], [rows.slice(i, 1) for i in range(3)]):  # one batch, or a row per batch
        docs = Documents(facts)
        found = [int(n) for part in parts for n in docs.add(content(part))] + docs.finish().tolist()
        assert found == [3, 2, 5]
        assert [t for part in parts for t in content(part).tokens.tolist()] == [1, 1, 9, 2, 9, 3, 3, 3, 3, 9]
