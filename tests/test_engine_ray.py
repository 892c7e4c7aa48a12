"""The Ray engine: the same shards as the local engine, byte for byte, even when a worker dies.

Runs on a local 2-CPU Ray instance (started once for the module). The tests that need Ray are
skipped only when Ray is not installed (``pip install 'dataprep[ray]'``; ``make test`` installs it).
"""

from __future__ import annotations

import errno
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from dataprep import columns as C
from dataprep.build import run as pipeline
from dataprep.tasks import pretrain
from dataprep.errors import ConfigError, InputError, OutputError
from dataprep.build.run import run
from dataprep.read import resolve_inputs
from dataprep.recipe import load_recipe, recipe_from_dict

from .conftest import DATA, RECIPES

try:
    import ray
except ImportError:  # the engine's own error is tested below without Ray
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed: pip install 'dataprep[ray]'")

C4 = DATA / "corpora" / "c4_demo.jsonl"
GPT2 = DATA / "tokenizers" / "gpt2"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # The dying worker below is defined here; ship it by value (workers cannot import tests/).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


def pretrain_recipe(tmp_path: Path, mode: str, source: str = str(C4)):
    return recipe_from_dict(
        {
            "task": "pretrain",
            "inputs": [{"path": source}],
            "tokenizer": {"path": str(GPT2)},
            "packing": {"mode": mode, "seq_len": 256, "buffer_tokens": 5000, "remainder": "pad"},
            "split": {"validation": 0.1},
            "output": {"chunk_records": 37, "shard_bytes": 40000},  # 9 chunks, several shards
        },
        base_dir=tmp_path,
    )


def sft_recipe():
    return load_recipe(RECIPES / "dialogsum.yaml", ["output.chunk_records=64", "output.shard_bytes=200000"])


def shard_hashes(manifest: dict) -> dict[str, list[str]]:
    return {split: [s["sha256"] for s in manifest["splits"][split]["shards"]] for split in C.SPLITS}


@needs_ray
@pytest.mark.parametrize("mode", ["wrap", "bfd"])
def test_pretrain_shards_identical_on_ray(tmp_path, local_ray, mode):
    recipe = pretrain_recipe(tmp_path, mode)
    local = run(recipe, tmp_path / "local", workers=2)
    on_ray = run(recipe, tmp_path / "ray", engine="ray")
    assert shard_hashes(on_ray) == shard_hashes(local)
    assert len(shard_hashes(local)["train"]) > 1
    assert on_ray["counts"] == local["counts"] and on_ray["run"]["engine"] == "ray"


@needs_ray
def test_sft_shards_identical_on_ray(tmp_path, local_ray):
    local = run(sft_recipe(), tmp_path / "local", workers=1)
    on_ray = run(sft_recipe(), tmp_path / "ray", engine="ray")
    assert shard_hashes(on_ray) == shard_hashes(local)
    assert on_ray["sft"] == local["sft"]


@needs_ray
@pytest.mark.parametrize("per_block", [1, 4])
def test_blocks_of_chunks_and_a_bounded_number_in_flight(tmp_path, local_ray, monkeypatch, per_block):
    """Every block that comes back holds ``per_block`` chunks (a file's last one up to that many; one
    row each), two files' worth in input order, and the driver's loop never holds more than its bounds
    (here squeezed to one block per worker, one result waiting per worker) however many chunks there
    are: the shards are still the local engine's."""
    from dataprep.build import ray_chunks, ray_feed

    small = tmp_path / "small.jsonl"
    small.write_text("".join(C4.read_text(encoding="utf-8").splitlines(keepends=True)[-5:]), encoding="utf-8")
    recipe = pretrain_recipe(tmp_path, "wrap")
    recipe = recipe_from_dict({**recipe.resolved, "inputs": [{"path": str(C4)}, {"path": str(small)}]}, base_dir=tmp_path)
    files = resolve_inputs(recipe.inputs, base_dir=tmp_path)
    chunks_per_file = Counter(index for index, _ in pretrain.iter_chunks(files, recipe, Counter(), Counter()))
    assert chunks_per_file[0] > 1 and chunks_per_file[1] == 1

    block_rows, sources, feeds = [], [], []
    delivered, start = ray_chunks.delivered, ray_feed.start

    def counted_blocks(table):
        block_rows.append(table.num_rows)
        for block in delivered(table):
            sources.append(block.source)
            yield block

    monkeypatch.setattr(ray_chunks, "delivered", counted_blocks)
    monkeypatch.setattr(ray_feed, "start", lambda *a, **k: feeds.append(start(*a, **k)) or feeds[-1])
    monkeypatch.setattr(ray_feed, "PER_WORKER", 1)
    monkeypatch.setattr(ray_feed, "RESULTS_PER_WORKER", 1)
    monkeypatch.setattr(ray_feed, "chunks_per_block", lambda *args: per_block)  # a small corpus gets 1
    local = run(recipe, tmp_path / "local", workers=2)
    on_ray = run(recipe, tmp_path / "ray", engine="ray")
    whole, rest = divmod(chunks_per_file[0], per_block)
    assert block_rows == [per_block] * whole + [rest] * bool(rest) + [1]  # file 0 in blocks, then file 1's one chunk
    assert Counter(sources) == chunks_per_file and sources == sorted(sources)
    [feed] = feeds
    assert len(feed.workers) == 2 and len(feed.readers) == 2  # one reader per file, at most one per CPU
    assert feed.peak["per_worker"] == 1 and feed.peak["results"] <= 2
    assert feed.peak["reads"] <= 2 * ray_feed.READS_AHEAD
    assert shard_hashes(on_ray) == shard_hashes(local) and on_ray["counts"] == local["counts"]


