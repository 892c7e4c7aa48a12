"""Decontamination (dataprep.text.decontaminate) on real text, checked against a plain-Python oracle.

The evaluation set is DialogSum's dev split (``../shared/data``: each item a dialogue and its
summary). The training corpus is C4's 300 real web pages (``c4_demo.jsonl``: unrelated to DialogSum,
none may match) plus documents planted from them: a dialogue pasted between two pages verbatim,
pasted again with its case, punctuation, spacing or character width changed (still a copy: must
match), and a run of only 12 of a dialogue's words (must not match at n = 13, and must at n = 12,
so the negative is not an accident of the data). The oracle re-derives every answer with its own
word splitter (``unicodedata`` categories) and Python tuples, sharing no code with the module.
"""

from __future__ import annotations

import csv
import json
import pickle
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataprep.dataset.reader import open_dataset
from dataprep.errors import ConfigError, InputError
from dataprep.text.decontaminate import (
    CONTAMINATED, DecontaminationIndex, EvalSetSpec, contaminated_counts, dataset_items, load_index, read_items,
    _ascii_words, side_file_lines, words)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DIALOGSUM = DATA / "pairs" / "summarization" / "dialogsum_dev.jsonl"
DIALOGSUM_TEST = DATA / "pairs" / "summarization" / "dialogsum_test.jsonl"
SMS = DATA / "pairs" / "classification" / "sms_spam_collection.tsv"
C4 = DATA / "corpora" / "c4_demo.jsonl"
GPT2 = DATA / "tokenizers" / "gpt2"
PLANTED = (3, 50, 120, 250, 499)  # DialogSum dev items pasted into the corpus


def oracle_words(text: str) -> list[str]:
    """NFKC, lowercase, runs of letters / marks / digits, by Unicode category."""
    out, word = [], []
    for ch in unicodedata.normalize("NFKC", text).lower():
        if unicodedata.category(ch)[0] in "LMN":
            word.append(ch)
        elif word:
            out.append("".join(word))
            word = []
    return out + (["".join(word)] if word else [])


def oracle_match(docs: list[str], sets: list[tuple[str, list[tuple[str, str]]]], n: int = 13, min_words: int | None = None):
    """The first (in reading order) word run of a document that is an item's n-gram, or a whole
    short item's words; at one start, the earliest item (sets in order, items in order)."""
    min_words = n if min_words is None else min_words
    grams: dict[tuple, tuple[int, str, str]] = {}
    order = 0
    for name, items in sets:
        for item, text in items:
            w = oracle_words(text)
            runs = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)] if len(w) >= n else [tuple(w)] * (len(w) >= min_words)
            for run in runs:
                grams.setdefault(run, (order, name, item))
            order += len(w) >= min_words
    lengths = sorted({len(g) for g in grams})
    out = []
    for doc in docs:
        w, found = oracle_words(doc), None
        for i in range(len(w)):
            hits = [grams[tuple(w[i : i + k])] for k in lengths if i + k <= len(w) and tuple(w[i : i + k]) in grams]
            if hits:
                found = min(hits)[1:]
                break
        out.append(found)
    return out


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.fixture(scope="module")
def dialogsum() -> list[tuple[str, str]]:
    return [(r["fname"], f"{r['dialogue']}\n{r['summary']}") for r in jsonl(DIALOGSUM)]


@pytest.fixture(scope="module")
def index() -> DecontaminationIndex:
    spec = EvalSetSpec(str(DIALOGSUM), fields=("dialogue", "summary"), id_field="fname")
    return load_index([spec], base_dir=DATA)


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[str]]:
    pages = [r["text"] for r in jsonl(C4)]
    dialogues = [jsonl(DIALOGSUM)[i]["dialogue"] for i in PLANTED]
    changes = [str.upper, lambda t: t.replace(",", " ;").replace(".", "?!"), lambda t: " \t ".join(t.split()),
               fullwidth, lambda t: t.replace("'", " ").replace("#", "")]
    twelve = [" ".join(oracle_words(d)[20:32]) for d in dialogues]
    return {
        "unrelated": pages,
        "verbatim": [f"{pages[i]}\n{d}\n{pages[i + 1]}" for i, d in enumerate(dialogues)],
        "changed": [f"{pages[i]} {change(d)} {pages[i + 2]}" for i, (d, change) in enumerate(zip(dialogues, changes))],
        "twelve_words": [f"{pages[i]} {t}. {pages[i + 3]}" for i, t in enumerate(twelve)],
    }


