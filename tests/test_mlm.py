"""objective: mlm on bert-base-cased: framing, exact tokens and labels, masking statistics, validate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import BertWordPieceTokenizer

from dataprep import columns as C
from dataprep.errors import TokenizerError
from dataprep.tasks.mlm import MASK_BLOCK_ROWS, Masker, frame_pieces, special_table, word_starts
from dataprep.build.run import run
from dataprep.recipe import load_recipe, recipe_from_dict
from dataprep.text.tokenizer import TokenizerSpec, load_tokenizer
from dataprep.validate import validate_dataset

from .conftest import DATA, RECIPES, read_split

BERT = DATA / "tokenizers" / "bert-base-cased"
GPT2 = DATA / "tokenizers" / "gpt2"
WIKI = DATA / "corpora" / "wikitext2_valid.txt"
CLS, SEP, PAD, MASK = 101, 102, 0, 103


def make(tmp_path: Path, path: Path = WIKI, **sections) -> object:
    data = {
        "task": "pretrain", "objective": "mlm",
        "inputs": [{"path": str(path), "format": "txt", "txt_unit": "line"}],
        "tokenizer": {"path": str(BERT)}, "split": {"validation": 0.1},
    }
    data.update(sections)
    return recipe_from_dict(data, base_dir=tmp_path)




@pytest.fixture(scope="module")
def bert():
    return load_tokenizer(TokenizerSpec(path=str(BERT)), base_dir=Path("."))


@pytest.fixture(scope="module")
def reference() -> BertWordPieceTokenizer:
    return BertWordPieceTokenizer(str(BERT / "vocab.txt"), lowercase=False)


def test_pieces_are_framed_like_the_post_processor(tmp_path, reference):
    texts = ["Hello world, unbelievable", "Short one", "A much longer line that will not fit into one row of eight tokens at all"]
    src = tmp_path / "docs.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    three = {"validation": 0.0}  # three documents: too few to hold one out
    manifest = run(make(tmp_path, src, packing={"seq_len": 8, "pad_rows": False}, split=three), out, workers=1)
    assert manifest["objective"]["frame"] == {"prefix": [CLS], "suffix": [SEP]}
    t = read_split(out)
    pieces = []
    for ids, lens in zip(t.column(C.INPUT_IDS).to_pylist(), t.column(C.SEQ_LENS).to_pylist()):
        assert ids[0] == CLS and ids[-1] == SEP  # every row: [CLS] ... [SEP]
        start = 0
        for n in lens:
            pieces.append(ids[start : start + n])
            start += n
    expected = []
    for text in texts:  # the reference post-processor frames each cut of 6 content tokens
        content = reference.encode(text, add_special_tokens=False).ids
        expected += [[CLS] + content[i : i + 6] + [SEP] for i in range(0, len(content), 6)]
    assert sorted(pieces) == sorted(expected)
    first = reference.encode(texts[0]).ids
    assert first == [CLS, 8667, 1362, 117, 8362, 26438, SEP]  # Hello world , un ##believable
    assert first in pieces


def test_frame_pieces_exact():
    tokens = np.array([1, 2, 3, 4, 5, 6], dtype=np.int32)
    out, lens = frame_pieces(tokens, np.array([5, 0, 1]), prefix=[CLS], suffix=[SEP], seq_len=5)
    assert lens.tolist() == [5, 4, 2, 3]  # an empty document keeps its frame: every record is written
    assert out.tolist() == [CLS, 1, 2, 3, SEP, CLS, 4, 5, SEP, CLS, SEP, CLS, 6, SEP]


def masker_for(bert, **options) -> Masker:
    spec = {"rate": 0.15, "mask_ratio": 0.8, "random_ratio": 0.1}
    spec.update(options)
    starts = spec.pop("starts", None)
    return Masker(mask_id=MASK, special=special_table(bert), starts=starts, **spec)


def test_masking_statistics_over_a_large_sample(bert):
    rng = np.random.default_rng(0)
    n = 400_000
    ids = rng.integers(999, 28996, n).astype(np.int32)
    ids[::50] = CLS
    ids[1::50] = SEP
    ids[2::50] = PAD
    inputs, labels = masker_for(bert).mask(ids, np.random.default_rng(1))
    special = np.isin(ids, [CLS, SEP, PAD])
    chosen = labels != C.IGNORE_INDEX
    assert not chosen[special].any()  # specials and padding never chosen
    assert (inputs[special] == ids[special]).all()
    assert (labels[chosen] == ids[chosen]).all()  # labels: the original id, -100 elsewhere
    assert (inputs[~chosen] == ids[~chosen]).all()  # nothing changes outside the chosen positions
    rate = chosen.sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.01
    masked = (inputs[chosen] == MASK).mean()
    kept = (inputs[chosen] == ids[chosen]).mean()
    random = 1 - masked - kept
    assert abs(masked - 0.8) < 0.01 and abs(random - 0.1) < 0.01 and abs(kept - 0.1) < 0.01
    assert not np.isin(inputs[chosen & (inputs != MASK)], [CLS, SEP, PAD, 100, MASK]).any()  # random draws are never special
    again = masker_for(bert).mask(ids, np.random.default_rng(1))
    assert (again[0] == inputs).all() and (again[1] == labels).all()  # same seed, same masks
    other = masker_for(bert).mask(ids, np.random.default_rng(2))
    assert (other[1] != labels).any()


def test_padding_excluded_by_maskable(bert):
    ids = np.full(1000, 5000, dtype=np.int32)
    keep = np.ones(1000, dtype=bool)
    keep[500:] = False
    _, labels = masker_for(bert, rate=1.0).mask(ids, np.random.default_rng(0), maskable=keep)
    assert (labels[:500] == 5000).all() and (labels[500:] == C.IGNORE_INDEX).all()


def test_whole_word_masking_chooses_every_subtoken(bert, reference):
    text = WIKI.read_text(encoding="utf-8")[:200_000]
    ids = np.array(reference.encode(text, add_special_tokens=False).ids, dtype=np.int32)
    starts, rule = word_starts(bert)
    assert rule == "wordpiece"
    _, labels = masker_for(bert, starts=starts).mask(ids, np.random.default_rng(0))
    chosen = labels != C.IGNORE_INDEX
    word = np.cumsum(starts[ids]) - 1
    per_word = np.bincount(word, weights=chosen)
    sizes = np.bincount(word)
    assert set(np.unique(per_word / sizes)) <= {0.0, 1.0}  # a word is chosen whole or not at all
    assert (sizes > 1).any() and (per_word[sizes > 1] > 0).any()  # multi-piece words were chosen too
    assert abs(chosen.sum() / len(ids) - 0.15) < 0.02


def test_static_masks_match_plain_rows_and_any_worker_count(tmp_path):
    sections = {"packing": {"seq_len": 128}, "output": {"chunk_records": 300}, "split": {"validation": 0.1}}
    plain = run(make(tmp_path, **sections), tmp_path / "plain", workers=1)
    assert plain["format"] == "dataprep.pretrain/2"
    shas = []
    for workers in (1, 2):
        m = run(make(tmp_path, mlm={"masking": "static", "seed": 3}, **sections), tmp_path / f"static-{workers}", workers=workers)
        shas.append({s: [x["sha256"] for x in m["splits"][s]["shards"]] for s in C.SPLITS})
    assert shas[0] == shas[1]
    assert m["format"] == "dataprep.mlm/2"
    stats = m["objective"]["static"]
    assert abs(stats["chosen_ratio"] - 0.15) < 0.01
    for split in C.SPLITS:
        masked, unmasked = read_split(tmp_path / "static-1", split), read_split(tmp_path / "plain", split)
        ids = masked.column(C.INPUT_IDS).combine_chunks().flatten().to_numpy()
        orig = unmasked.column(C.INPUT_IDS).combine_chunks().flatten().to_numpy()
        labels = masked.column(C.LABELS).combine_chunks().flatten().to_numpy()
        chosen = labels != C.IGNORE_INDEX
        assert (labels[chosen] == orig[chosen]).all()  # the label is the token the row had
        assert (ids[~chosen] == orig[~chosen]).all()
        assert not np.isin(orig[chosen], [CLS, SEP, PAD]).any()
        assert masked.column(C.SEQ_LENS).to_pylist() == unmasked.column(C.SEQ_LENS).to_pylist()
    report = validate_dataset(tmp_path / "static-1")
    assert report.ok, report.findings
    assert report.stats["mlm_chosen_ratio"] == round(stats["chosen_ratio"], 6)  # validate recounts what the run masked


def test_validate_flags_broken_labels(tmp_path):
    out = tmp_path / "static"
    run(make(tmp_path, mlm={"masking": "static"}, packing={"seq_len": 64}, output={"shard_bytes": 1 << 30}), out, workers=1)
    t = read_split(out)
    labels = t.column(C.LABELS).combine_chunks()
    values = labels.flatten().to_numpy().copy()
    ids = t.column(C.INPUT_IDS).combine_chunks().flatten().to_numpy()
    values[np.flatnonzero(ids == MASK)[0]] = C.IGNORE_INDEX  # a [MASK] that predicts nothing
    values[0] = CLS  # a label on the [CLS] frame
    broken = t.set_column(t.schema.get_field_index(C.LABELS), C.LABELS, pa.ListArray.from_arrays(labels.offsets, pa.array(values)))
    shard = next((out / "train").glob("*.arrow"))
    with pa.OSFile(str(shard), "wb") as sink, pa.ipc.new_stream(sink, broken.schema) as writer:
        writer.write_table(broken)
    kinds = set(validate_dataset(out).counts)
    assert {"mask_without_label", "label_at_special"} <= kinds


def test_a_tokenizer_without_mask_token_is_refused(tmp_path):
    recipe = recipe_from_dict(
        {"task": "pretrain", "objective": "mlm", "inputs": [{"path": str(WIKI), "format": "txt", "txt_unit": "line"}],
         "tokenizer": {"path": str(GPT2)}}, base_dir=tmp_path)
    with pytest.raises(TokenizerError, match="mlm.mask_token"):
        run(recipe, tmp_path / "out", workers=1)


def test_recipe_mlm_wikitext_runs_and_validates(tmp_path):
    recipe = load_recipe(RECIPES / "mlm-wikitext.yaml")
    manifest = run(recipe, tmp_path / "out", workers=2)
    assert manifest["objective"]["whole_word"] and manifest["objective"]["word_starts"] == "wordpiece"
    assert manifest["counts"]["records_read"] == manifest["counts"]["records_written"] + sum(manifest["counts"]["dropped"].values())
    report = validate_dataset(tmp_path / "out")
    assert report.ok, report.findings
    assert 0.13 < report.stats["mlm_chosen_ratio"] < 0.17


def test_a_trained_tokenizer_gets_a_mask_token(tmp_path):
    recipe = recipe_from_dict(
        {"task": "pretrain", "objective": "mlm", "inputs": [{"path": str(RECIPES / "data" / "tiny_corpus.jsonl")}],
         "tokenizer": {"train": {"vocab_size": 600}}, "packing": {"seq_len": 64}, "mlm": {"masking": "static"},
         "split": {"validation": 0.1}},
        base_dir=tmp_path)
    manifest = run(recipe, tmp_path / "out", workers=1)
    obj = manifest["objective"]
    assert obj["added_tokens"] == ["<mask>"] and obj["mask_token_id"] == 600 and manifest["tokenizer"]["vocab_size"] == 601
    assert obj["frame"] == {"prefix": [], "suffix": [0]}  # no post-processor: add_eos frames each piece with <|endoftext|>
    saved = load_tokenizer(TokenizerSpec(path=str(tmp_path / "out" / "tokenizer")), base_dir=tmp_path)
    assert saved.tokenizer.token_to_id("<mask>") == 600
    assert (read_split(tmp_path / "out").column(C.INPUT_IDS).combine_chunks().flatten().to_numpy() == 600).any()
    assert validate_dataset(tmp_path / "out").ok


def test_static_masks_do_not_depend_on_the_chunking(tmp_path):
    """Masks are drawn per block of MASK_BLOCK_ROWS rows, not per block the packer emits."""
    shas = []
    for chunk_records in (37, 5000):
        sections = {"packing": {"seq_len": 32, "buffer_tokens": 4096}, "split": {"validation": 0.1},
                    "output": {"chunk_records": chunk_records, "batch_tokens": 8192}}
        m = run(make(tmp_path, mlm={"masking": "static", "seed": 3}, **sections), tmp_path / f"static-{chunk_records}", workers=1)
        shas.append({s: [x["sha256"] for x in m["splits"][s]["shards"]] for s in C.SPLITS})
        assert m["counts"]["rows"]["train"] > 2 * MASK_BLOCK_ROWS  # several mask blocks
    assert shas[0] == shas[1]