def test_blocks_fill_32_mib_while_every_worker_gets_eight():
    from dataprep.build.ray_feed import chunks_per_block

    mib = 1 << 20
    assert chunks_per_block(4 * mib, 100_000 * mib, 64) == 8  # the default chunk_bytes: 8 chunks a block
    assert chunks_per_block(32 * mib, 100_000 * mib, 64) == 1 and chunks_per_block(None, 100_000 * mib, 64) == 1
    assert chunks_per_block(4 * mib, 40 * mib, 4) == 1  # 10 chunks for 4 workers: one a block
    assert chunks_per_block(4 * mib, 4 * 8 * 4 * mib * 3, 4) == 3  # 3 chunks a block: 8 blocks a worker


def test_a_restarted_reader_sends_the_blocks_a_live_one_would(tmp_path):
    """A reader actor that died loses its open files; the retried read ``k`` reads the file again and
    skips the chunks already sent, so the retry sends what the first reader would have. A read
    queued after the file's last block sends nothing."""
    pytest.importorskip("ray")
    from dataprep.build import ray_chunks

    recipe = pretrain_recipe(tmp_path, "wrap")
    files = resolve_inputs(recipe.inputs, base_dir=tmp_path)
    reader = pretrain.chunk_reader(recipe)
    live = ray_chunks.FileReader(reader, files, 2)
    blocks = []
    while not blocks or blocks[-1][1] == ray_chunks.MORE:
        blocks.append(live.read(0, len(blocks)))
    assert [b.num_rows for b, _ in blocks] == [2, 2, 2, 2, 1] and blocks[-1][1] == ray_chunks.LAST  # 9 chunks
    assert live.read(0, 5) == (None, ray_chunks.PAST)
    for k in (0, 2, 4):
        restarted = ray_chunks.FileReader(reader, files, 2)
        block, state = restarted.read(0, k)
        assert state == blocks[k][1] and block.equals(blocks[k][0])
    assert not blocks[2][0].equals(blocks[0][0])  # the blocks differ: a reader that did not skip would fail


@needs_ray
def test_unreadable_records_are_counted_as_on_the_local_engine(tmp_path, local_ray):
    """on_error: skip: each file's unreadable records reach the manifest's counts, even from a
    file with no readable record at all (its only block carries nothing but counts)."""
    lines = C4.read_text(encoding="utf-8").splitlines()[:120]
    (tmp_path / "a-broken.jsonl").write_text('{"text": 3}\n{not json\n[1, 2]\n', encoding="utf-8")
    mixed = [line if i % 7 else '{"text": "cut' for i, line in enumerate(lines)]
    (tmp_path / "b-mixed.jsonl").write_text("\n".join(mixed) + "\n", encoding="utf-8")
    recipe = recipe_from_dict(
        {"task": "pretrain", "inputs": [{"path": "*.jsonl"}], "tokenizer": {"path": str(GPT2)}, "on_error": "skip", "max_dropped_fraction": 1,
         "packing": {"mode": "wrap", "seq_len": 256}, "output": {"chunk_records": 16}, "split": {"validation": 0.1}},
        base_dir=tmp_path,
    )
    local = run(recipe, tmp_path / "local", workers=1)
    on_ray = run(recipe, tmp_path / "ray", engine="ray")
    assert local["counts"]["dropped"]["malformed_json"] == 1 + len(mixed[::7])
    assert local["counts"]["dropped"]["non_string_field"] == 1 and local["counts"]["dropped"]["not_an_object"] == 1
    assert local["counts"]["records_read"] == 3 + len(mixed)
    assert on_ray["counts"] == local["counts"]
    assert shard_hashes(on_ray) == shard_hashes(local)


