"""Tests of dataprep.tasks.sft.templates: built-in and custom pair templates, character-level targets.

Token-level loss masks on real tokenizers are in test_loss_mask.py; here everything is text.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataprep.errors import DataprepError, RecordProblem, TemplateError
from dataprep.tasks.sft.templates import (
    TARGET_POLICIES,
    TEMPLATES,
    PairTemplate,
    Rendered,
    get_template,
    template_fields,
)
from tests.conftest import DATA

EOS = "<|endoftext|>"

# The Stanford Alpaca prompts, word for word (tatsu-lab/stanford_alpaca, train.py PROMPT_DICT).
ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


@pytest.fixture(scope="module")
def alpaca_records() -> list[dict]:
    return json.loads((DATA / "pairs/instruction/alpaca_en_demo.json").read_text(encoding="utf-8"))


def _check(rendered: Rendered, prompt: str, response: str, stop: str = EOS) -> None:
    assert rendered.text == prompt + response + stop
    assert rendered.targets == ((len(prompt), len(rendered.text)),)
    assert rendered.prompt_end == len(prompt)
    assert rendered.target_text() == response + stop


# --- built-ins on real records ----------------------------------------------------------


def test_alpaca_with_input(alpaca_records):
    record = alpaca_records[554]
    assert record == {
        "instruction": "Sum up the numbers.",
        "input": "3, 2, 5",
        "output": "The sum of the numbers is 10.",
    }
    rendered = TEMPLATES["alpaca"].render(record, stop_text=EOS)
    prompt = ALPACA_INPUT.replace("{instruction}", "Sum up the numbers.").replace("{input}", "3, 2, 5")
    _check(rendered, prompt, "The sum of the numbers is 10.")


def test_alpaca_without_input(alpaca_records):
    record = alpaca_records[362]
    assert record == {"instruction": "Calculate 15% of 500.", "input": "", "output": "15% of 500 is 75."}
    rendered = TEMPLATES["alpaca"].render(record, stop_text=EOS)
    _check(rendered, ALPACA_NO_INPUT.replace("{instruction}", "Calculate 15% of 500."), "15% of 500 is 75.")
    # `input` absent or blank is the same as empty
    absent = {"instruction": "Calculate 15% of 500.", "output": "15% of 500 is 75."}
    for variant in (absent, {**record, "input": " \n"}):
        assert TEMPLATES["alpaca"].render(variant, stop_text=EOS) == rendered


def test_alpaca_every_demo_record_uses_the_right_variant(alpaca_records):
    with_input = 0
    for record in alpaca_records:
        rendered = TEMPLATES["alpaca"].render(record, stop_text=EOS)
        has_input = "### Input:\n" in rendered.text[: rendered.prompt_end]
        assert has_input == bool(record["input"].strip())
        with_input += has_input
        assert rendered.target_text() == record["output"] + EOS
    assert with_input == 412  # as the data README says


def test_dialogsum():
    record = json.loads((DATA / "pairs/summarization/dialogsum_dev.jsonl").read_text(encoding="utf-8").splitlines()[0])
    rendered = TEMPLATES["dialogsum"].render(record, stop_text=EOS)
    prompt = f"Summarize the following conversation.\n\n{record['dialogue']}\n\nSummary: "
    _check(rendered, prompt, record["summary"])
    assert rendered.text.startswith(
        "Summarize the following conversation.\n\n#Person1#: Hello, how are you doing today?\n"
    )


def test_prompt_completion_on_humaneval():
    record = json.loads((DATA / "corpora/code/humaneval_python.jsonl").read_text(encoding="utf-8").splitlines()[0])
    rendered = TEMPLATES["prompt_completion"].render(
        {"prompt": record["prompt"], "completion": record["canonical_solution"]}, stop_text=EOS
    )
    _check(rendered, record["prompt"], record["canonical_solution"])


def test_classification_label_is_rendered_as_text():
    row = (DATA / "pairs/classification/sms_spam_collection.tsv").read_text(encoding="utf-8").splitlines()[2]
    label, text = row.split("\t")
    assert (label, text) == ("ham", "Ok lar... Joking wif u oni...")
    _check(TEMPLATES["classification"].render({"text": text, "label": label}, stop_text="</s>"),
           "Ok lar... Joking wif u oni...\nLabel: ", "ham", "</s>")
    # a numeric label (sentiment files use 0/1) renders as its string
    _check(TEMPLATES["classification"].render({"text": "Great phone.", "label": 1}, stop_text=EOS),
           "Great phone.\nLabel: ", "1")


EXAMPLE_RECORDS = {
    "alpaca": {"instruction": "Name a primary color.", "output": "Red."},
    "dialogsum": {"dialogue": "#Person1#: Hi, Tom.\n#Person2#: Hello!", "summary": "#Person1# greets Tom."},
    "prompt_completion": {"prompt": "def add(a, b):\n", "completion": "    return a + b\n"},
    "classification": {"text": "Free entry in 2 a wkly comp to win FA Cup final tkts", "label": "spam"},
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_documented_example_is_a_real_rendering(name):
    template = TEMPLATES[name]
    rendered = template.render(EXAMPLE_RECORDS[name], stop_text=EOS)
    (start, end), = rendered.targets
    shown = f"{rendered.text[:start]}[{rendered.text[start:end]}]{rendered.text[end:]}"
    assert template.example == shown


def test_builtin_fields():
    assert template_fields(TEMPLATES["alpaca"]) == {"instruction", "output"}
    assert TEMPLATES["alpaca"].optional_fields == {"input"}
    assert template_fields(TEMPLATES["dialogsum"]) == {"dialogue", "summary"}
    assert template_fields(TEMPLATES["prompt_completion"]) == {"prompt", "completion"}
    assert template_fields(TEMPLATES["classification"]) == {"text", "label"}
    assert TEMPLATES["dialogsum"].optional_fields == frozenset()


# --- custom templates -------------------------------------------------------------------


def test_custom_template_from_mapping():
    t = get_template({"prompt": "Q: {question}\nA:", "response": " {answer}"})
    assert t.name == "custom" and template_fields(t) == {"question", "answer"}
    _check(t.render({"question": "2+2?", "answer": "4", "extra": "ignored"}, stop_text=EOS), "Q: 2+2?\nA:", " 4")


def test_literal_braces_and_values_are_never_reformatted():
    t = get_template({"prompt": "{{json}} {q} }}{{", "response": "{a}"})
    rendered = t.render({"q": "{a} and {{x}}", "a": "{q}!"}, stop_text=EOS)
    _check(rendered, "{json} {a} and {{x}} }{", "{q}!")


def test_custom_prompt_no_input():
    t = get_template({"prompt": "{task}\nContext: {context}\n", "prompt_no_input": "{task}\n", "response": "{out}"})
    assert t.optional_fields == {"context"} and template_fields(t) == {"task", "out"}
    _check(t.render({"task": "T", "context": "C", "out": "O"}, stop_text=EOS), "T\nContext: C\n", "O")
    _check(t.render({"task": "T", "out": "O"}, stop_text=EOS), "T\n", "O")


def test_get_template_passes_instances_through():
    assert get_template(TEMPLATES["alpaca"]) is TEMPLATES["alpaca"]
    assert get_template("dialogsum") is TEMPLATES["dialogsum"]


def test_fingerprint_tracks_the_template_text():
    a = get_template({"prompt": "{x}", "response": "{y}"})
    assert a.fingerprint == get_template({"prompt": "{x}", "response": "{y}"}).fingerprint
    assert a.fingerprint != get_template({"prompt": "{x} ", "response": "{y}"}).fingerprint
    assert len({t.fingerprint for t in TEMPLATES.values()}) == len(TEMPLATES)


def test_policy_all_targets_the_whole_text():
    rendered = TEMPLATES["classification"].render({"text": "hi", "label": "ham"}, stop_text=EOS, policy="all")
    assert rendered.targets == ((0, len(rendered.text)),)
    assert rendered.prompt_end == len("hi\nLabel: ")
    for policy in TARGET_POLICIES:
        if policy != "all":
            rendered = TEMPLATES["classification"].render({"text": "hi", "label": "ham"}, stop_text=EOS, policy=policy)
            assert rendered.target_text() == "ham" + EOS


# --- errors -----------------------------------------------------------------------------


def test_unknown_template_name_suggests_a_close_match():
    with pytest.raises(TemplateError) as info:
        get_template("alpacca")
    message = str(info.value)
    assert "'alpacca'" in message and "did you mean 'alpaca'" in message
    for name in TEMPLATES:
        assert name in message
    with pytest.raises(TemplateError, match="built-in templates are"):
        get_template("zzz")


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"prompt": "{x}"}, "needs `prompt` and `response`"),
        ({"prompt": "{x}", "response": "{y}", "system": "s"}, r"unknown key\(s\) \['system'\]"),
        ({"prompt": "{x", "response": "{y}"}, "literal braces"),
        ({"prompt": "x}", "response": "{y}"}, "literal braces"),
        ({"prompt": "{}", "response": "{y}"}, "plain field name"),
        ({"prompt": "{0}", "response": "{y}"}, "plain field name"),
        ({"prompt": "{a.b}", "response": "{y}"}, "plain field name"),
        ({"prompt": "{a[0]}", "response": "{y}"}, "plain field name"),
        ({"prompt": "{a!r}", "response": "{y}"}, "conversion or format spec"),
        ({"prompt": "{a:>5}", "response": "{y}"}, "conversion or format spec"),
        ({"prompt": "{a}", "response": ""}, "response is empty"),
        ({"prompt": "{a}", "response": 3}, "must be a string"),
        ({"prompt": "{a}", "prompt_no_input": "{b}", "response": "{y}"}, "prompt_no_input uses"),
    ],
)
def test_bad_custom_templates(spec, match):
    with pytest.raises(TemplateError, match=match):
        get_template(spec)


def test_bad_template_argument_type():
    with pytest.raises(TemplateError, match="a name or a"):
        get_template(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "record, reason, field",
    [
        ({"summary": "s"}, "missing_field", "dialogue"),
        ({"dialogue": None, "summary": "s"}, "missing_field", "dialogue"),
        ({"dialogue": "", "summary": "s"}, "empty_field", "dialogue"),
        ({"dialogue": "d", "summary": "  \n"}, "empty_field", "summary"),
        ({"dialogue": ["a", "b"], "summary": "s"}, "bad_type", "dialogue"),
        ({"dialogue": "d", "summary": {"x": 1}}, "bad_type", "summary"),
    ],
)
def test_record_problems(record, reason, field):
    with pytest.raises(RecordProblem) as info:
        TEMPLATES["dialogsum"].render(record, stop_text=EOS)
    assert info.value.reason == reason
    assert repr(field) in str(info.value)
    assert isinstance(info.value, DataprepError)


def test_missing_alpaca_output_names_the_needed_fields():
    expected = r"'output' is missing; template 'alpaca' needs \['instruction', 'output'\] \(optional: \['input'\]\)"
    with pytest.raises(RecordProblem, match=expected):
        TEMPLATES["alpaca"].render({"instruction": "i", "input": "x"}, stop_text=EOS)


def test_stop_text_and_policy_are_checked():
    with pytest.raises(TemplateError, match="stop_text"):
        TEMPLATES["alpaca"].render({"instruction": "i", "output": "o"}, stop_text="")
    with pytest.raises(TemplateError, match="did you mean 'completion'"):
        TEMPLATES["alpaca"].render({"instruction": "i", "output": "o"}, stop_text=EOS, policy="completions")
    with pytest.raises(RecordProblem, match="mapping"):
        TEMPLATES["alpaca"].render(["i", "o"], stop_text=EOS)  # type: ignore[arg-type]


def test_template_is_frozen():
    with pytest.raises(AttributeError):
        TEMPLATES["alpaca"].prompt = "x"  # type: ignore[misc]
    assert isinstance(TEMPLATES["alpaca"], PairTemplate)


# --- properties -------------------------------------------------------------------------

_value = st.text(min_size=1).filter(str.strip)
_literal = st.text(max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    a=_value,
    b=_value,
    before=_literal,
    between=_literal,
    after=_literal,
    stop=st.sampled_from([EOS, "</s>", "<|end|>"]),
)
def test_custom_rendering_is_verbatim(a, b, before, between, after, stop):
    def esc(s: str) -> str:
        return s.replace("{", "{{").replace("}", "}}")

    t = get_template({"prompt": f"{esc(before)}{{a}}{esc(between)}", "response": f"{{b}}{esc(after)}"})
    rendered = t.render({"a": a, "b": b}, stop_text=stop)
    _check(rendered, before + a + between, b + after, stop)


# --- a column at a time (render_all) ------------------------------------------------------------

# Values of every kind a field can hold: text, blanks (Unicode whitespace too), None, numbers, booleans,
# a list and a dict (bad types), and text with braces and specials' look-alikes.
_ANY_VALUE = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "\t\n", "\u3000", "\x1c", "\u2028", "{x}", "{{", EOS, "é", "null"]),
    st.none(), st.integers(-3, 3), st.floats(allow_nan=False, width=16), st.booleans(),
    st.just(["a"]), st.just({"a": 1}),
)


def _one_at_a_time(template: PairTemplate, records: list[dict], policy: str) -> list[Rendered | str]:
    out: list[Rendered | str] = []
    for record in records:
        try:
            out.append(template.render(record, stop_text=EOS, policy=policy))
        except RecordProblem as problem:
            out.append(problem.reason)
    return out


_TWO_OPTIONAL = {"prompt": "I {instruction} / {input} / {context}\n", "prompt_no_input": "I {instruction}\n",
                 "response": "{output}"}


@settings(max_examples=400, deadline=None)
@given(
    rows=st.lists(st.fixed_dictionaries({}, optional={f: _ANY_VALUE for f in ("instruction", "input", "context", "output")}),
                  max_size=12),
    name=st.sampled_from(["alpaca", "dialogsum", "prompt_completion", "custom", "two optional"]),
    policy=st.sampled_from(["completion", "all"]),
    without=st.sets(st.sampled_from(["instruction", "input", "context", "output"]), max_size=2),
)
def test_render_all_renders_what_render_renders(rows, name, policy, without):
    """Every record render_all renders is exactly render()'s; every record it leaves (None) is one
    render() refuses or renders a number in; the rest it must not leave. A render_all that took a
    blank or a number as text, picked the wrong prompt, or lost a field fails here. Columns in
    ``without`` are not there at all (their field absent from every record)."""
    template = {"custom": get_template({"prompt": "Q: {instruction}\n{{literal}}", "response": "{output}!"}),
                "two optional": get_template(_TWO_OPTIONAL)}.get(name) or TEMPLATES[name]
    fields = sorted(template.required_fields | template.optional_fields)
    records = [{f: None if f in without else r.get(f) for f in fields} for r in rows]  # absent reads as None
    columns = {f: [r[f] for r in records] for f in fields if f not in without}
    at_once = template.render_all(columns, len(records), stop_text=EOS, policy=policy)
    singly = _one_at_a_time(template, records, policy)
    for record, fast, slow in zip(records, at_once, singly):
        if fast is not None:
            assert fast == slow, record
        else:
            texty = all(type(record[f]) is str and record[f].strip() for f in template.required_fields) and all(
                record[f] is None or type(record[f]) is str for f in template.optional_fields)
            assert not texty, f"left a record render() renders from text: {record}"


def test_an_optional_field_the_response_needs_is_refused():
    """A field prompt_no_input leaves out is optional, so a response that uses it could not be rendered
    without it (render() raised a bare KeyError, render_all wrote the blank): the template is refused."""
    with pytest.raises(TemplateError, match=r"the response uses \['input'\].*required"):
        get_template({"prompt": "{instruction} [{input}]\n", "prompt_no_input": "{instruction}\n",
                      "response": "{input}{output}"})


def test_render_all_without_a_field_column_leaves_every_record():
    template = TEMPLATES["alpaca"]
    records = [{"instruction": "a", "output": "b"}, {"instruction": "c", "input": "d", "output": "e"}]
    no_input = template.render_all({"instruction": ["a", "c"], "output": ["b", "e"]}, 2, stop_text=EOS)
    assert no_input == [template.render(records[0], stop_text=EOS), template.render({"instruction": "c", "output": "e"}, stop_text=EOS)]
    assert template.render_all({"instruction": ["a", "c"]}, 2, stop_text=EOS) == [None, None]  # no output column
    two = get_template(_TWO_OPTIONAL)  # one optional column missing, the other's value not text: render() refuses it
    for missing, other in (("input", "context"), ("context", "input")):
        columns = {"instruction": ["a", "a"], "output": ["b", "b"], other: [["not text"], None]}
        assert missing not in columns
        assert two.render_all(columns, 2, stop_text=EOS) == [None, two.render({"instruction": "a", "output": "b"}, stop_text=EOS)]
    with pytest.raises(TemplateError, match="stop_text"):
        template.render_all({"instruction": [], "output": []}, 0, stop_text="")