def test_words_are_nfkc_lowercased_runs_of_letters_marks_and_digits():
    split = words(["Ｈｅｌｌｏ, WORLD! ﬁne_day — नमस्ते 3.14", "", "..."]).to_pylist()
    assert [[w for w in ws if w] for ws in split] == [["hello", "world", "fine", "day", "नमस्ते", "3", "14"], [], []]
    assert oracle_words("Ｈｅｌｌｏ, WORLD! ﬁne_day — नमस्ते 3.14") == ["hello", "world", "fine", "day", "नमस्ते", "3", "14"]


def test_planted_copies_match_and_everything_else_does_not(index, dialogsum, corpus):
    found = {kind: index.match(docs) for kind, docs in corpus.items()}
    expected = {kind: oracle_match(docs, [("dialogsum_dev", dialogsum)]) for kind, docs in corpus.items()}
    assert found == expected
    everything = [doc for docs in corpus.values() for doc in docs]
    assert index.match(pa.chunked_array([pa.array(everything[:200]), pa.array(everything[200:] + [None])])) == [
        m for docs in found.values() for m in docs] + [None]  # the Arrow column the filters get: the same answers
    planted = [f"dev_{i}" for i in PLANTED]
    assert [m[1] for m in found["verbatim"]] == planted
    assert [m[1] for m in found["changed"]] == planted
    assert found["twelve_words"] == [None] * 5
    assert found["unrelated"] == [None] * 300
    # the changed copies are copies only once normalized: none holds its dialogue's text as it is
    assert not any(jsonl(DIALOGSUM)[i]["dialogue"] in doc for i, doc in zip(PLANTED, corpus["changed"]))


def test_twelve_shared_words_match_at_n_12(dialogsum, corpus):
    twelve = DecontaminationIndex.from_items([("dialogsum_dev", dialogsum)], n=12)
    assert [m[1] for m in twelve.match(corpus["twelve_words"])] == [f"dev_{i}" for i in PLANTED]
    assert twelve.match(corpus["unrelated"]) == oracle_match(corpus["unrelated"], [("dialogsum_dev", dialogsum)], n=12)


def test_the_first_ngram_in_the_document_names_the_item(index, dialogsum):
    later, earlier = dict(dialogsum)["dev_400"], dict(dialogsum)["dev_7"]
    assert index.match([f"{later}\n{earlier}", f"{earlier}\n{later}"]) == [
        ("dialogsum_dev", "dev_400"), ("dialogsum_dev", "dev_7")]


def test_an_ngram_two_items_share_names_the_one_read_first(corpus):
    """Items are hashed ASCII ones first (a faster word split): the index must still name the
    first item in reading order, here a non-ASCII one."""
    run = " ".join(oracle_words(corpus["unrelated"][7])[10:30])
    for items in ([("café", f"Café — {run}"), ("plain", run)], [("plain", run), ("café", f"Café — {run}")]):
        index = DecontaminationIndex.from_items([("set", items)])
        assert index.match([run]) == [("set", items[0][0])] == oracle_match([run], [("set", items)])


def test_ascii_texts_split_as_the_regex_does(corpus):
    pages = pa.array([page for page in corpus["unrelated"] if page.isascii()], pa.large_string())
    assert len(pages) > 100
    assert [[w for w in ws if w] for ws in _ascii_words(pages).to_pylist()] == [
        [w for w in ws if w] for ws in words(pages).to_pylist()] == [oracle_words(page) for page in pages.to_pylist()]


def test_an_ngram_never_spans_two_documents(index, dialogsum):
    """Twelve of an item's words end one document and the next twelve start the next: hashed in
    one batch, the two must not join into a match (the same 24 words in one document do)."""
    run = oracle_words(dict(dialogsum)["dev_120"])[30:54]
    apart = [f"Last seen: {' '.join(run[:12])}", f"{' '.join(run[12:])} was next."]
    assert index.match(apart) == [None, None]
    assert index.match([" ".join(apart)]) == [("dialogsum_dev", "dev_120")]


def test_index_pickles_and_is_deterministic(index, corpus):
    docs = corpus["verbatim"] + corpus["unrelated"][:50]
    index.match(docs)  # makes the bitmap, which is not pickled
    copy = pickle.loads(pickle.dumps(index))
    assert copy._bitmap is None and copy.match(docs) == index.match(docs)
    again = load_index([EvalSetSpec(str(DIALOGSUM), fields=("dialogue", "summary"), id_field="fname")], base_dir=DATA)
    assert (again.hashes == index.hashes).all() and (again.entries == index.entries).all()
    bits, table = index._table()  # the bitmap in front of the binary search: 16 bits or more per hash
    assert len(table) * 8 == 1 << bits >= 16 * len(index.hashes)
    assert again.stats() == index.stats() == {"dialogsum_dev": {"items": 500, "short_items": 0, "ngrams": len(index.hashes)}}


