"""The synthetic preference set (recipes/preference-synthetic.yaml): the demo tasks of
generate.py (reverse letters, add two numbers, sort letters), each with its right answer as
``chosen`` and a plausible wrong one as ``rejected`` (a sum off by a little, letters left in
order or half done). Some prompts get two pairs (two different wrong answers), so the split by
prompt has pairs to keep together. Deterministic: the same file on every run.

    python recipes/data/generate_preference.py      # writes recipes/data/preference_tasks.jsonl
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import sft_tasks, write_jsonl  # noqa: E402


def wrong_answer(task: dict, rng: random.Random) -> str:
    """A plausible wrong answer to ``task``: never the right one."""
    right, letters = task["completion"], task["prompt"].split(" ", 1)[1]
    for _ in range(10):
        if task["task"] == "add":
            wrong = str(int(right) + rng.choice([-10, -2, -1, 1, 2, 10]))
        elif task["task"] == "reverse":
            wrong = rng.choice([letters, "".join(sorted(letters)), right[1:] + right[0]])
        else:
            wrong = rng.choice([letters, "".join(sorted(letters))[::-1], "".join(sorted(letters[:-1])) + letters[-1]])
        if wrong != right and wrong:
            return wrong
    return chr((ord(right[0]) - 96) % 26 + 97) + right[1:]  # one letter off (e.g. "aaa", which no rearranging breaks)


def preference_tasks(n: int = 2000, seed: int = 4) -> list[dict]:
    """``n`` tasks as pairs; every fifth prompt gets a second pair with another wrong answer."""
    rng = random.Random(seed)
    records = []
    for task in sft_tasks(n, seed=seed):
        first = wrong_answer(task, rng)
        records.append({"prompt": f"Q: {task['prompt']}\nA: ", "chosen": task["completion"], "rejected": first})
        if task["id"] % 5 == 0:
            for _ in range(10):
                second = wrong_answer(task, rng)
                if second != first:
                    records.append({"prompt": f"Q: {task['prompt']}\nA: ", "chosen": task["completion"], "rejected": second})
                    break
    return records


def main() -> None:
    write_jsonl(HERE / "preference_tasks.jsonl", preference_tasks())


if __name__ == "__main__":
    main()
