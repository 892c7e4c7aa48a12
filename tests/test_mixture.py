"""Mixtures (``weight`` / ``tokens`` / ``epochs`` per input or group): the rates resolved from the
available tokens, exact token targets within one document, interleaving, the realized shares on the
bench corpus split into sources by repository (within 1 point of the requested ones), repeats and
subsamples counted, the same shards for any worker count and on Ray (tests/test_engine_ray.py), fine-tuning
recipes too."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dataprep.build.run import run
from dataprep.errors import DataLossError, RecipeError
from dataprep.pack.mixture import MixtureSpec, SourceSpec, Stream, pass_masks, schedule, train_rates, validation_rates
from dataprep.recipe import load_recipe, recipe_from_dict
from dataprep.validate import validate_dataset as validate

from .conftest import DATA, RECIPES, SHARED, read_split, shared_tokenizer
from .test_engine_ray import shard_hashes
from .test_proofs import proofs
from .test_validate_recheck import edit_rows

GPT2 = DATA / "tokenizers" / "gpt2"
BENCH = SHARED / "bench"
CODE = DATA / "corpora" / "code" / "humaneval_python.jsonl"
C4 = DATA / "corpora" / "c4_demo.jsonl"
PLAIN = {"unicode": "none", "strip": False, "collapse_spaces": False}  # documents exactly as read


def spec(*sources: dict, **options) -> MixtureSpec:
    return MixtureSpec(sources=tuple(SourceSpec(name=f"s{i}", entries=(i,), **s) for i, s in enumerate(sources)), **options)


# --- the rates ---------------------------------------------------------------------------------------------


def test_weights_alone_use_the_scarcest_source_whole():
    """0.5 / 0.3 / 0.2 over 1,000 / 900 / 100 tokens: the third limits the mixture (100 = 0.2 T, T = 500)."""
    rates = train_rates(spec({"weight": 5}, {"weight": 3}, {"weight": 2}), [1000, 900, 100])
    assert rates == pytest.approx([0.25, 150 / 900, 1.0])
    assert validation_rates(rates) == rates  # nothing repeats: validation draws at the same rates


def test_a_total_repeats_sources_to_fill_their_shares():
    rates = train_rates(spec({"weight": 1}, {"weight": 1}, tokens=1000), [1000, 250])
    assert rates == pytest.approx([0.5, 2.0])
    assert validation_rates(rates) == pytest.approx([0.25, 1.0])  # same shares, no document twice


def test_weights_beside_fixed_sources_are_shares_of_the_whole():
    """Continued pretraining: the domain corpus once (no key: epochs 1), general text at 20% of the output."""
    rates = train_rates(spec({}, {"weight": 0.2}, {"tokens": 300}), [800, 10_000, 100])
    total = (800 + 300) / 0.8
    assert rates == pytest.approx([1.0, 0.2 * total / 10_000, 3.0])


def test_a_weighted_source_with_nothing_left_is_an_error():
    with pytest.raises(DataLossError, match="s1 have no training document"):
        train_rates(spec({"weight": 1}, {"weight": 1}), [10, 0])
    assert train_rates(spec({"epochs": 2.0}, {"weight": 0.5}), [0, 10]) == [0.0, 0.0]  # epochs of nothing is nothing


def test_a_fractional_pass_comes_within_one_document_of_its_target():
    lengths = np.random.default_rng(3).integers(1, 400, size=2_000)
    for rate in (0.25, 0.5, 0.9, 2.37):
        passes = pass_masks(lengths, rate, (0, 0, 1))
        assert passes[: int(rate)] == [None] * int(rate)
        drawn = int(rate) * lengths.sum() + (lengths[passes[-1]].sum() if rate % 1 else 0)
        assert abs(drawn - rate * lengths.sum()) <= lengths.max() / 2 + 1
    same, other = pass_masks(lengths, 0.5, (0, 0, 1)), pass_masks(lengths, 0.5, (1, 0, 1))
    assert (same[0] == pass_masks(lengths, 0.5, (0, 0, 1))[0]).all()  # seeded: the same sample every run
    assert (same[0] != other[0]).any()  # another seed, another sample


def test_the_streams_are_interleaved_a_block_at_a_time():
    """Every prefix of the schedule holds each source within one block (plus one document) of its share."""
    lengths = [np.full(300, 10), np.full(100, 10), np.full(60, 5)]
    streams = [Stream(n, pass_masks(n, rate, (0, 0, i))) for i, (n, rate) in enumerate(zip(lengths, [1.0, 1.5, 0.5]))]
    targets = [s.target for s in streams]
    assert targets == [3000, 1500, 150]
    drawn = [0, 0, 0]
    for source, start, stop, mask in schedule(streams, 40):
        n = lengths[source][start:stop]
        drawn[source] += int(n.sum() if mask is None else n[mask].sum())
        progress = [d / t for d, t in zip(drawn, targets)]
        assert max(progress) - min(progress) <= 50 / min(targets) + 1e-9  # one block of 40 (+ a document) behind at most
    assert drawn == targets


# --- recipes -----------------------------------------------------------------------------------------------


def recipe(tmp_path: Path, inputs: list[dict], **extra) -> object:
    base = {"task": "pretrain", "inputs": inputs, "normalize": PLAIN,
            "tokenizer": {"path": str(GPT2), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "add_eos": True},
            "packing": {"seq_len": 256}, "split": {"validation": 0.1}, "output": {"chunk_records": 64}}
    return recipe_from_dict({**base, **extra}, base_dir=tmp_path)


@pytest.mark.parametrize("inputs, options, says", [
    ([{"path": "a", "weight": 1, "epochs": 2}], None, "gives weight and epochs"),
    ([{"path": "a", "group": "g", "weight": 1}, {"path": "b", "group": "g", "weight": 2}], None, "group 'g' asks for"),
    ([{"path": "a", "weight": 0.6}, {"path": "b", "weight": 0.5}, {"path": "c"}], None, "weights sum to 1.1"),
    ([{"path": "a", "weight": 1}, {"path": "b", "epochs": 1}], {"tokens": 100}, "give every source a weight"),
])
def test_mixture_mistakes_are_named_in_the_recipe(tmp_path, inputs, options, says):
    with pytest.raises(RecipeError, match=says):
        recipe(tmp_path, inputs, **({"mixture": options} if options else {}))


def test_recipes_without_a_mixture_resolve_as_before(tmp_path):
    plain = recipe(tmp_path, [{"path": "a.jsonl"}])
    assert plain.mixture is None and "mixture" not in plain.resolved
    mixed = recipe(tmp_path, [{"path": "a.jsonl", "group": "g"}, {"path": "b.jsonl", "group": "g", "epochs": 2}])
    assert [(s.name, s.entries, s.requested) for s in mixed.mixture.sources] == [("g", (0, 1), {"epochs": 2})]
    with pytest.raises(RecipeError, match="preference recipe"):
        recipe_from_dict({"task": "preference", "inputs": [{"path": "a", "weight": 1}], "tokenizer": {"path": str(GPT2)}},
                         base_dir=tmp_path)


# --- runs --------------------------------------------------------------------------------------------------

BENCH_DOCS = 4_000  # the bench corpus's first documents, split into three sources by repository
BENCH_LARGEST = 65_536  # but not its books (a few MB each: most of the time, none of the point)


@pytest.fixture(scope="module")
def bench_sources(tmp_path_factory) -> Path:
    """The first documents of ../shared/bench/corpus.jsonl.zst (books left out) as three files: tldr pages,
    the C++ docs, and every other repository."""
    import zstandard

    folder = tmp_path_factory.mktemp("bench_sources")
    files = {name: open(folder / f"{name}.jsonl", "w", encoding="utf-8") for name in ("tldr", "cpp", "other")}
    with open(BENCH / "corpus.jsonl.zst", "rb") as raw:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
        for _, line in zip(range(BENCH_DOCS), text):
            if len(line) > BENCH_LARGEST:
                continue
            repo = json.loads(line)["source"].split(":")[0]
            files["tldr" if repo == "tldr-pages/tldr" else "cpp" if repo == "MicrosoftDocs/cpp-docs" else "other"].write(line)
    for f in files.values():
        f.close()
    return folder


def test_realized_shares_are_within_one_point_on_the_bench_corpus(bench_sources, tmp_path):
    """Weights 0.5 / 0.3 / 0.2 over three repositories' documents: each source's share of the training
    tokens within 1 point of its weight; the counts add up, and `validate` finds nothing."""
    weights = {"tldr": 0.2, "cpp": 0.5, "other": 0.3}
    inputs = [{"path": str(bench_sources / f"{name}.jsonl"), "weight": w} for name, w in weights.items()]
    r = recipe(tmp_path, inputs, tokenizer={"path": str(BENCH / "bpe32k.json"), "eos_token": "<|endoftext|>",
                                            "pad_token": "<|endoftext|>", "add_eos": True},
               packing={"seq_len": 2048}, output={"shard_bytes": 2_000_000})
    m = run(r, tmp_path / "out", workers=2)
    sources = m["mixture"]["sources"]
    shares = {s["name"].rsplit("/", 1)[-1].removesuffix(".jsonl"): s["train"]["share"] for s in sources}
    assert shares == pytest.approx(weights, abs=0.01)
    assert min(s["train"]["epochs"] for s in sources) < 1 and max(s["train"]["epochs"] for s in sources) == pytest.approx(1)
    assert m["counts"]["dropped"]["mixture"] == sum(s[k]["available_documents"] - s[k]["documents"]
                                                    for s in sources for k in ("train", "validation"))
    c = m["counts"]
    assert c["records_read"] == c["records_written"] + sum(c["dropped"].values())
    assert sum(s["train"]["tokens"] for s in sources) == m["packing"]["train"]["content_tokens"] + m["packing"]["train"]["dropped_tokens"]
    assert len(m["splits"]["train"]["shards"]) >= 3
    report = validate(tmp_path / "out")
    assert report.ok, report.findings


def repeats_recipe(tmp_path: Path, **extra):
    return recipe(tmp_path, [{"path": str(CODE), "text_template": "{prompt}{canonical_solution}", "epochs": 2},
                             {"path": str(C4), "epochs": 0.25}], **extra)


def test_repeats_and_subsamples_are_whole_documents(tmp_path):
    """Code twice (epochs 2), C4 at a quarter: every code document appears exactly twice in the training
    rows, C4 documents once or not at all, and the C4 documents left out are counted as `mixture`."""
    m = run(repeats_recipe(tmp_path, packing={"seq_len": 256, "remainder": "pad"}), tmp_path / "out", workers=1)
    ids = np.concatenate(read_split(tmp_path / "out")["input_ids"].to_numpy(zero_copy_only=False))
    stream = [tuple(doc) for doc in np.split(ids, np.flatnonzero(ids == 50256) + 1) if len(doc) > 1]
    seen = Counter(stream)
    tokenizer = shared_tokenizer("gpt2").tokenizer
    code, c4 = m["mixture"]["sources"]
    found = {"code": Counter(), "c4": Counter()}
    source_of = {}
    for name, path, field in (("code", CODE, None), ("c4", C4, "text")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            text = record[field] if field else record["prompt"] + record["canonical_solution"]
            doc = tuple(tokenizer.encode(text).ids + [50256])
            found[name][seen[doc]] += 1
            source_of[doc] = name
    tenth = len(stream) // 10  # interleaved: both sources in the first and in the last tenth of the rows
    assert {source_of[d] for d in stream[:tenth]} == {source_of[d] for d in stream[-tenth:]} == {"code", "c4"}
    train_code = code["train"]["available_documents"]
    assert found["code"][2] == train_code and code["train"]["occurrences"] == 2 * train_code
    assert set(found["c4"]) <= {0, 1} and found["c4"][1] == c4["train"]["documents"] > 0
    assert c4["train"]["tokens"] == pytest.approx(0.25 * c4["train"]["available_tokens"], rel=0.05)
    assert m["inputs"][1]["dropped"]["mixture"] == m["counts"]["dropped"]["mixture"] > 0
    assert validate(tmp_path / "out").ok


def test_recheck_sources_on_a_mixture(tmp_path):
    """`validate --recheck-sources` with every record: documents repeated, subsampled away (counted as left
    out, no more than the manifest says each input lost) and cut by the wrap remainder wherever the draw put
    them pass; one changed token is found (in a repeated document: the changed copy is the extra one)."""
    out = tmp_path / "out"
    run(repeats_recipe(tmp_path), out, workers=1)
    report = validate(out, recheck="all")
    assert report.ok, report.to_text()
    counts = report.stats["recheck"]
    left_out = json.loads((out / "manifest.json").read_text())["counts"]["dropped"]["mixture"]
    assert counts["left_out_by_mixture"] <= left_out <= counts["left_out_by_mixture"] + counts.get("in_remainder", 0)

    def change(rows):
        rows[3]["input_ids"][5] += 1

    edit_rows(out, "train", change)
    found = validate(out, recheck="all").findings  # a repeated document: its other copy is claimed, the changed one is extra
    assert [(f.kind, f.split) for f in found] == [("recheck_extra", "train")] and (found[0].row, found[0].position) <= (3, 5)


def test_the_mixture_is_the_same_for_any_worker_count(tmp_path):
    r = load_recipe(RECIPES / "continued-pretrain-code.yaml", ["output.chunk_records=32"])
    one, two = run(r, tmp_path / "one", workers=1), run(r, tmp_path / "two", workers=2)
    assert shard_hashes(one) == shard_hashes(two) and one["mixture"] == two["mixture"]
    code, general = one["mixture"]["sources"]
    assert code["train"]["epochs"] == 1 and general["requested"] == {"weight": 0.25}
    assert general["train"]["requested_share"] == pytest.approx(0.25, abs=1e-4)


def test_an_interrupted_mixture_resumes(tmp_path, monkeypatch):
    """A crash among the chunks, after some were collected (and bytes written past the checkpoint): the
    resumed run cuts the collected documents' files back to it and writes the shards of a run never
    interrupted."""
    from .test_resume import crash_at, digests, facts

    r = repeats_recipe(tmp_path, output={"chunk_records": 16})
    run(r, tmp_path / "whole", workers=1)
    for at in (5, 20):
        out = tmp_path / f"cut{at}"
        with monkeypatch.context() as patch:
            crash_at(patch, at, KeyboardInterrupt())
            with pytest.raises(KeyboardInterrupt):
                run(r, out, workers=1, checkpoint_every=0)
        collected = list((tmp_path / f"cut{at}.incomplete" / "mixture.incomplete").rglob("*.bin"))
        assert collected
        for path in collected:  # as a crash in the middle of a chunk would: written past the checkpoint
            with open(path, "ab") as fh:
                fh.write(b"\x07" * 24)
        run(r, out, workers=2, resume=True)
        assert digests(out) == digests(tmp_path / "whole") and facts(out) == facts(tmp_path / "whole")


def examples(out: Path) -> Counter:
    """Every example piece of the training rows (not the trailing pad piece) as (ids, mask) pairs, with its count."""
    table = read_split(out)
    found: Counter = Counter()
    columns = ("input_ids", "assistant_masks", "seq_lengths", "num_pad")
    for ids, mask, lengths, pad in zip(*(table[c].to_pylist() for c in columns)):
        lengths = lengths[:-1] if pad else lengths
        for end, n in zip(np.cumsum(lengths), lengths):
            found[tuple(zip(ids[end - n:end], mask[end - n:end]))] += 1
    return found


def test_a_fine_tuning_mixture_keeps_its_masks(tmp_path):
    """demo-sft's pairs and a second file of them reworded (each prompt says "again"), weights 0.25 / 0.75,
    packed bfd: the rows pass validate, every example piece, ids and mask, is one the two files make
    without a mixture, and the trainer's targets proof passes, the records the mixture left out counted
    apart from missing ones. With dedup on and the second file a plain copy, its examples are all
    duplicates: an error names the empty source."""
    plain = load_recipe(RECIPES / "demo-sft.yaml", ["packing.mode=bfd", "filter.dedup=none"])
    first = plain.resolved["inputs"][0]
    source = (plain.base_dir / first["path"]).read_text(encoding="utf-8").splitlines()
    again = tmp_path / "again.jsonl"
    again.write_text("".join(json.dumps({**r, "prompt": "again " + r["prompt"]}) + "\n" for r in map(json.loads, source)))
    both = {**plain.resolved, "inputs": [first, {**first, "path": str(again)}]}
    mixed = {**both, "inputs": [{**first, "group": "a", "weight": 0.25}, {**first, "path": str(again), "group": "b", "weight": 0.75}]}
    m = run(recipe_from_dict(mixed, base_dir=plain.base_dir), tmp_path / "mixed", workers=1)
    run(recipe_from_dict(both, base_dir=plain.base_dir), tmp_path / "plain", workers=1)
    a, b = m["mixture"]["sources"]
    assert a["train"]["share"] == pytest.approx(0.25, abs=0.02) and a["train"]["epochs"] < b["train"]["epochs"] == 1
    drawn, made = examples(tmp_path / "mixed"), examples(tmp_path / "plain")
    assert set(drawn) <= set(made) and all(any(t for _, t in e) for e in drawn)  # each with its targets
    assert sum(drawn.values()) == a["train"]["occurrences"] + b["train"]["occurrences"]
    assert validate(tmp_path / "mixed").ok
    proven = proofs(tmp_path / "mixed")  # the trainer's targets proof
    assert proven["targets"]["pass"] and proven["heldout"]["pass"], proven["targets"]
    assert 0 < proven["targets"]["left_out_by_mixture"] <= m["counts"]["dropped"]["mixture"]
    assert proven["targets"]["found"] + proven["targets"]["left_out_by_mixture"] == proven["targets"]["rendered"]
    copy = tmp_path / "copy.jsonl"
    copy.write_text("\n".join(source) + "\n")
    dedup = {**mixed, "filter": {"dedup": "exact"}, "inputs": [mixed["inputs"][0], {**mixed["inputs"][1], "path": str(copy)}]}
    with pytest.raises(DataLossError, match="source.s. b have no training document left after reading, filtering and dedup"):
        run(recipe_from_dict(dedup, base_dir=plain.base_dir), tmp_path / "dedup", workers=1)


def test_a_spool_lines_up_stats_that_come_and_go(tmp_path):
    """Which per-document stats a chunk has depends on its data (the languages it holds): a stat new in a
    later chunk reads 0 for the earlier documents, one missing from a chunk reads 0 for its documents."""
    from dataprep.build.mixing import Spool

    spool = Spool(tmp_path / "spool")
    spool.append({"lengths": np.array([3, 4]), "s.en": np.array([1, 1])}, 2)
    spool.append({"lengths": np.array([5]), "s.de": np.array([1])}, 1)
    spool.append({"lengths": np.array([6, 7]), "s.en": np.array([0, 1]), "s.de": np.array([1, 0])}, 2)
    spool.close()
    assert [spool.read(name).tolist() for name in ("lengths", "s.en", "s.de")] == [
        [3, 4, 5, 6, 7], [1, 1, 0, 0, 1], [0, 0, 1, 1, 0]]