def test_side_file_lines_and_counts(index, corpus):
    docs = corpus["unrelated"][:2] + corpus["verbatim"][:2]
    matches = index.match(docs)
    lines = side_file_lines(matches, [f"c4_demo.jsonl:{i + 1}" for i in range(4)])
    assert [json.loads(line) for line in lines] == [
        {"set": "dialogsum_dev", "item": "dev_3", "document": "c4_demo.jsonl:3"},
        {"set": "dialogsum_dev", "item": "dev_50", "document": "c4_demo.jsonl:4"}]
    assert contaminated_counts(matches) == {"dialogsum_dev": 2}
    assert CONTAMINATED == "contaminated"


def test_jsonl_parquet_and_csv_give_the_same_index(tmp_path, index):
    records = [{k: r[k] for k in ("fname", "dialogue", "summary")} for r in jsonl(DIALOGSUM)]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "dev.parquet")
    with open(tmp_path / "dev.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["fname", "dialogue", "summary"])
        writer.writeheader()
        writer.writerows(records)
    for name in ("dev.parquet", "dev.csv"):
        other = load_index([EvalSetSpec(name, fields=("dialogue", "summary"))], base_dir=tmp_path)
        assert (other.hashes == index.hashes).all() and (other.entries == index.entries).all()
    assert read_items(EvalSetSpec("dev.parquet", fields=("summary",)), base_dir=tmp_path)[1] == (
        "dev.parquet:1", records[1]["summary"])
    assert read_items(EvalSetSpec("dialogsum_dev.jsonl"[:-6] + ".jsonl", fields=("summary",)),
                      base_dir=DIALOGSUM.parent)[0] == ("dialogsum_dev.jsonl:1", records[0]["summary"])


def test_short_items_count_only_with_min_words(tmp_path, corpus):
    """SMS messages (a real tsv) are mostly under 13 words: left out by default, as
    lm-evaluation-harness leaves them; with min_words=8 a whole 10-word message is found."""
    spec = EvalSetSpec(str(SMS), fields=("SMS",))
    items = read_items(spec, base_dir=DATA)
    sizes = [len(oracle_words(text)) for _, text in items]
    default = load_index([spec], base_dir=DATA)
    assert default.stats()["sms_spam_collection"]["short_items"] == sum(s < 13 for s in sizes)
    ten = next(text for (_, text), size in zip(items, sizes) if size == 10)
    doc = f"{corpus['unrelated'][0]} {ten} {corpus['unrelated'][1]}"
    assert default.match([doc]) == oracle_match([doc], [("sms_spam_collection", items)]) == [None]
    eight = DecontaminationIndex.from_items([("sms", items)], min_words=8)
    assert eight.stats()["sms"]["short_items"] == sum(s < 8 for s in sizes)
    long = next(text for (_, text), size in zip(items, sizes) if size >= 20)
    part = f"{corpus['unrelated'][2]} {' '.join(oracle_words(long)[:10])} {corpus['unrelated'][3]}"
    docs = [doc, part] + corpus["unrelated"][:100]
    assert eight.match(docs) == oracle_match(docs, [("sms", items)], min_words=8)
    assert eight.match([doc])[0] is not None
    assert eight.match([part]) == [None]  # 10 words of a longer item are not a short item


def test_at_one_start_the_earliest_item_wins(corpus):
    """A short item and a longer one start at the same word of a document: the one read first
    names the match, whichever is shorter."""
    page = corpus["unrelated"][5]
    short = " ".join(oracle_words(page)[40:50])
    long = " ".join(oracle_words(page)[40:60])
    for order in ([("long", long), ("short", short)], [("short", short), ("long", long)]):
        index = DecontaminationIndex.from_items([("set", order)], min_words=10)
        assert index.match([page]) == [("set", order[0][0])] == oracle_match([page], [("set", order)], min_words=10)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    from dataprep.build.run import run
    from dataprep.recipe import recipe_from_dict

    folder = tmp_path_factory.mktemp("decontaminate-datasets")
    out = {}
    for mode in ("wrap", "bfd"):
        recipe = recipe_from_dict({
            "task": "pretrain", "inputs": [{"path": str(C4)}],
            # bfd pads with "~", a plain token: decoded, a pad piece would read as text
            "tokenizer": {"path": str(GPT2), "add_eos": True, "eos_token": "<|endoftext|>",
                          "pad_token": "~" if mode == "bfd" else "<|endoftext|>"},
            "packing": {"mode": mode, "seq_len": 256}, "split": {"validation": 0.2}}, base_dir=folder)
        run(recipe, folder / mode, workers=1, progress=False)
        out[mode] = folder / mode
    return out


def test_dataset_validation_split_is_read_as_its_documents(built):
    pages = [r["text"] for r in jsonl(C4)]
    manifest = json.loads((built["wrap"] / "manifest.json").read_text())
    items = dataset_items(open_dataset(built["wrap"]))
    # wrap: whole documents, cut at EOS; only the last may be cut short by the dropped remainder
    assert len(items) == manifest["counts"]["documents"]["validation"]
    assert all(text in pages for _, text in items[:-1])
    assert any(page.startswith(items[-1][1]) for page in pages)
    assert [name for name, _ in items[:2]] == ["validation:document 0", "validation:document 1"]
    # bfd: a piece is a document or a stretch of one (a cut may split a character: U+FFFD at the edge)
    pieces = dataset_items(open_dataset(built["bfd"]))
    joined = "\0".join(pages)
    assert pieces and all(text.strip("\ufffd") in joined for _, text in pieces)
    table = open_dataset(built["bfd"]).table("validation")  # every piece but the pad ones (each row's last when num_pad > 0)
    rows = zip(table["seq_lengths"].to_pylist(), table["num_pad"].to_pylist())
    padded = {f"validation:row {r} piece {len(seq) - 1}" for r, (seq, pad) in enumerate(rows) if pad}
    assert padded and not padded & {name for name, _ in pieces}
    assert len(pieces) > json.loads((built["bfd"] / "manifest.json").read_text())["counts"]["documents"]["validation"]


def test_index_from_a_dataset_folder_matches_its_validation_documents(built):
    spec = EvalSetSpec(str(built["wrap"]), name="c4_validation")
    index = load_index([spec], base_dir=built["wrap"].parent, open_dataset=open_dataset)
    items = dataset_items(open_dataset(built["wrap"]))
    pages = [r["text"] for r in jsonl(C4)]
    found = index.match(pages)
    assert found == oracle_match(pages, [("c4_validation", items)])
    assert sum(m is not None for m in found) >= len(items) - 1


def test_a_missing_field_names_file_line_and_fix():
    with pytest.raises(InputError) as caught:
        read_items(EvalSetSpec(str(DIALOGSUM_TEST), fields=("dialogue", "summary")), base_dir=DATA)
    message, fix = caught.value.explain()
    assert "dialogsum_test.jsonl, line 1" in message and "'summary'" in message
    assert "decontaminate" in fix and "fields" in fix


def test_a_missing_file_an_empty_set_and_a_set_of_short_items_are_errors(tmp_path, built):
    with pytest.raises(InputError, match="nope.jsonl"):
        load_index([EvalSetSpec("nope.jsonl")], base_dir=tmp_path)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="empty.jsonl: the evaluation set 'empty' has no items"):
        load_index([EvalSetSpec("empty.jsonl")], base_dir=tmp_path)
    messages = [line.split("\t", 1)[1] for line in SMS.read_text(encoding="utf-8").splitlines()[1:]]
    short = [{"text": text} for text in messages if len(oracle_words(text)) < 13][:3]
    (tmp_path / "short.jsonl").write_text("".join(json.dumps(r) + "\n" for r in short))
    with pytest.raises(InputError, match="no item of 13 words or more"):
        load_index([EvalSetSpec("short.jsonl")], base_dir=tmp_path)
    assert DecontaminationIndex.from_items([("short", [("1", short[0]["text"])])], min_words=3).stats()["short"]["items"] == 1
    with pytest.raises(ConfigError, match="two evaluation sets are named"):
        load_index([EvalSetSpec(str(DIALOGSUM), fields=("summary",))] * 2, base_dir=DATA)
    with pytest.raises(ConfigError, match="open_dataset"):
        load_index([EvalSetSpec(str(built["wrap"]))], base_dir=tmp_path)
    with pytest.raises(ConfigError, match="min_words"):
        DecontaminationIndex.from_items([("x", [("1", "a b c")])], n=13, min_words=14)