def _dies_once(marker: str, setup, *args):
    """A chunk function whose first call (in any worker) kills its own process, once."""
    fn = setup(*args)

    def process(item):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return fn(item)
        os._exit(1)  # the worker process dies mid-task, as when a node is lost or OOM-killed

    return process


@needs_ray
def test_killed_worker_is_retried_and_output_is_identical(tmp_path, local_ray, monkeypatch):
    recipe = pretrain_recipe(tmp_path, "wrap")
    local = run(recipe, tmp_path / "local", workers=1)
    marker = tmp_path / "killed-once"
    task_for = pipeline.task_for

    class Dying:  # the recipe's own task, whose worker dies once
        def __init__(self, task):
            self.task, self.name = task, task.name

        def prepare_tokenizer(self, *args):
            return self.task.prepare_tokenizer(*args)

        def local_mode(self, recipe):
            return self.task.local_mode(recipe)

        def plan(self, *args):
            plan = self.task.plan(*args)
            setup, setup_args = plan.worker
            plan.worker = (_dies_once, (str(marker), setup, *setup_args))
            return plan

    monkeypatch.setattr(pipeline, "task_for", lambda recipe: Dying(task_for(recipe)))
    on_ray = run(recipe, tmp_path / "ray", engine="ray")
    assert marker.exists()  # a worker did die
    assert shard_hashes(on_ray) == shard_hashes(local)


@needs_ray
def test_worker_error_is_the_local_one(tmp_path, local_ray):
    src = tmp_path / "pairs.jsonl"
    src.write_text('{"p": "Q", "c": "A"}\n{"p": "' + "long " * 50 + '", "c": "A"}\n', encoding="utf-8")
    recipe = recipe_from_dict(
        {"task": "sft", "inputs": [{"path": str(src), "fields": {"prompt": "p", "completion": "c"}}],
         "tokenizer": {"path": str(GPT2)}, "template": "prompt_completion", "max_length": 16, "overflow": "error"},
        base_dir=tmp_path,
    )
    with pytest.raises(InputError) as local:  # raised in the chunk worker: line 2 is too long
        run(recipe, tmp_path / "a", workers=1)
    with pytest.raises(InputError) as on_ray:
        run(recipe, tmp_path / "b", engine="ray")
    assert str(on_ray.value) == str(local.value) and "line 2" in str(local.value)
    assert not (tmp_path / "b").exists()


@needs_ray
def test_reader_error_is_the_local_one(tmp_path, local_ray):
    """A record the reader cannot parse (``on_error: raise``): raised in the reader actor, re-raised
    here as the local engine raises it (file, line)."""
    lines = C4.read_text(encoding="utf-8").splitlines()[:60]
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:50] + ['{"text": "cut'] + lines[50:]) + "\n", encoding="utf-8")
    recipe = recipe_from_dict(
        {"task": "pretrain", "inputs": [{"path": "cut.jsonl"}], "tokenizer": {"path": str(GPT2)},
         "packing": {"mode": "wrap", "seq_len": 256}, "output": {"chunk_records": 16}}, base_dir=tmp_path)
    with pytest.raises(InputError) as local:
        run(recipe, tmp_path / "a", workers=1)
    with pytest.raises(InputError) as on_ray:
        run(recipe, tmp_path / "b", engine="ray")
    assert str(on_ray.value) == str(local.value) and "line 51" in str(local.value)
    assert not (tmp_path / "b").exists()


def test_missing_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'dataprep\[ray\]'"):
        run(pretrain_recipe(tmp_path, "wrap"), tmp_path / "out", engine="ray")
    assert not (tmp_path / "out").exists()


def test_address_needs_the_ray_engine(tmp_path):
    with pytest.raises(ConfigError, match="--engine ray"):
        run(pretrain_recipe(tmp_path, "wrap"), tmp_path / "out", address="auto")


