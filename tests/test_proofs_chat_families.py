"""The chat ``targets`` proof on every chat family with a TRL training template (issue #17).

For each family in ``../shared/data/tokenizers`` that has a ``{% generation %}``-tagged training
template in ``../shared/data/chat_templates``, a small chat dataset (ShareGPT and KTO multi-turn
conversations from ``../shared/data/pairs/chat``, every assistant turn a target) is built with that
tokenizer and the template the training one was copied from, and ``targets_proof`` re-renders its
source records through the training template with transformers. The proof must pass on the good
data and fail on planted faults: a user-prompt token marked as a target, an end-of-turn token not
trained, the last target (Phi-3: the EOS its template appends) not trained.

Where a training template trains more than dataprep does only by convention, the proof does not
compare those reference targets and counts them (:mod:`dataprep.train.reference_chat`); the test
asserts the count per assistant turn (:data:`FAMILIES`), and that data training them too passes as well:

* **Gemma 3**, the ``"\\n"`` after ``<end_of_turn>``: whitespace after the stop. Generation stops
  at the stop token, so the model never writes it; it is the separator before the next turn.
* **DeepSeek-V3**, ``<｜Assistant｜>``; **gpt-oss**, ``<|start|>assistant``: the generation prompt
  (``add_generation_prompt`` prints it): inference gives it, the model never writes it.

Only what the reference marks is excused: Llama 3's reference does not mark its generation prompt,
and Llama 3 data that trains it fails.

gpt-oss's reference also trains ``<|channel|>final<|message|>``, which the model writes after the
generation prompt ``<|start|>assistant``; so does dataprep, whose plain content turn's target starts
where the generation prompt ends (:mod:`dataprep.tasks.sft.chat_spans`, issue #17). Data that leaves
it out (dataprep before #17) fails with exactly that text before every assistant turn: a fault planted
on gpt-oss alone, as no other family prints anything between its generation prompt and the content.

gpt-oss's system block prints the recipe's ``chat.date``; the reference prints the same date
(transformers' own ``strftime_now`` prints today's, and then no record would be found).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dataprep import columns as C
from dataprep.build import reference_check
from dataprep.build.run import run
from dataprep.recipe import recipe_from_dict
from dataprep.train import data_proofs, reference_chat
from dataprep.train.loader import ArrowRows, read_info

from .conftest import DATA, tokenizer_json
from .test_proofs import masks, rewrite

pytest.importorskip("transformers")

TEMPLATES = DATA / "chat_templates"
CHATS = DATA / "pairs" / "chat"
SHAREGPT, KTO = 24, 8  # the first ShareGPT conversations, and the first KTO ones with more than one exchange
PROMPT, AFTER_STOP = reference_chat.GENERATION_PROMPT, reference_chat.AFTER_STOP
GPT_OSS_CHANNEL = "<|channel|>final<|message|>"  # what gpt-oss prints after its generation prompt (module docstring)

# family: (tokenizer folder, the recipe's chat.template (None: the tokenizer's own), the reference training template,
#          the reference's targets not compared per assistant turn {reason: tokens}, and spelled out (head, tail):
#          what they are before and after each target run of the data; what the template prints between the
#          generation prompt and a turn's content (gpt-oss), the family's end-of-turn token, record 1's last target)
FAMILIES = {
    "llama-3": ("llama-3", None, "llama3_training.jinja", {}, ("", ""), "", "<|eot_id|>", "<|eot_id|>"),
    "phi-3": ("phi-3-mini", None, "phi3_training.jinja", {}, ("", ""), "", "<|end|>", "<|endoftext|>"),
    "gemma-3": ("gemma-3", None, "gemma3_training.jinja", {AFTER_STOP: 1}, ("", "\n"), "", "<end_of_turn>", "<end_of_turn>"),
    "deepseek-v3": ("deepseek-v3", "deepseekv3.jinja", "deepseekv3_training.jinja", {PROMPT: 1}, ("<｜Assistant｜>", ""), "",
                    "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "gpt-oss": ("gpt-oss", None, "gptoss_training.jinja", {PROMPT: 2}, ("<|start|>assistant", ""), GPT_OSS_CHANNEL,
                "<|end|>", "<|return|>"),
}
LLAMA_PROMPT = "<|start_header_id|>assistant<|end_header_id|>\n\n"  # llama3_training.jinja's add_generation_prompt


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """A small JSONL of plain user/assistant conversations, ShareGPT-shaped (``conversations``)."""
    sharegpt = json.loads((CHATS / "sharegpt_dummy_conversation.json").read_text(encoding="utf-8"))[:SHAREGPT]
    kto = [r for r in json.loads((CHATS / "kto_en_demo.json").read_text(encoding="utf-8")) if len(r["messages"]) > 2][:KTO]
    roles = {"user": "human", "assistant": "gpt"}
    rows = [{"conversations": r["conversations"]} for r in sharegpt]
    rows += [{"conversations": [{"from": roles[m["role"]], "value": m["content"]} for m in r["messages"]]} for r in kto]
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def turns(records: Path) -> tuple[int, int]:
    """(assistant turns in record 1, in all records): every other message, from the records as written."""
    counts = [len(json.loads(line)["conversations"]) // 2 for line in records.read_text(encoding="utf-8").splitlines()]
    return counts[0], sum(counts)


def build(records: Path, out: Path, name: str) -> Path:
    """The family's chat dataset. The run's check that transformers gives tokenizer.json's ids (a warning,
    tested in tests/test_reference.py) is left out: loading Gemma's or gpt-oss's tokenizer in transformers
    takes seconds, and nothing here depends on it."""
    folder, template = FAMILIES[name][:2]
    recipe = {"task": "sft", "inputs": [{"path": str(records), "fields": {"messages": {"path": "conversations", "kind": "messages"}}}],
              "tokenizer": {"path": str(DATA / "tokenizers" / folder)}, "template": "chat", "masking": "all_assistant",
              "max_length": 4096, "split": {"validation": 0.1}}
    if template:
        recipe["chat"] = {"template": str(TEMPLATES / template)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reference_check, "check_run", lambda *args: None)
        run(recipe_from_dict(recipe, base_dir=records.parent), out, workers=1)
    return out


def targets(path: Path, name: str, decoder) -> dict:
    info = read_info(path)
    index = data_proofs.index_examples({s: ArrowRows(info.dataset, s) for s in C.SPLITS})
    return data_proofs.targets_proof(info, index, decoder=decoder, limit=data_proofs.REFERENCE_RECORDS,
                                     chat_template=str(TEMPLATES / FAMILIES[name][2]))[0]


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of targets."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def text(decoder, ids) -> str:
    return decoder.decode([int(i) for i in ids], skip_special_tokens=False)


def back(decoder, ids: np.ndarray, a: int, spelled: str) -> int:
    """How many tokens right before ``a`` spell ``spelled`` (0: none do)."""
    return next((k for k in range(1, 9) if spelled and a - k >= 0 and text(decoder, ids[a - k : a]) == spelled), 0)


def widened(decoder, head: str = "", tail: str = ""):
    """A plant that also marks, around every target run, the tokens that spell ``head`` right before
    it and ``tail`` right after it (none where they do not)."""
    def how(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = mask.copy()
        for a, b in runs(mask):
            j = next((j for j in range(1, 9) if tail and b + j <= len(ids) and text(decoder, ids[b : b + j]) == tail), 0)
            out[a - back(decoder, ids, a, head) : b + j] = 1
        return out
    return how


def narrowed(decoder, head: str):
    """A plant that unmarks, at the start of every target run, the tokens that spell ``head`` (none where they do not)."""
    def how(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = mask.copy()
        for a, b in runs(mask):
            k = next((k for k in range(1, 9) if a + k <= b and text(decoder, ids[a : a + k]) == head), 0)
            out[a : a + k] = 0
        return out
    return how


def user_token_as_target(decoder, user: str):
    """The last token of the user's message ``user`` becomes a target: the first token at which the
    text so far contains it."""
    def how(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = mask.copy()
        if user in text(decoder, ids):  # in every example that asks it
            out[next(k for k in range(1, len(ids) + 1) if user in text(decoder, ids[:k])) - 1] = 1
        return out
    return how


def end_of_turn_not_trained(stops: tuple[int, ...]):
    """The first target that is a stop token (the dataset's ``sft.stop_token_ids``) is no target."""
    def how(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = mask.copy()
        hits = np.flatnonzero(np.isin(ids, stops) & (mask == 1))
        if len(hits):
            out[hits[0]] = 0
        return out
    return how


def last_target_not_trained(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The example's last target (Phi-3: the EOS its template appends after the final turn) is no target."""
    out = mask.copy()
    if mask.any():
        out[np.flatnonzero(mask)[-1]] = 0
    return out


def passes(found: dict, total: int, not_compared: dict[str, int]) -> bool:
    assert (found["rendered"], found["found"], found["masks_equal"], found["pass"]) == (total, total, total, True)
    assert found["not_compared"] == not_compared  # and the summary line says so
    assert all(f"{n} {reason} tokens" in found["needs"] for reason, n in not_compared.items())
    assert ("not comparing" in found["needs"]) == bool(not_compared)
    return True


def fails(found: dict, total: int, record: str, data_trains: str, reference_trains: str) -> bool:
    assert (found["found"], found["masks_equal"], found["pass"]) == (total, 0, False)
    assert found["first_mismatch"] == {"record": record, "data_trains_not_reference": data_trains,
                                       "reference_trains_not_data": reference_trains}
    return True


@pytest.mark.parametrize("name", list(FAMILIES))
def test_targets_proof_on_each_chat_family(records, tmp_path, name):
    good = build(records, tmp_path / "good", name)
    # the dataset's tokenizer.json as shipped (what info.dataset.tokenizer() loads, without its checks: seconds for Gemma's)
    decoder = tokenizer_json(FAMILIES[name][0])  # Tokenizer.from_file(tokenizer.json)
    _, _, _, per_turn, excused, header, end_of_turn, last = FAMILIES[name]
    first_turns, all_turns = turns(records)
    total, first = SHAREGPT + KTO, f"{records} line 1"
    not_compared = {reason: n * all_turns for reason, n in per_turn.items()}
    found = targets(good, name, decoder)
    assert found["unrendered"] == {} and found["too_long"] == 0
    assert passes(found, total, not_compared)
    if header:  # gpt-oss: data that does not train the channel header fails by exactly it (module docstring)
        headless = targets(rewrite(good, tmp_path / "headless", masks(narrowed(decoder, header))), name, decoder)
        assert fails(headless, total, first, "", header * first_turns)
    if per_turn:  # data that also trains what is not compared passes as well: neither side can make it fail
        assert passes(targets(rewrite(good, tmp_path / "excused", masks(widened(decoder, *excused))), name, decoder),
                      total, not_compared)

    chats = [json.loads(line)["conversations"] for line in records.read_text(encoding="utf-8").splitlines()]
    user = chats[0][0]["value"]  # "Who are you?", asked in several records
    asked = targets(rewrite(good, tmp_path / "user", masks(user_token_as_target(decoder, user))), name, decoder)
    assert (asked["masks_equal"], asked["pass"]) == (total - sum(any(user in m["value"] for m in c) for c in chats), False)
    assert asked["first_mismatch"] == {"record": first, "data_trains_not_reference": "?", "reference_trains_not_data": ""}

    unended = targets(rewrite(good, tmp_path / "unended", masks(end_of_turn_not_trained(read_info(good).stop_ids))), name, decoder)
    assert fails(unended, total, first, "", end_of_turn)

    unfinished = targets(rewrite(good, tmp_path / "unfinished", masks(last_target_not_trained)), name, decoder)
    assert fails(unfinished, total, first, "", last)


def test_generation_prompt_the_reference_does_not_mark_is_compared(records, tmp_path):
    """Llama 3's reference does not mark its generation prompt, so data that trains it fails: only
    reference targets are excused."""
    good = build(records, tmp_path / "good", "llama-3")
    decoder = tokenizer_json("llama-3")
    first_turns, _ = turns(records)
    found = targets(rewrite(good, tmp_path / "prompted", masks(widened(decoder, LLAMA_PROMPT))), "llama-3", decoder)
    assert fails(found, SHAREGPT + KTO, f"{records} line 1", LLAMA_PROMPT * first_turns, "")

