"""The DPO verdict's ``masks`` check (dataprep/train/dpo_checks.py): the source records re-rendered by
an independent path (dataprep/train/reference_preference.py) against the rows, on every shipped
preference recipe the reference can render, and planted faults that each make it fail:

* (a) the masks cover the prompt's tail: its last 2 tokens moved into the front of both responses
  (the DPO loss cannot see this: those tokens add the same log-ratio to chosen and rejected);
* (b) a response missing its stop token;
* (c) the cut one token late: where both responses open with the same token, it moves into the prompt
  (every sequence keeps its ids; only where the prompt ends moves, by a token that need not repeat).

The synthetic set (byte tokenizer, text template), the HH-style transcripts (GPT-2, text) and
LLaMA-Factory's dpo_en_demo through Llama 3's chat template (re-rendered through TRL's
generation-tagged ``llama3_training.jinja``); then dpo_en_demo's first 40 records with every other
family that has a TRL training template (Phi-3, Gemma 3, DeepSeek-V3, gpt-oss), where the
generation prompt the training template marks is not compared, and counted, as for fine-tuning
(``dataprep/train/reference_chat.py``). The counts asserted are what these builds give (the masks
check's own summary line, ``dataprep train`` prints the same)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from dataprep import columns as C
from dataprep.train import reference_preference
from dataprep.train.dpo_checks import masks_check, masks_line
from dataprep.train.loader import ArrowRows, read_info
from dataprep.train.proofs import load_decoder

from .conftest import DATA, RECIPES
from .test_train import build
from .test_train_dpo import PAIRS, rewrite, swap

LLAMA3_TRAINING = DATA / "chat_templates" / "llama3_training.jinja"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return build(tmp_path_factory, "preference-synthetic.yaml")


@pytest.fixture(scope="module")
def transcripts(tmp_path_factory):
    return build(tmp_path_factory, "preference-hh-sample.yaml")


@pytest.fixture(scope="module")
def dpo_en(tmp_path_factory):
    return build(tmp_path_factory, "preference-dpo-en-demo.yaml")


def check(data: Path, chat_template: Path | None = None, decoder=None) -> dict:
    """The masks check on ``data`` (``decoder``: the dataset's tokenizer when already loaded: Gemma 3's takes seconds)."""
    info = read_info(data)
    splits = {s: ArrowRows(info.dataset, s, columns=PAIRS) for s in ("train", "validation")}
    return masks_check(splits, info=info, decoder=decoder or load_decoder(info),
                       chat_template=None if chat_template is None else str(chat_template))


def cover_prompt_tail(row: dict, n: int = 2) -> dict:
    """(a) the last ``n`` prompt tokens moved into the front of both responses."""
    tail = row[C.PROMPT_IDS][-n:]
    return {C.PROMPT_IDS: row[C.PROMPT_IDS][:-n], C.CHOSEN_IDS: tail + row[C.CHOSEN_IDS],
            C.REJECTED_IDS: tail + row[C.REJECTED_IDS]}


def drop_stop(row: dict) -> dict:
    """(b) the chosen response without its stop token."""
    return {**row, C.CHOSEN_IDS: row[C.CHOSEN_IDS][:-1]}


def cut_one_late(row: dict) -> dict:
    """(c) where both responses open with the same token, that token moved into the prompt."""
    chosen, rejected = row[C.CHOSEN_IDS], row[C.REJECTED_IDS]
    if chosen[0] != rejected[0]:
        return row
    return {C.PROMPT_IDS: row[C.PROMPT_IDS] + chosen[:1], C.CHOSEN_IDS: chosen[1:], C.REJECTED_IDS: rejected[1:]}


def passes(found: dict, *, rendered: int, comparable: int, pairs: int) -> bool:
    r = found["reference"]
    assert (found["pass"], found["pairs"], found["empty"], found["identical"], found["without_stop_last"]) == (True, pairs, 0, 0, 0)
    assert (r["rendered"], r["rendered"] - r["too_long"], r["found"], r["cuts_equal"], r["first_mismatch"]) == (
        rendered, comparable, comparable, comparable, None)
    assert masks_line(found).startswith(f"masks     PASS  {rendered} source records re-rendered independently: {comparable} found, "
                                        f"{comparable} cut equal")
    return True


def fails_on_the_cut(found: dict, record: str, data: str, reference: str) -> bool:
    """Every sequence found by its ids, and the first pair cut elsewhere than the reference cuts it."""
    r = found["reference"]
    assert found["pass"] is False and found["without_stop_last"] == 0 and r["found"] == r["rendered"] - r["too_long"]
    assert r["cuts_equal"] < r["found"]
    assert r["first_mismatch"] == {"record": record, "data_response_not_reference": data, "reference_response_not_data": reference}
    assert f"first difference {record}: the data's response holds {data!r}, the reference's {reference!r}" in masks_line(found)
    return True


def fails_without_stops(found: dict, pairs: int) -> bool:
    """No pair is found (each chosen sequence lost its last token), and every row fails the stop check."""
    r = found["reference"]
    assert found["pass"] is False and r["found"] == 0 and found["without_stop_last"] == pairs
    assert found["first_bad"] == {"split": "train", "row": 0, "why": "a response without a stop token last"}
    return True


# --- the reference on its own: exact tokens -----------------------------------------------------------------------

def test_the_reference_cuts_a_text_pair_after_the_prompt_and_closes_it_with_the_stop_token(synthetic):
    info = read_info(synthetic)
    decoder = load_decoder(info)
    got = reference_preference.render(info.manifest, decoder, stop_id=info.stop_ids[0], bos_id=None, limit=2)
    first = got.expected[0]  # {"prompt": "Q: reverse dxmpe\nA: ", "chosen": "epmxd", "rejected": "dxmpe"}
    assert first.where.endswith("preference_tasks.jsonl line 1") and got.skipped is None and not got.unrendered
    for side, response in ((first.chosen, "epmxd"), (first.rejected, "dxmpe")):
        cut = int(side.mask.argmax())
        assert decoder.decode(side.ids[:cut].tolist()) == "Q: reverse dxmpe\nA: "
        assert decoder.decode(side.ids[cut:].tolist(), skip_special_tokens=False) == response + "<|endoftext|>"
        assert side.mask[cut:].all() and side.ids[-1] == info.stop_ids[0] and not side.free.any()


def test_the_reference_cuts_a_chat_pair_at_the_last_generation_span(dpo_en):
    info = read_info(dpo_en)
    decoder = load_decoder(info)
    got = reference_preference.render(info.manifest, decoder, stop_id=info.stop_ids[0], bos_id=None, limit=1,
                                      chat_template=str(LLAMA3_TRAINING))
    side = got.expected[0].chosen
    cut = int(side.mask.argmax())
    prompt, response = (decoder.decode(ids.tolist(), skip_special_tokens=False) for ids in (side.ids[:cut], side.ids[cut:]))
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi! I'd like to create a new")
    assert prompt.endswith("named Angela.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert response.startswith("That sounds like a fun and engaging idea!") and response.endswith("Good luck!<|eot_id|>")
    # and the dataset's row of that record holds exactly these prompt tokens and this response
    rows = ArrowRows(info.dataset, "train", columns=PAIRS)
    assert rows[0][C.PROMPT_IDS].tolist() == side.ids[:cut].tolist() and rows[0][C.CHOSEN_IDS].tolist() == side.ids[cut:].tolist()


def test_what_the_reference_cannot_render_it_says():
    kto = SimpleNamespace(format=reference_preference.KTO_FORMAT)
    assert reference_preference.why_not(kto, None) == "KTO data: single labelled responses, no pairs"
    chat = SimpleNamespace(format="dataprep.preference/1", sft=object(), task="preference", recipe={"template": "chat"})
    assert reference_preference.why_not(chat, None).startswith("chat template: give a {% generation %}-tagged copy")
    assert reference_preference.why_not(chat, str(LLAMA3_TRAINING)) is None


# --- good data passes, each plant fails -------------------------------------------------------------------------

def test_synthetic_pairs_pass_and_each_plant_fails(synthetic, tmp_path):
    assert passes(check(synthetic), rendered=512, comparable=512, pairs=2384)
    record = str(RECIPES / "data" / "preference_tasks.jsonl") + " line {}"
    assert fails_on_the_cut(check(rewrite(synthetic, tmp_path / "a", cover_prompt_tail)), record.format(1), ": ", "")
    assert fails_without_stops(check(rewrite(synthetic, tmp_path / "b", drop_stop)), 2384)
    # lines 1-3's responses open differently ("epmxd" / "dxmpe"); line 4's "104" / "114" share the "1", cut late
    late = check(rewrite(synthetic, tmp_path / "c", cut_one_late))
    assert fails_on_the_cut(late, record.format(4), "", "1")
    assert (late["reference"]["found"], late["reference"]["cuts_equal"]) == (512, 307)
    # chosen and rejected swapped is no mask fault (each sequence is looked up on its own): the preference check's
    swapped = check(rewrite(synthetic, tmp_path / "swapped", swap, splits=("train",)))
    assert passes(swapped, rendered=512, comparable=512, pairs=2384)


def test_transcripts_pass_and_a_mask_over_the_prompt_fails(transcripts, tmp_path):
    # 10 records: 2 bad on purpose (not pairs: the build drops them with the same reasons)
    found = check(transcripts)
    assert passes(found, rendered=8, comparable=8, pairs=8)
    assert found["reference"]["unrendered"] == {"not a pair (identical_transcripts)": 1, "not a pair (no_common_prompt)": 1}
    record = str(RECIPES / "data" / "hh_sample.jsonl") + " line 1"
    assert fails_on_the_cut(check(rewrite(transcripts, tmp_path / "a", cover_prompt_tail)), record, "Assistant:", "")
    assert fails_without_stops(check(rewrite(transcripts, tmp_path / "b", drop_stop)), 8)


def test_dpo_en_demo_through_llama3_passes_and_each_plant_fails(dpo_en, tmp_path):
    # 300 records: 7 longer than max_length (the build cuts their prompts, or drops them) are not compared
    assert passes(check(dpo_en, LLAMA3_TRAINING), rendered=300, comparable=293, pairs=295)
    record = str(DATA / "pairs" / "preference" / "dpo_en_demo.json") + " line 0"
    covered = check(rewrite(dpo_en, tmp_path / "a", cover_prompt_tail), LLAMA3_TRAINING)
    assert fails_on_the_cut(covered, record, "<|end_header_id|>\n\n", "")
    assert fails_without_stops(check(rewrite(dpo_en, tmp_path / "b", drop_stop), LLAMA3_TRAINING), 295)
    late = check(rewrite(dpo_en, tmp_path / "c", cut_one_late), LLAMA3_TRAINING)
    assert fails_on_the_cut(late, str(DATA / "pairs" / "preference" / "dpo_en_demo.json") + " line 2", "", "Subject")
    assert (late["reference"]["found"], late["reference"]["cuts_equal"]) == (293, 218)


def test_without_a_tagged_template_the_masks_are_not_proven_and_the_row_checks_still_fail(dpo_en, tmp_path):
    found = check(dpo_en)
    assert found["pass"] is None and found["skipped"].startswith("not proven: chat template: give a {% generation %}")
    assert masks_line(found).startswith("masks     skip  not proven: chat template:") and masks_line(found).endswith(
        "295 pairs: 0 empty, 0 identical, 0 without a stop token last")
    # the plants the rows show still fail; one only the reference sees is not proven either way
    assert check(rewrite(dpo_en, tmp_path / "b", drop_stop))["pass"] is False
    assert check(rewrite(dpo_en, tmp_path / "a", cover_prompt_tail))["pass"] is None


def test_pairs_the_build_drops_by_its_own_rules_are_counted_not_compared(tmp_path_factory):
    """GPT-2 merges "A: " + "cba" into one token across the boundary: ``boundary: drop`` drops the pair and
    the reference says so; ``cut`` keeps it with " c" as the responses' first token, as the reference cuts it.
    A conversation prompt cannot render as text: dropped by the build, and not rendered here."""
    folder = tmp_path_factory.mktemp("merge")
    data = folder / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in (
        {"prompt": "Q: reverse abc\nA: ", "chosen": "cba", "rejected": "abc"},
        {"prompt": "Q: reverse xyz\nA:", "chosen": " zyx", "rejected": " xyz"},
        {"prompt": [{"role": "user", "content": "Q: reverse ab"}], "chosen": "ba", "rejected": "ab"})))
    recipe = {"name": "merge", "task": "preference", "preference": {"shape": "triples"}, "inputs": [{"path": str(data)}],
              "tokenizer": {"path": str(DATA / "tokenizers" / "gpt2")}, "template": "text", "on_error": "skip",
              "max_dropped_fraction": 0.9, "split": {"validation": 0}}
    (folder / "merge.yaml").write_text(yaml.safe_dump(recipe))
    dropped = check(build(tmp_path_factory, str(folder / "merge.yaml")))
    assert dropped["pass"] and (dropped["reference"]["rendered"], dropped["reference"]["found"]) == (1, 1)
    assert dropped["reference"]["unrendered"] == {reference_preference.BOUNDARY_DROPPED: 1, reference_preference.TEXT_NEEDS_TEXT: 1}
    cut = check(build(tmp_path_factory, str(folder / "merge.yaml"), "preference.boundary=cut"))
    assert cut["pass"] and (cut["reference"]["rendered"], cut["reference"]["found"], cut["reference"]["cuts_equal"]) == (2, 2, 2)
    assert cut["reference"]["unrendered"] == {reference_preference.TEXT_NEEDS_TEXT: 1}


# --- the other chat families with a TRL training template: dpo_en_demo's first 40 records -------------------------
# family -> (training template, generation-prompt tokens per pair not compared: 2 sequences x its prompt's tokens)
FAMILIES = {"phi-3-mini": ("phi3", 0), "gemma-3": ("gemma3", 0), "deepseek-v3": ("deepseekv3", 2), "gpt-oss": ("gptoss", 4)}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """(name, dataset, training template): dpo_en_demo's first 40 records built with the family's tokenizer and
    own chat template (the recipe's), to be re-rendered through TRL's training copy of it."""
    folder = tmp_path_factory.mktemp(request.param)
    records = json.loads((DATA / "pairs" / "preference" / "dpo_en_demo.json").read_text())[:40]
    (folder / "pairs.json").write_text(json.dumps(records))
    recipe = yaml.safe_load((RECIPES / "preference-dpo-en-demo.yaml").read_text())
    recipe["inputs"][0]["path"] = str(folder / "pairs.json")
    recipe["tokenizer"]["path"] = str(DATA / "tokenizers" / request.param)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return request.param, build(tmp_path_factory, str(folder / "recipe.yaml")), DATA / "chat_templates" / f"{FAMILIES[request.param][0]}_training.jinja"


def test_each_chat_family_passes_and_a_mask_over_the_prompt_fails(family, tmp_path):
    name, data, template = family
    decoder = load_decoder(read_info(data))
    found = check(data, template, decoder)
    r = found["reference"]
    comparable = r["rendered"] - r["too_long"]
    assert found["pass"] and r["rendered"] == 40 and r["found"] == r["cuts_equal"] == comparable >= 36
    per_pair = FAMILIES[name][1]
    assert r["not_compared"] == ({"generation prompt": per_pair * comparable} if per_pair else {})
    covered = check(rewrite(data, tmp_path / "a", cover_prompt_tail), template, decoder)
    if name == "gpt-oss":  # its last 2 prompt tokens are the generation prompt <|start|>assistant: not compared
        assert covered["pass"] and covered["reference"]["not_compared"] == r["not_compared"]
        covered = check(rewrite(data, tmp_path / "a3", lambda row: cover_prompt_tail(row, 3)), template, decoder)
    assert covered["pass"] is False and covered["reference"]["cuts_equal"] == 0
    # (gpt-oss: every response opens with <|channel|>, so every pair is cut late)
    late = check(rewrite(data, tmp_path / "c", cut_one_late), template, decoder)
    assert late["pass"] is False and late["reference"]["cuts_equal"] < late["reference"]["found"] == comparable