@needs_ray
def test_ray_reads_and_writes_urls(tmp_path, local_ray):
    """Inputs and the output given as filesystem URLs: the shards the local paths give."""
    local = run(pretrain_recipe(tmp_path, "wrap"), tmp_path / "local", workers=2)
    remote = run(pretrain_recipe(tmp_path, "wrap", C4.as_uri()), (tmp_path / "remote").as_uri(), workers=2, engine="ray")
    assert shard_hashes(remote) == shard_hashes(local)
    assert remote["inputs"][0]["path"] == C4.as_uri() and remote["inputs"][0]["sha256"] == local["inputs"][0]["sha256"]


@needs_ray
def test_unreachable_cluster_fails_fast_with_a_fix():
    from dataprep.build.engine_ray import _check_reachable
    from dataprep.errors import EngineError

    with pytest.raises(EngineError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1 .*ray start --head"):
        _check_reachable("127.0.0.1:1")
    _check_reachable("auto")  # resolved by Ray itself


@needs_ray
@pytest.mark.parametrize("first,then", [("local", "ray"), ("ray", "local")])
def test_a_run_interrupted_on_one_engine_resumes_on_the_other(tmp_path, local_ray, monkeypatch, first, then):
    """Checkpoints name chunks of the inputs, never of an engine: a run cut on either engine
    resumes on the other to the same bytes (the chunks before the checkpoint are read, not worked)."""
    from dataprep.build import ordered

    from .test_resume import crash_at, digests, facts

    recipe = pretrain_recipe(tmp_path, "bfd")
    run(recipe, tmp_path / "whole", workers=2)
    with monkeypatch.context() as patch:  # a full disk: resumable, and no KeyboardInterrupt inside Ray's iterator
        crash_at(patch, 4, OSError(errno.ENOSPC, "No space left on device"))
        with pytest.raises(OutputError, match="(?s)no space left.*--resume"):
            run(recipe, tmp_path / "out", workers=2, engine=first, checkpoint_every=0)
    worked = []
    original = ordered.OrderedStage.add
    monkeypatch.setattr(ordered.OrderedStage, "add", lambda self, result: (worked.append(result.source), original(self, result))[1])
    run(recipe, tmp_path / "out", workers=2, engine=then, resume=True)
    assert len(worked) == 9 - 3  # the three chunks the checkpoint holds were not worked again
    assert digests(tmp_path / "out") == digests(tmp_path / "whole")
    assert facts(tmp_path / "out") == facts(tmp_path / "whole")


# --- #19's stages on Ray, here so that they share this module's Ray instance -------------------------


@needs_ray
def test_a_mixture_is_the_same_on_ray(tmp_path, local_ray):
    r = load_recipe(RECIPES / "continued-pretrain-code.yaml", ["output.chunk_records=64"])
    on_ray, local = run(r, tmp_path / "ray", engine="ray"), run(r, tmp_path / "local", workers=2)
    assert shard_hashes(on_ray) == shard_hashes(local) and on_ray["mixture"] == local["mixture"]


@needs_ray
def test_decontamination_is_the_same_on_ray(tmp_path, local_ray):
    from .test_decontaminate_run import pretrain

    r = pretrain(tmp_path)
    on_ray, local = run(r, tmp_path / "ray", engine="ray"), run(r, tmp_path / "local", workers=2)
    assert shard_hashes(on_ray) == shard_hashes(local) and on_ray["counts"] == local["counts"]
    assert (tmp_path / "ray" / "contamination.jsonl").read_bytes() == (tmp_path / "local" / "contamination.jsonl").read_bytes()


# --- segments (packing.segment_tokens) as Ray tasks: the driver never touches a token -------------


@needs_ray
@pytest.mark.parametrize("mode,cpus", [("wrap", 1), ("bfd", 4)])
def test_segments_run_as_ray_tasks_and_write_the_local_engines_shards(tmp_path, local_ray, monkeypatch, mode, cpus):
    """Every segment is packed by a Ray task reading its pieces from their blocks (none packed on the
    driver, none sent by value), and the shards are the local engine's for 1 and 4 chunk workers (2: the
    module's instance; each run costs seconds. The module's Ray instance has 2 CPUs: 4 workers are 4
    actors, two of them waiting; benchmarks/ray_segments.py compares 1, 2 and 4 real ones)."""
    from dataprep.build import engine_ray, ray_chunks, segments

    from .test_segments import recipe as segment_recipe, shards

    r = segment_recipe(tmp_path, mode=mode, segment_tokens=40_000)
    local = run(r, tmp_path / "local", workers=2)
    runners = []
    runner_for = engine_ray._segment_runner
    monkeypatch.setattr(engine_ray, "_segment_runner", lambda *a, **k: runners.append(runner_for(*a, **k)) or runners[-1])

    def on_the_driver(*args):
        raise AssertionError("a segment was packed on the driver")

    monkeypatch.setattr(segments, "pack_segment", on_the_driver)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": cpus})
    on_ray = run(r, tmp_path / "ray", engine="ray")
    assert shards(on_ray) == shards(local) and len(shards(local)) > 4
    assert on_ray["counts"] == local["counts"] and on_ray["packing"] == local["packing"]
    [runner] = runners
    assert isinstance(runner, ray_chunks.RaySegments) and runner.capacity == min(cpus, 2)  # the driver node's CPUs
    assert runner.sent["by_value"] == 0 and runner.sent["by_block"] == runner.sent["delivered"] > runner.sent["tasks"] > 1


@needs_ray
def test_results_reach_the_driver_as_views_of_their_block(local_ray):
    """A ChunkWorker block, through the object store: the result the driver unpickles has its arrays
    in the block's own memory (no copy; read-only, as the store is), aligned, and equal to the worker's."""
    import numpy as np
    import pyarrow as pa

    from dataprep.build import ray_chunks
    from dataprep.tasks.base import ChunkResult

    rng = np.random.default_rng(0)
    sent = ChunkResult(hashes=[rng.bytes(16) for _ in range(3)], validation=np.array([False, True, False]),
                       tokens=rng.integers(0, 50_000, 1001).astype(np.int32), lengths=np.array([500, 1, 500]), source=1,
                       extras={"mask": rng.integers(0, 2, 1001).astype(np.int8)}, drops=Counter(empty=2))
    rows = pa.table({ray_chunks.SOURCE: pa.array([1, 1], pa.int32()), ray_chunks.CHUNK: pa.array([b"", None], pa.large_binary()),
                     ray_chunks.RECORDS: [5, 0], ray_chunks.DROPS: ["{}", "{}"], ray_chunks.POSITION: [10, 20],
                     ray_chunks.FILE_DONE: [False, True]})
    worker = ray_chunks.ChunkWorker.__new__(ray_chunks.ChunkWorker)
    worker.fn = lambda item: sent
    original = ray_chunks._from_ipc
    ray_chunks._from_ipc = lambda buffer: None
    try:
        table = ray.get(ray.put(worker.work(rows, [])))
    finally:
        ray_chunks._from_ipc = original
    first, second = ray_chunks.delivered(table)
    got = first.result
    assert second.result is None and second.file_done and first.records_read == 5
    assert got.hashes == sent.hashes and got.drops == sent.drops and got.source == 1
    memory = table.column(ray_chunks.BUFFERS).chunk(0).buffers()[2]
    for ours, theirs in ((got.tokens, sent.tokens), (got.lengths, sent.lengths), (got.validation, sent.validation),
                         (got.extras["mask"], sent.extras["mask"])):
        assert np.array_equal(ours, theirs) and ours.dtype == theirs.dtype
        at = ours.__array_interface__["data"][0]
        assert memory.address <= at and at + ours.nbytes <= memory.address + memory.size  # in the block: no copy
        assert not ours.flags.writeable and at % ray_chunks.ALIGN == 0


@needs_ray
def test_without_a_ray_runner_segments_stay_on_the_drivers_threads(tmp_path, local_ray, monkeypatch):
    """Ray Client (the cluster cannot reach the run's folder): the segments are packed on the driver's
    threads, from the results' views of their blocks, to the same shards."""
    from dataprep.build import engine_ray, segments

    from .test_segments import recipe as segment_recipe, shards

    r = segment_recipe(tmp_path, segment_tokens=40_000)
    local = run(r, tmp_path / "local", workers=2)
    packed = []
    pack_segment = segments.pack_segment
    monkeypatch.setattr(segments, "pack_segment", lambda *args: packed.append(args[1]) or pack_segment(*args))
    monkeypatch.setattr(engine_ray, "_segment_runner", lambda *args, **kwargs: None)  # what Ray Client gets
    on_ray = run(r, tmp_path / "ray", engine="ray")
    assert shards(on_ray) == shards(local) and sorted(packed) == list(range(len(packed))) and len(packed) > 1
