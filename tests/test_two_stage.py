"""The two-stage demo's data (recipes/two-stage-*.yaml, benchmarks/two_stage.py): the pretraining
episodes follow one rule each and never hold a task query, the three recipes build with the
tokenizer stage 1 trains, and the k-shot prompts hold their demonstrations token for token.

The demo's own claim (base 2-shot above base zero-shot, fine-tuned above both, each by MARGIN)
needs a pretrained base model (minutes): it is ``test_two_stage_demo_table`` behind ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from dataprep import columns as C
from dataprep.build.run import run
from dataprep.recipe import load_recipe
from dataprep.train.fewshot_eval import FewshotEval, answer_ends, summary, table
from dataprep.train.loader import read_info

from .conftest import RECIPES, read_split

REPO = RECIPES.parent
MARGIN = 0.10  # the demo's claim: each row of the table this far above the one it improves on


def generator():
    spec = importlib.util.spec_from_file_location("generate", RECIPES / "data" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (RECIPES / "data" / name).read_text(encoding="utf-8").splitlines()]


def which_rules(gen, prompt: str, completion: str) -> set[str]:
    return {r for r in gen.RULES if gen.rule_pair(r, prompt.split(" "))["completion"] == completion}


def rules_by_joiner(rules: dict) -> dict[str, set[str]]:
    """The rules that write their answers with each joiner (what one demonstration shows at a glance)."""
    found: dict[str, set[str]] = {}
    for name, (_, joiner) in rules.items():
        found.setdefault(joiner, set()).add(name)
    return found


def agreement(rules: dict, names: set[str], task: list[dict]) -> float:
    """The fraction of task queries on which the rules ``names`` all give the same answer."""
    def answer(name: str, prompt: str) -> str:
        transform, joiner = rules[name]
        return joiner.join(transform(prompt.split(" ")))
    return sum(len({answer(n, q["prompt"]) for n in names}) == 1 for q in task) / len(task)


def episode_rule(gen, text: str) -> set[str]:
    """The rules every demonstration of an episode agrees with (empty: the episode mixes rules)."""
    rules = set(gen.RULES)
    for shot in text.split("\n\n"):
        q, a = shot.split("\n")
        rules &= which_rules(gen, q.removeprefix("Q: "), a.removeprefix("A: "))
    return rules


def test_shipped_files_are_what_the_generator_writes():
    gen = generator()
    task = gen.rule_task()
    assert jsonl("rule_task.jsonl") == task
    assert jsonl("rule_episodes.jsonl") == gen.rule_episodes(avoid={r["prompt"] for r in task})


def test_each_episode_is_one_rule_and_no_task_query_is_pretrained():
    gen = generator()
    episodes, task = jsonl("rule_episodes.jsonl"), jsonl("rule_task.jsonl")
    for doc in episodes:
        assert doc["meta"]["rule"] in episode_rule(gen, doc["text"]), doc["id"]
    # the rules are used about equally (zero-shot: about 1 in 4), and the task is one of them
    counts = {r: sum(d["meta"]["rule"] == r for d in episodes) for r in gen.RULES}
    assert min(counts.values()) > 0.2 * len(episodes)
    assert all(which_rules(gen, r["prompt"], r["completion"]) >= {gen.TASK_RULE} for r in task)
    assert not leaked(episodes, task)
    # how an answer is written shows the pair of rules, never the rule itself: in-context learning
    # must read the letters to do better than one in two (the task's rule shares its joiner too)
    pairs = rules_by_joiner(gen.RULES)
    assert all(len(rules) == 2 for rules in pairs.values()) and gen.TASK_RULE in pairs[gen.RULES[gen.TASK_RULE][1]]
    # and the two rules of a pair give different answers to most task queries (else ambiguity is moot)
    for rules in pairs.values():
        assert agreement(gen.RULES, rules, task) < 0.1, rules
    # able to fail: the old design, one joiner per rule, gives each rule away; and a pair that agrees on
    # every 3-letter query (reverse, and swapping the ends)
    assert not all(len(rules) == 2 for rules in rules_by_joiner({**gen.RULES, "upper": (str.upper, ".")}).values())
    swap = {**gen.RULES, "swap": (lambda xs: xs[-1:] + xs[1:-1] + xs[:1], " ")}
    assert agreement(swap, {"reverse", "swap"}, task) > 0.25
    # able to fail: a planted episode of mixed rules, and a task query planted into pretraining
    mixed = "Q: a b c\nA: c b a\n\nQ: c a b\nA: a,b,c"
    assert episode_rule(gen, mixed) == set()
    planted = {"text": f"Q: {task[5]['prompt']}\nA: {task[5]['completion']}"}
    assert leaked([*episodes, planted], task) == {task[5]["prompt"]}


def leaked(episodes: list[dict], task: list[dict]) -> set[str]:
    """Task queries (held out or not) that a pretraining episode already shows."""
    queries = {shot.split("\n")[0].removeprefix("Q: ") for d in episodes for shot in d["text"].split("\n\n")}
    return queries & {r["prompt"] for r in task}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-stage")
    run(load_recipe(RECIPES / "two-stage-pretrain.yaml"), root / "pretrain", workers=1)
    tokenizer = [f"tokenizer.path={root / 'pretrain' / 'tokenizer'}"]
    for name in ("sft", "fewshot"):
        run(load_recipe(RECIPES / f"two-stage-{name}.yaml", tokenizer), root / name, workers=1)
    return root


def test_recipes_build_with_the_pretraining_tokenizer(built):
    infos = {name: read_info(built / name) for name in ("pretrain", "sft", "fewshot")}
    fingerprints = {info.manifest.tokenizer.fingerprint for info in infos.values()}
    assert len(fingerprints) == 1  # one tokenizer, trained by stage 1, for all three
    tok = Tokenizer.from_file(str(built / "pretrain" / "tokenizer" / "tokenizer.json"))
    # one token per letter, so the rules are about tokens: BPE merges never join two letters
    assert tok.encode("Q: a b c\nA: c,b,a").tokens == ["Q", ":", "Ġa", "Ġb", "Ġc", "Ċ", "A", ":", "Ġc", ",", "b", ",", "a"]
    # the answer ends at the stop token, or at the blank line that separates demonstrations
    assert answer_ends(infos["fewshot"]) == (*infos["fewshot"].stop_ids, tok.token_to_id("Ċ"))


def test_kshot_prompts_hold_train_demonstrations_and_the_sft_query(built):
    tok = Tokenizer.from_file(str(built / "pretrain" / "tokenizer" / "tokenizer.json"))
    train = {r["prompt"]: r["completion"] for r in jsonl("rule_task.jsonl")}
    sft_val = read_split(built / "sft", "validation")
    fs_val = read_split(built / "fewshot", "validation")
    assert fs_val.num_rows == sft_val.num_rows == 207
    sft_prompts = set()
    for ids, mask in zip(sft_val.column(C.INPUT_IDS).to_pylist(), sft_val.column(C.LOSS_MASK).to_pylist()):
        sft_prompts.add(tok.decode(ids[: mask.index(1)], skip_special_tokens=False))
    train_prompts = {tok.decode(ids, skip_special_tokens=False).split("\n")[0].removeprefix("Q: ")
                     for ids in read_split(built / "sft", "train").column(C.INPUT_IDS).to_pylist()}
    rows = zip(fs_val.column(C.INPUT_IDS).to_pylist(), fs_val.column(C.LOSS_MASK).to_pylist(),
               fs_val.column(C.QUERY_START).to_pylist())
    for ids, mask, start in rows:
        first = mask.index(1)
        query = tok.decode(ids[start:first], skip_special_tokens=False)
        assert query in sft_prompts  # the same held-out prompt as the fine-tuning data's
        demos = tok.decode(ids[:start], skip_special_tokens=False).split("\n\n")[:-1]
        assert len(demos) == 2
        for demo in demos:
            q, a = demo.removeprefix("Q: ").split("\nA: ")
            assert q in train_prompts and train[q] == a  # a train example, answered right
            # token for token as the template renders it alone
            assert tok.encode(demo).ids == tok.encode(f"Q: {q}\nA: {a}").ids
        answer = tok.decode(ids[first:], skip_special_tokens=False)
        assert answer.endswith("<|endoftext|>") and sum(mask) == len(ids) - first


@pytest.mark.slow
def test_two_stage_demo_table(tmp_path):
    """The demo's claim, as benchmarks/two_stage.py runs it (about 7 minutes on the 2-core VM; longer when busy)."""
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "two_stage.py"), "--work", str(tmp_path)], check=True)
    table = json.loads((tmp_path / "runs" / "two-stage-ft" / "verify.json").read_text())["fewshot"]
    assert table["before_is"] == "base model"
    assert table["k"] == 2
    # in-context learning: two demonstrations show the pair of rules, which the query alone does not
    assert table["k_shot"] >= table["zero_shot"] + MARGIN
    # fine-tuning: the query alone now does better than the base model with demonstrations
    assert table["fine_tuned"] >= table["k_shot"] + MARGIN and table["fine_tuned"] >= 0.9


def test_table_says_base_model_when_the_run_started_from_one():
    row = {"accuracy": 0.0}
    result = summary(FewshotEval(Path("fs"), 4, [], [], (0,), longest=0), {"zero_shot": row, "k_shot": row},
                     {"zero_shot": row, "k_shot": row}, base=True)
    assert result["before_is"] == "base model"
    assert table(result).splitlines()[0] == "exact match on 0 held-out queries         base model   after fine-tuning"
    result = summary(FewshotEval(Path("fs"), 4, [], [], (0,), longest=0), {"zero_shot": row, "k_shot": row},
                     {"zero_shot": row, "k_shot": row})
    assert table(result).splitlines()[0].endswith("   before training   after fine-tuning")
