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


if __name__ == "__main__":
    main()
