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


def main() -> None:
    with open(HERE / "tiny_corpus.jsonl", "w", encoding="utf-8") as fh:
        for record in pretrain_corpus():
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
