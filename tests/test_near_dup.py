"""``filter.dedup: minhash``: near-duplicates found on planted pairs made from real paragraphs
(benchmarks/near_dup.py at a small scale), the first of a cluster kept, band collisions never
dropping alone, and the same shards for any worker count, on Ray and after a resume."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dataprep.build import near_dup, seen_set
from dataprep.build.near_dup import NearDupIndex
from dataprep.build.run import run
from dataprep.build.seen_set import SeenSet
from dataprep.errors import RecipeError
from dataprep.recipe import recipe_from_dict
from dataprep.text import minhash
from dataprep.text.minhash import MinhashSpec

from .conftest import DATA
from .test_engine_ray import needs_ray, shard_hashes
from .test_resume import crash_at, digests, facts

REPO = Path(__file__).resolve().parents[1]
GPT2 = DATA / "tokenizers" / "gpt2"
_spec = importlib.util.spec_from_file_location("near_dup_bench", REPO / "benchmarks" / "near_dup.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up while the class is made
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def pairs():
    made = bench.planted_pairs(400)
    js = np.array([p.jaccard for p in made])
    assert (js >= bench.HIGH).sum() >= 80 and (js <= bench.LOW).sum() >= 60  # both goals have pairs to score
    return made


def planted_scores(pairs, spec: MinhashSpec) -> dict[str, float]:
    docs = bench.stream(pairs)
    dropped = bench.dataprep_dropped(docs, spec, chunk=64)
    back = np.empty(len(pairs), dtype=bool)
    back[np.random.default_rng(1).permutation(len(pairs))] = dropped[len(pairs):]
    assert not dropped[: len(pairs)].any()  # the originals are distinct paragraphs: none is dropped
    return bench.scores(pairs, back)


def test_planted_pairs_meet_the_recall_and_false_removal_goals(pairs):
    s = planted_scores(pairs, MinhashSpec())
    assert s["recall"] >= 0.95 and s["false_removal"] <= 0.01, s


def test_the_goals_fail_without_the_jaccard_check_or_with_one_band(pairs, monkeypatch):
    """The planted set tells a broken index from a working one."""
    with monkeypatch.context() as patch:  # every band collision drops (the estimate is not checked)
        patch.setattr(MinhashSpec, "agree", property(lambda self: 0))
        assert planted_scores(pairs, MinhashSpec())["false_removal"] > 0.05
    assert planted_scores(pairs, MinhashSpec(bands=1, rows=6))["recall"] < 0.9  # one band proposes few pairs


def test_the_signature_estimates_the_true_jaccard(pairs):
    spec = MinhashSpec()
    errors = []
    for p in pairs[:150]:
        sigs = minhash.signatures([p.original, p.variant], spec)
        errors.append(minhash.agreement(sigs[0], sigs[1:])[0] / spec.permutations - p.jaccard)
    errors = np.array(errors)
    # 120 permutations: standard error sqrt(J(1-J)/120) <= 0.046
    assert abs(errors.mean()) < 0.015 and np.abs(errors).mean() < 0.05, (errors.mean(), np.abs(errors).mean())


def test_signatures_do_not_depend_on_the_chunk_or_the_seed_alone():
    spec = MinhashSpec()
    texts = [p.original for p in bench.planted_pairs(20)]
    together = minhash.signatures(texts, spec)
    apart = np.concatenate([minhash.signatures(texts[i : i + 3], spec) for i in range(0, len(texts), 3)])
    assert np.array_equal(together, apart)
    other_seed = minhash.signatures(texts, dataclasses.replace(spec, seed=1))
    assert (other_seed != together).mean() > 0.99
    assert not minhash.has_shingles(minhash.signatures(["", "... !!"], spec)).any()  # no word: never compared


def sig_with(values: dict[int, int], spec: MinhashSpec, base: int) -> np.ndarray:
    sig = np.arange(base, base + spec.permutations, dtype=np.uint32)
    for at, value in values.items():
        sig[at] = value
    return sig


def test_a_band_collision_alone_never_drops():
    """Two signatures that share one whole band (6 of 120 values) are proposed, and kept."""
    spec = MinhashSpec()
    first = sig_with({}, spec, 1000)
    second = sig_with({k: first[k] for k in range(6)}, spec, 5000)  # band 0 equal, the rest differ
    index = NearDupIndex(spec)
    dropped = index.drop_mask(np.stack([first, second]), np.ones(2, dtype=bool))
    assert not dropped.any() and index.stats()["candidates_rejected"] == 1
    close = sig_with({k: first[k] for k in range(spec.agree)}, spec, 9000)  # 84 of 120 agree: the threshold
    below = sig_with({k: first[k] for k in range(spec.agree - 1)}, spec, 9000)
    assert index.drop_mask(np.stack([below, close]), np.ones(2, dtype=bool)).tolist() == [False, True]


def test_the_first_of_a_cluster_in_input_order_is_kept(pairs):
    spec = MinhashSpec()
    high = [p for p in pairs if p.jaccard >= 0.9][:2]
    a, b = high
    docs = [a.variant, a.original, b.original, a.variant + " extra words here", b.variant]
    index = NearDupIndex(spec)
    dropped = index.drop_mask(minhash.signatures(docs, spec), np.ones(len(docs), dtype=bool))
    assert dropped.tolist() == [False, True, False, True, True]
    assert index.stats() == {"documents": 3, "clusters": 2, "largest_cluster": 3, "candidates_rejected": 0}
    reverse = NearDupIndex(spec).drop_mask(minhash.signatures(docs[::-1], spec), np.ones(len(docs), dtype=bool))
    assert reverse.tolist()[-1] is True  # a.variant, first above, now comes last and is the one dropped


def test_char_shingles_find_near_duplicates_in_text_without_spaces():
    zh = [json.loads(line)["text"] for line in (DATA / "corpora" / "multilingual" / "xquad_contexts.jsonl").open()
          if json.loads(line)["lang"] == "zh"][:40]
    spec = MinhashSpec(shingle="char", ngram=5)
    edited = [t[: len(t) // 2] + "之" + t[len(t) // 2 :] for t in zh]  # one character inserted: Jaccard > 0.95
    dropped = NearDupIndex(spec).drop_mask(minhash.signatures(zh + edited, spec), np.ones(80, dtype=bool))
    assert not dropped[:40].any() and dropped[40:].all()
    words = dataclasses.replace(spec, shingle="word")  # whole sentences are one \w+ "word": 1 char changes it
    assert NearDupIndex(words).drop_mask(minhash.signatures(zh + edited, words), np.ones(80, dtype=bool))[40:].mean() < 0.5


def planted_recipe(tmp_path: Path, pairs, **filter_options):
    docs = bench.stream(pairs[:120])
    docs.insert(5, docs[2])  # an exact copy: a duplicate, never a near_duplicate
    with open(tmp_path / "planted.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"text": d}) + "\n" for d in docs)
    return recipe_from_dict(
        {"task": "pretrain", "inputs": [{"path": "planted.jsonl"}],
         "tokenizer": {"path": str(GPT2), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
         "filter": {"dedup": "minhash", **filter_options}, "packing": {"mode": "wrap", "seq_len": 256},
         "split": {"validation": 0.1}, "output": {"chunk_records": 17, "shard_bytes": 40_000}},
        base_dir=tmp_path,
    ), docs


def test_the_run_drops_what_the_index_drops_for_any_worker_count(tmp_path, pairs):
    recipe, docs = planted_recipe(tmp_path, pairs)
    one = run(recipe, tmp_path / "one", workers=1)
    two = run(recipe, tmp_path / "two", workers=2)
    assert shard_hashes(one) == shard_hashes(two) and one["counts"] == two["counts"]
    unique = docs[:5] + docs[6:]
    expected = int(bench.dataprep_dropped(unique, MinhashSpec()).sum())
    assert expected > 20 and one["counts"]["dropped"] == {"duplicate": 1, "near_duplicate": expected}
    assert one["inputs"][0]["dropped"] == one["counts"]["dropped"]
    exact = run(recipe_from_dict({**recipe.resolved, "filter": {"dedup": "exact"}}, base_dir=tmp_path), tmp_path / "exact")
    assert exact["counts"]["records_written"] == one["counts"]["records_written"] + expected


def test_the_manifest_counts_the_clusters(tmp_path, pairs):
    recipe, docs = planted_recipe(tmp_path, pairs)
    manifest = run(recipe, tmp_path / "out", workers=1)
    index = NearDupIndex(MinhashSpec())
    unique = docs[:5] + docs[6:]
    index.drop_mask(minhash.signatures(unique, MinhashSpec()), np.ones(len(unique), dtype=bool))
    assert manifest["counts"]["near_duplicates"] == index.stats()
    assert manifest["counts"]["near_duplicates"]["documents"] == manifest["counts"]["dropped"]["near_duplicate"]


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@needs_ray
def test_the_same_shards_on_ray(tmp_path, pairs, local_ray):
    recipe, _ = planted_recipe(tmp_path, pairs)
    local = run(recipe, tmp_path / "local", workers=2)
    on_ray = run(recipe, tmp_path / "ray", engine="ray")
    assert shard_hashes(on_ray) == shard_hashes(local) and on_ray["counts"] == local["counts"]
    assert local["counts"]["dropped"]["near_duplicate"] > 20


@pytest.mark.parametrize("table_limit", [near_dup.TABLE_LIMIT, 50])  # 50: the index spills to disk, on resume too
def test_an_interrupted_run_resumes_with_its_near_duplicate_index(tmp_path, pairs, monkeypatch, table_limit):
    monkeypatch.setattr(near_dup, "TABLE_LIMIT", table_limit)
    recipe, _ = planted_recipe(tmp_path, pairs)
    run(recipe, tmp_path / "whole", workers=1)
    for at in (3, 12):  # before the variants, and among them (each of their near-originals in minhash.bin)
        out = tmp_path / f"cut{at}"
        with monkeypatch.context() as patch:
            crash_at(patch, at, KeyboardInterrupt())
            with pytest.raises(KeyboardInterrupt):
                run(recipe, out, workers=1, checkpoint_every=0)
        assert (tmp_path / f"cut{at}.incomplete" / "checkpoint" / "minhash.bin").stat().st_size > 0
        run(recipe, out, workers=2, resume=True)
        assert digests(out) == digests(tmp_path / "whole") and facts(out) == facts(tmp_path / "whole")


def test_recipe_minhash_options(tmp_path):
    base = {"task": "pretrain", "inputs": [{"path": "x.jsonl"}], "tokenizer": {"path": str(GPT2)}}
    plain = recipe_from_dict(dict(base), base_dir=tmp_path)
    assert "minhash" not in plain.resolved["filter"]  # other recipes resolve (and hash) as before
    near = recipe_from_dict({**base, "filter": {"dedup": "minhash", "minhash": {"bands": 16, "rows": 8}}}, base_dir=tmp_path)
    assert near.filter.minhash == MinhashSpec(bands=16, rows=8) and near.filter.minhash.permutations == 128
    assert near.resolved["filter"]["minhash"]["threshold"] == 0.7  # the schema's default, recorded
    bad = [
        ({**base, "filter": {"minhash": {"bands": 4}}}, "filter.minhash applies to dedup: minhash only"),
        ({**base, "filter": {"dedup": "minhash", "minhash": {"shingle": "line"}}}, "filter.minhash.shingle"),
        ({**base, "objective": "mlm", "filter": {"dedup": "minhash"}}, "minhash is for task: pretrain with objective: clm"),
    ]
    for data, message in bad:
        with pytest.raises(RecipeError) as err:
            recipe_from_dict(data, base_dir=tmp_path)
        assert message in str(err.value), str(err.value)


def test_near_duplicates_are_the_recipes_choice_not_lost_records(tmp_path, pairs):
    """on_error: skip with the default max_dropped_fraction: dropping near-duplicates is what the
    recipe asked for, as duplicates are, so it never fails the run as lost records."""
    recipe, _ = planted_recipe(tmp_path, pairs)
    recipe = recipe_from_dict({**recipe.resolved, "on_error": "skip"}, base_dir=tmp_path)
    assert run(recipe, tmp_path / "out", workers=1)["counts"]["dropped"]["near_duplicate"] > 20


# --- exact dedup in bounded memory (dataprep/build/seen_set.py; #19 item 7) --------------------


def test_the_spilling_set_answers_as_a_python_set(monkeypatch):
    """Digests drawn with repeats through a set that holds 100 in memory: several levels of runs on
    disk, merged 7 rows per run at a time (digests that share their first half among them); every answer the same as a plain set's, and the runs'
    folder removed after."""
    monkeypatch.setattr(seen_set, "MERGE_BLOCK", 7)
    rng = np.random.default_rng(0)
    pool = [rng.bytes(16) for _ in range(12_000)]
    pool += [pool[i][:8] + bytes(8) for i in range(300)] + [pool[i][:8] + bytes(7) + b"x" for i in range(300)]  # equal first halves
    seen, reference = SeenSet(limit=100), set()
    for _ in range(150):
        digests = [pool[i] for i in rng.integers(0, len(pool), size=200)]
        expected = [d not in reference and not reference.add(d) for d in digests]
        assert seen.first_seen(digests).tolist() == expected
    assert len(seen) == len(reference) and len(seen.disk.levels) >= 3 and len(seen.recent) < 100
    folder = seen.disk.folder()
    del seen
    assert not folder.exists()


def repeated_corpus(tmp_path: Path) -> Path:
    lines = (DATA / "corpora" / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(0)
    lines += [lines[i] for i in rng.integers(0, len(lines), size=150)]  # exact copies, after many spills
    path = tmp_path / "repeated.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_run_that_spills_its_dedup_set_writes_the_same_shards(tmp_path, monkeypatch):
    recipe = recipe_from_dict(
        {"task": "pretrain", "inputs": [{"path": str(repeated_corpus(tmp_path))}],
         "tokenizer": {"path": str(GPT2), "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
         "packing": {"seq_len": 256}, "output": {"chunk_records": 16, "shard_bytes": 60_000}, "split": {"validation": 0.1}},
        base_dir=tmp_path,
    )
    whole = run(recipe, tmp_path / "whole", workers=1)
    assert whole["counts"]["dropped"]["duplicate"] >= 100
    monkeypatch.setattr(seen_set, "LIMIT", 8)  # a spill every 8 new documents
    spills = []
    monkeypatch.setattr(SeenSet, "_spill", lambda self, original=SeenSet._spill: spills.append(1) or original(self))
    assert facts_of(run(recipe, tmp_path / "spilled", workers=2)) == facts_of(whole) and len(spills) > 15  # one per chunk
    with monkeypatch.context() as patch:
        crash_at(patch, 20, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            run(recipe, tmp_path / "cut", workers=1, checkpoint_every=0)
    run(recipe, tmp_path / "cut", workers=1, resume=True)  # seen.bin's digests re-added in blocks of 8
    assert digests(tmp_path / "cut") == digests(tmp_path / "whole") and facts(tmp_path / "cut") == facts(tmp_path / "whole")


def facts_of(manifest: dict) -> tuple:
    return shard_hashes(manifest), manifest["counts"]


def test_the_near_duplicate_index_decides_the_same_when_it_spills(pairs, monkeypatch):
    """Band keys and signatures of earlier chunks on disk (a spill every ~3 documents at 20 bands):
    the same documents dropped, the same clusters, as with everything in memory."""
    docs, spec = bench.stream(pairs), MinhashSpec()
    in_memory = NearDupIndex(spec)
    expected = [in_memory.drop_mask(minhash.signatures(docs[i : i + 16], spec), np.ones(len(docs[i : i + 16]), dtype=bool))
                for i in range(0, len(docs), 16)]
    monkeypatch.setattr(near_dup, "TABLE_LIMIT", 50)
    spilling = NearDupIndex(spec)
    got = [spilling.drop_mask(minhash.signatures(docs[i : i + 16], spec), np.ones(len(docs[i : i + 16]), dtype=bool))
           for i in range(0, len(docs), 16)]
    assert np.array_equal(np.concatenate(got), np.concatenate(expected)) and spilling.stats() == in_memory.stats()
    assert spilling.disk.runs() >= 2 and spilling.spilled > 0.9 * spilling.kept and len(spilling.table) < 50 + 16 * 20
    assert np.array_equal(spilling.unsaved(), in_memory.unsaved())  # what a checkpoint appends, in order


def test_recheck_sources_counts_the_near_duplicates(tmp_path, pairs):
    """`validate --recheck-sources` with every record: the near-duplicates the index dropped are not in the
    rows, and are counted (at most the manifest's near_duplicate drops), not reported as a stale dataset;
    a changed token is still found."""
    from dataprep.validate import validate_dataset

    from .test_validate_recheck import edit_rows

    recipe, _ = planted_recipe(tmp_path, pairs)
    m = run(recipe, tmp_path / "out", workers=1)
    report = validate_dataset(tmp_path / "out", recheck="all")
    assert report.ok, report.to_text()
    assert 0 < report.stats["recheck"]["near_duplicates"] <= m["counts"]["dropped"]["near_duplicate"]

    def change(rows):
        rows[2]["input_ids"][7] += 1

    edit_rows(tmp_path / "out", "train", change)
    assert [f.kind for f in validate_dataset(tmp_path / "out", recheck="all").findings] == ["recheck_tokens"]
