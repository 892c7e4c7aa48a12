"""Generate the sample data bundled with dataprep's demo recipes (deterministic, seed 0).

    python recipes/data/generate.py      # rewrites the files next to this script

Everything here is written by this script: no third-party text is shipped.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

TOWNS = ["Aldmere", "Brackenford", "Caldwick", "Dunmoor", "Elderbrook", "Fallowmere", "Greyhaven", "Harrowgate",
         "Ivybridge", "Juniper Falls", "Kestrel Bay", "Larkspur", "Millbrook", "Northwold", "Oakhollow", "Pinecrest"]
TRADES = ["weaving", "pottery", "fishing", "clockmaking", "glassblowing", "beekeeping", "shipbuilding", "printing"]
RIVERS = ["the Wend", "the Silverrun", "the Ashby", "the Coldwater", "the Meander", "the Tollbeck"]
SEASONS = ["spring", "summer", "autumn", "winter"]
ANIMALS = ["heron", "otter", "fox", "badger", "owl", "kingfisher", "hare", "wren"]


def town_article(rng: random.Random) -> str:
    town, trade, river = rng.choice(TOWNS), rng.choice(TRADES), rng.choice(RIVERS)
    founded = rng.randint(1100, 1850)
    people = rng.randint(800, 90000)
    season = rng.choice(SEASONS)
    paragraphs = [
        f"{town} is a small town on the banks of {river}. It was founded in {founded} and "
        f"today about {people:,} people live there.",
        f"The town is known for its {trade}. Every {season} a fair is held in the market square, "
        f"and visitors come from the whole valley to see it.",
        f"The old bridge over {river} was rebuilt {rng.randint(2, 9)} times. "
        f"Locals say that a {rng.choice(ANIMALS)} nests under its third arch every year.",
    ]
    return "\n\n".join(paragraphs[: rng.randint(1, 3)])


def arithmetic_note(rng: random.Random) -> str:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    return (f"Adding {a} and {b} gives {a + b}. Multiplying them gives {a * b}. "
            f"The larger of the two is {max(a, b)}, and their difference is {abs(a - b)}.")


def animal_story(rng: random.Random) -> str:
    animal, town = rng.choice(ANIMALS), rng.choice(TOWNS)
    steps = rng.randint(2, 5)
    lines = [f"Once a {animal} lived near {town}."]
    for i in range(steps):
        lines.append(rng.choice([
            f"On day {i + 1} it found a shiny stone by the water.",
            f"On day {i + 1} it met a {rng.choice(ANIMALS)} who knew the way to the hills.",
            f"On day {i + 1} it rested under an old oak tree.",
            f"On day {i + 1} the rain kept it at home.",
        ]))
    lines.append(f"After {steps} days the {animal} went home, tired and happy.")
    return " ".join(lines)


def pretrain_corpus(n: int = 600, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    makers = [town_article, arithmetic_note, animal_story]
    return [{"id": i, "text": rng.choice(makers)(rng), "meta": {"kind": "sample"}} for i in range(n)]


def sft_task(rng: random.Random) -> dict:
    """One small task with a checkable answer: reverse letters, add two numbers, sort letters."""
    kind = rng.choice(["reverse", "add", "sort"])
    if kind == "add":
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        return {"task": kind, "prompt": f"add {a} {b}", "completion": str(a + b)}
    letters = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 6)))
    answer = letters[::-1] if kind == "reverse" else "".join(sorted(letters))
    return {"task": kind, "prompt": f"{kind} {letters}", "completion": answer}


def sft_tasks(n: int = 6000, seed: int = 1) -> list[dict]:
    """``n`` distinct tasks (no prompt repeats, so held-out prompts are really unseen)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    records = []
    while len(records) < n:
        task = sft_task(rng)
        if task["prompt"] not in seen:
            seen.add(task["prompt"])
            records.append(dict(id=len(records), **task))
    return records


# The two-stage demo (recipes/two-stage-*.yaml): pretraining documents are episodes, each several
# demonstrations of ONE rule drawn from RULES, in the fine-tuning template's own format. A query
# alone does not say which rule applies (zero-shot: about one rule in len(RULES)). The rules come in
# pairs that write their answers the same way (reverse and rotate join the letters with spaces,
# sort and sort-descending with commas), so demonstrations in context show which pair applies but
# not which rule of the two: telling those apart means reading how the letters moved, which the
# small base model barely learns in its minutes of pretraining (in-context learning: about one in
# two). The fine-tuning task is one rule (TASK_RULE), so after fine-tuning the query alone
# suffices. Letters are space-separated so that the BPE the pretraining recipe trains keeps one
# token per letter.
LETTERS = "abcdefgh"
RULES = {  # name: (transformation, joiner of the answer's letters): two rules per joiner
    "reverse": (lambda xs: xs[::-1], " "),
    "rotate": (lambda xs: xs[1:] + xs[:1], " "),
    "sort": (sorted, ","),
    "sort-desc": (lambda xs: sorted(xs, reverse=True), ","),
}
TASK_RULE = "reverse"


def letters(rng: random.Random) -> list[str]:
    return [rng.choice(LETTERS) for _ in range(rng.randint(3, 5))]


def rule_pair(rule: str, xs: list[str]) -> dict:
    transform, joiner = RULES[rule]
    return {"prompt": " ".join(xs), "completion": joiner.join(transform(xs))}


def rule_task(n: int = 2000, seed: int = 2) -> list[dict]:
    """``n`` distinct queries of TASK_RULE: the fine-tuning (and few-shot) records."""
    rng = random.Random(seed)
    seen: set[str] = set()
    records = []
    while len(records) < n:
        pair = rule_pair(TASK_RULE, letters(rng))
        if pair["prompt"] not in seen:
            seen.add(pair["prompt"])
            records.append(dict(id=len(records), rule=TASK_RULE, **pair))
    return records


def rule_episodes(n: int = 6000, seed: int = 3, *, avoid: set[str] = frozenset()) -> list[dict]:
    """``n`` pretraining documents: 4-8 demonstrations of one rule each ("Q: ..\nA: .." joined by a
    blank line, as the few-shot recipe renders them), never using a query in ``avoid``."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        rule = rng.choice(sorted(RULES))
        shots, count = [], rng.randint(4, 8)
        while len(shots) < count:
            pair = rule_pair(rule, letters(rng))
            if pair["prompt"] not in avoid:
                shots.append(f"Q: {pair['prompt']}\nA: {pair['completion']}")
        docs.append({"id": i, "text": "\n\n".join(shots), "meta": {"kind": "episode", "rule": rule}})
    return docs


def byte_tokenizer(folder: Path) -> None:
    """A byte-level tokenizer with no merges (256 byte tokens + <|endoftext|>): tiny models learn
    character-level tasks (reversal, sorting) far more easily than over BPE merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=257, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(["x"], trainer)
    folder.mkdir(exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "tokenizer_class": "PreTrainedTokenizerFast"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def main() -> None:
    write_jsonl(HERE / "tiny_corpus.jsonl", pretrain_corpus())
    write_jsonl(HERE / "sft_tasks.jsonl", sft_tasks())
    byte_tokenizer(HERE / "byte_tokenizer")
    task = rule_task()
    write_jsonl(HERE / "rule_task.jsonl", task)
    write_jsonl(HERE / "rule_episodes.jsonl", rule_episodes(avoid={r["prompt"] for r in task}))


if __name__ == "__main__":
    main()
