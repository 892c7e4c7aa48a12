"""The chat ``targets`` proof on every chat family with a TRL training template (issue #17).

For each family in ``../shared/data/tokenizers`` that has a ``{% generation %}``-tagged training
template in ``../shared/data/chat_templates``, a small chat dataset (ShareGPT and KTO multi-turn
conversations from ``../shared/data/pairs/chat``, every assistant turn a target) is built with that
tokenizer and the template the training one was copied from, and ``targets_proof`` re-renders its
source records through the training template with transformers. The proof must pass on the good
data and fail on a planted fault: one prompt token marked as a target, or an end-of-turn token
not trained.

Where the training template trains more than dataprep does, the good data fails the proof with
exactly that difference, in every record: :data:`FAMILIES` gives the text the reference also
trains before (``head``) and after (``tail``) each assistant turn's target. The test asserts the
first mismatch is exactly those texts, then widens the data's targets by exactly them and asserts
every record then agrees (so nothing else differs), and plants the faults in that widened data.
The differences, and why dataprep keeps its targets:

* **Gemma 3**, tail ``"\\n"``: the template prints ``<end_of_turn>\\n`` inside the generation block.
  Generation stops at ``<end_of_turn>`` (the tokenizer's EOS), so the model never writes the
  newline; it is the separator before the next ``<start_of_turn>``.
* **DeepSeek-V3**, head ``<｜Assistant｜>``: the training template marks the whole
  ``'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'`` string. ``<｜Assistant｜>`` is the
  generation prompt (``add_generation_prompt`` prints it): inference gives it, the model never
  writes it.
* **gpt-oss**, head ``<|start|>assistant<|channel|>final<|message|>``: the training template marks
  the whole message. ``<|start|>assistant`` is the generation prompt; ``<|channel|>final<|message|>``
  the model does write at inference, but dataprep starts a plain content turn's target at its
  content (headers are context, :mod:`dataprep.tasks.sft.chat_spans`), as its chat tests pin.

Llama 3 and Phi-3 agree token for token (Phi-3 since the EOS its template appends after the final
assistant turn is a target, as ``phi3_training.jinja`` marks it). gpt-oss's system block prints the
recipe's ``chat.date``; the reference prints the same date (transformers' own ``strftime_now`` prints
today's, and then no record would be found).
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
from dataprep.train import data_proofs
from dataprep.train.loader import ArrowRows, read_info

from .conftest import DATA, tokenizer_json
from .test_proofs import masks, rewrite

pytest.importorskip("transformers")

TEMPLATES = DATA / "chat_templates"
CHATS = DATA / "pairs" / "chat"
SHAREGPT, KTO = 24, 8  # the first ShareGPT conversations, and the first KTO ones with more than one exchange

# family: (tokenizer folder, the recipe's chat.template (None: the tokenizer's own), the reference training template,
#          (head, tail) the reference also trains around each assistant turn, the family's end-of-turn token,
#          the prompt token right before record 1's first target)
FAMILIES = {
    "llama-3": ("llama-3", None, "llama3_training.jinja", ("", ""), "<|eot_id|>", "\n\n"),
    "phi-3": ("phi-3-mini", None, "phi3_training.jinja", ("", ""), "<|end|>", "<|assistant|>"),
    "gemma-3": ("gemma-3", None, "gemma3_training.jinja", ("", "\n"), "<end_of_turn>", "\n"),
    "deepseek-v3": ("deepseek-v3", "deepseekv3.jinja", "deepseekv3_training.jinja", ("<｜Assistant｜>", ""),
                    "<｜end▁of▁sentence｜>", "?"),
    "gpt-oss": ("gpt-oss", None, "gptoss_training.jinja", ("<|start|>assistant<|channel|>final<|message|>", ""),
                "<|end|>", "<|end|>"),
}


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


def build(records: Path, out: Path, name: str) -> Path:
    """The family's chat dataset. The run's check that transformers gives tokenizer.json's ids (a warning,
    tested in tests/test_reference.py) is left out: loading Gemma's or gpt-oss's tokenizer in transformers
    takes seconds, and nothing here depends on it."""
    folder, template, _, _, _, _ = FAMILIES[name]
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


def widened(decoder, head: str, tail: str):
    """A plant that also marks, around every target run, the tokens that spell ``head`` right before
    it and ``tail`` right after it (none where they do not)."""
    def text(ids) -> str:
        return decoder.decode([int(i) for i in ids], skip_special_tokens=False)

    def how(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = mask.copy()
        for a, b in runs(mask):
            k = next((k for k in range(1, 9) if head and a - k >= 0 and text(ids[a - k : a]) == head), 0)
            j = next((j for j in range(1, 9) if tail and b + j <= len(ids) and text(ids[b : b + j]) == tail), 0)
            out[a - k : b + j] = 1
        return out
    return how


def prompt_token_as_target(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The token right before the first target becomes a target too."""
    out = mask.copy()
    if mask.any():
        out[int(np.argmax(mask)) - 1] = 1
    return out


def end_of_turn_not_trained(stops: tuple[int, ...]):
    """The first target that is a stop token (the dataset's ``sft.stop_token_ids``) is no target."""
    def how(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = mask.copy()
        hits = np.flatnonzero(np.isin(ids, stops) & (mask == 1))
        if len(hits):
            out[hits[0]] = 0
        return out
    return how


@pytest.mark.parametrize("name", list(FAMILIES))
def test_targets_proof_on_each_chat_family(records, tmp_path, name):
    good = build(records, tmp_path / "good", name)
    # the dataset's tokenizer.json as shipped (what info.dataset.tokenizer() loads, without its checks: seconds for Gemma's)
    decoder = tokenizer_json(FAMILIES[name][0])  # Tokenizer.from_file(tokenizer.json)
    _, _, _, (head, tail), end_of_turn, before_first = FAMILIES[name]
    total = SHAREGPT + KTO
    first_turns = len(json.loads(records.read_text(encoding="utf-8").splitlines()[0])["conversations"]) // 2
    found = targets(good, name, decoder)
    assert found["unrendered"] == {} and found["too_long"] == 0
    if head or tail:  # the reference trains exactly head/tail more around every turn (see the module docstring)
        assert (found["rendered"], found["found"], found["masks_equal"], found["pass"]) == (total, total, 0, False)
        assert found["first_mismatch"] == {"record": f"{records} line 1", "data_trains_not_reference": "",
                                           "reference_trains_not_data": (head + tail) * first_turns}
        good = rewrite(good, tmp_path / "widened", masks(widened(decoder, head, tail)))
        found = targets(good, name, decoder)
    assert (found["rendered"], found["found"], found["masks_equal"], found["pass"]) == (total, total, total, True)

    prompt = targets(rewrite(good, tmp_path / "prompt", masks(prompt_token_as_target)), name, decoder)
    assert (prompt["found"], prompt["masks_equal"], prompt["pass"]) == (total, 0, False)
    assert prompt["first_mismatch"] == {"record": f"{records} line 1", "data_trains_not_reference": before_first,
                                        "reference_trains_not_data": ""}

    unended = targets(rewrite(good, tmp_path / "unended", masks(end_of_turn_not_trained(read_info(good).stop_ids))), name, decoder)
    assert (unended["found"], unended["masks_equal"], unended["pass"]) == (total, 0, False)
    assert unended["first_mismatch"] == {"record": f"{records} line 1", "data_trains_not_reference": "",
                                         "reference_trains_not_data": end_of_turn}
