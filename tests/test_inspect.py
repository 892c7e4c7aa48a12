"""`dataprep inspect`: the rendering marks exactly the target tokens, on real tokenizers."""

from __future__ import annotations

import json
import re

import click
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from dataprep.look import preview, inspect as view
from dataprep.cli import cli
from dataprep.dataset.reader import open_dataset
from dataprep.errors import ConfigError, InputError
from dataprep.build.run import run
from dataprep.recipe import load_recipe
from dataprep.text.tokenizer import TokenizerSpec, load_tokenizer

from .conftest import DATA, RECIPES

GPT2 = DATA / "tokenizers" / "gpt2"
PHI3 = DATA / "tokenizers" / "phi-3-mini"
ANSI_RUN = re.compile(r"((?:\x1b\[[0-9;]*m)+)([^\x1b]*)\x1b\[0m")


def codes(**style) -> str:
    """The SGR prefix click writes for a style (the part before the text)."""
    return click.style("x", **style).split("x")[0]


def styled_runs(text: str) -> list[tuple[str, str]]:
    """(SGR prefix, text) of every styled run; a token's lines (same style, split at a newline) merge."""
    runs: list[tuple[str, str]] = []
    last_end = None
    for m in ANSI_RUN.finditer(text):
        between = text[last_end : m.start()] if last_end is not None else None
        if runs and runs[-1][0] == m.group(1) and between is not None and set(between) <= {"\n"}:
            runs[-1] = (runs[-1][0], runs[-1][1] + between + m.group(2))
        else:
            runs.append((m.group(1), m.group(2)))
        last_end = m.end()
    return runs


def kind_of(prefix: str) -> str:
    """target / context from the background colour (the special-token foreground overrides only fg)."""
    for kind in ("target", "context"):
        if any(f"48;5;{s['bg']}m" in prefix for s in view.STYLES[kind]):
            return kind
    return "other"


@pytest.fixture(scope="module")
def pair_recipe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    (folder / "pairs.jsonl").write_text(
        json.dumps({"prompt": "Reverse: abc\n", "completion": "cba"}) + "\n"
        + json.dumps({"prompt": "Say: hi", "completion": ""}) + "\n",
        encoding="utf-8",
    )
    recipe = {
        "task": "sft",
        "inputs": [{"path": "pairs.jsonl"}],
        "tokenizer": {"path": str(GPT2)},
        "template": "prompt_completion",
        "on_error": "skip",
        "max_dropped_fraction": 1,
    }
    (folder / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return folder


def test_known_example_targets_are_exactly_the_response_and_eos(pair_recipe):
    recipe = load_recipe(pair_recipe / "r.yaml")
    rows = preview.rows_from_recipe(recipe, head=5)
    tok = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    first = rows[0]
    assert first.ids.tolist() == [49, 964, 325, 25, 450, 66, 198, 66, 7012, 50256]
    assert first.mask.tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]

    out = view.format_row(first, tok, color=True)
    runs = [(kind_of(p), t) for p, t in styled_runs(out) if kind_of(p) != "other"]
    assert runs == [
        ("context", "R"), ("context", "ever"), ("context", "se"), ("context", ":"), ("context", " ab"),
        ("context", "c"), ("context", "↵"), ("target", "c"), ("target", "ba"), ("target", "<|endoftext|>"),
    ]
    # the EOS is drawn as a special token: special foreground on a target background
    eos = [p for p, t in styled_runs(out) if t == "<|endoftext|>"]
    assert eos == [codes(fg=view.SPECIAL_FG, bg=view.STYLES["target"][1]["bg"], bold=True)]

    plain = view.format_row(first, tok, color=False)
    assert plain.splitlines()[-2:] == ["R│ever│se│:│ ab│c│↵", "⟦c│ba│⟨<|endoftext|>⟩⟧"]
    assert view.format_row(first, tok, color=False, boundaries=False).splitlines()[-2:] == ["Reverse: abc↵", "⟦cba⟨<|endoftext|>⟩⟧"]
    assert view.format_row(first, tok, color=False, show_ids=True).splitlines()[-2:] == [
        "R[49]ever[964]se[325]:[25] ab[450]c[66]↵[198]",
        "⟦c[66]ba[7012]⟨<|endoftext|>⟩[50256]⟧",
    ]
    assert plain.splitlines()[0] == "━━ pairs.jsonl line 1 · 10 tokens · 1 segment · 3 targets · 0 pad ━━"
    # the second record is dropped by the template: shown with its reason and the worker's message, not rendered
    assert rows[1].notes == ["dropped: empty_field (field 'completion' is empty; template 'prompt_completion' "
                             "needs ['completion', 'prompt'])", 'record: {"prompt": "Say: hi"}'] and len(rows[1].ids) == 0


def test_source_file_overrides_the_recipe_inputs(pair_recipe, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"prompt": "Q", "completion": " A"}) + "\n", encoding="utf-8")
    rows = preview.rows_from_recipe(load_recipe(pair_recipe / "r.yaml"), source=other, head=3)
    assert [r.title for r in rows] == ["other.jsonl line 1"]
    assert rows[0].ids.tolist() == [48, 317, 50256] and rows[0].mask.tolist() == [0, 1, 1]


def test_error_that_would_stop_run_is_shown_in_place(pair_recipe):
    recipe = load_recipe(pair_recipe / "r.yaml", ["on_error=raise"])
    rows = preview.rows_from_recipe(recipe, head=5)
    assert rows[0].mask.tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]  # the first record renders before the error
    assert rows[1].notes[0].startswith("run would stop here: ") and "line 2" in rows[1].notes[0]


@pytest.fixture(scope="module")
def chat_dataset(tmp_path_factory):
    """20 real ShareGPT conversations through Phi-3's chat template, packed (bfd) into 512-token rows."""
    folder = tmp_path_factory.mktemp("chat")
    conversations = json.loads((DATA / "pairs" / "chat" / "sharegpt_dummy_conversation.json").read_text(encoding="utf-8"))
    (folder / "chat.json").write_text(json.dumps(conversations[:20]), encoding="utf-8")
    recipe = {
        "task": "sft",
        "inputs": [{"path": "chat.json", "fields": {"messages": {"path": "conversations", "kind": "messages"}}}],
        "tokenizer": {"path": str(PHI3)},
        "template": "chat",
        "max_length": 512,
        "packing": {"mode": "bfd", "seq_len": 512},
        "split": {"validation": 0.0},
    }
    (folder / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    out = folder / "out"
    run(load_recipe(folder / "r.yaml"), out, workers=1)
    return out


def test_packed_row_every_token_styled_as_its_mask_says(chat_dataset):
    ds = open_dataset(chat_dataset)
    tok = ds.tokenizer()
    row = view.rows_from_dataset(ds, "train", [0])[0]
    assert row.segments >= 2 and row.num_pad > 0
    content = len(row.ids) - row.num_pad
    out = view.format_row(row, tok, color=True)
    kinds = [kind_of(p) for p, _ in styled_runs(out) if kind_of(p) != "other"]
    assert kinds == ["target" if m else "context" for m in row.mask[:content]]
    # specials: every <|user|>, <|assistant|>, <|end|> and <|endoftext|> drawn with the special colour
    special_runs = [t for p, t in styled_runs(out) if f"38;5;{view.SPECIAL_FG}m" in p]
    expected = [tok.tokenizer.id_to_token(int(i)) for i in row.ids[:content] if int(i) in view.special_ids(tok)]
    assert special_runs == expected and "<|assistant|>" in special_runs
    # one header per segment, with its target count; the pad piece collapsed onto one line
    plain = view.format_row(row, tok, color=False)
    headers = [line for line in plain.splitlines() if line.startswith("── segment")]
    assert len(headers) == row.segments
    starts = np.concatenate(([0], np.cumsum(row.seq_lens)))
    for n, line in enumerate(headers):
        assert f"segment {n + 1}/{row.segments} · tokens {starts[n]}–{starts[n + 1] - 1} · {int(row.mask[starts[n]:starts[n + 1]].sum())} targets" in line
    assert plain.splitlines()[-1] == f"── pad · {row.num_pad:,} × ⟨<|endoftext|>⟩ (id 32000) ──"
    assert plain.splitlines()[0] == (
        f"━━ train row 0 · {len(row.ids):,} tokens · {row.segments} segments · {int(row.mask.sum()):,} targets · {row.num_pad:,} pad ━━"
    )


def test_partial_characters_go_to_the_token_that_completes_them():
    tok = load_tokenizer(TokenizerSpec(path=str(GPT2)), base_dir=GPT2)
    ids = tok.tokenizer.encode("日本", add_special_tokens=False).ids
    assert ids == [33768, 98, 17312, 105]
    assert view.token_texts(tok, ids) == [None, "日", None, "本"]
    row = view.RowView("r", np.asarray(ids), None, [4])
    assert view.format_row(row, tok, color=False).splitlines()[-1] == "◦│日│◦│本"


def test_pick_rows():
    assert view.pick_rows(10) == [0, 1, 2]
    assert view.pick_rows(2, head=5) == [0, 1]
    assert view.pick_rows(10, rows=(7, 2)) == [7, 2]
    picked = view.pick_rows(100, random=5, seed=3)
    assert picked == sorted(set(picked)) and len(picked) == 5 and picked == view.pick_rows(100, random=5, seed=3)
    assert picked != view.pick_rows(100, random=5, seed=4)
    with pytest.raises(ConfigError, match="row 10 is out of range: the split has 10 rows"):
        view.pick_rows(10, rows=(10,))
    with pytest.raises(ConfigError, match="--row and --random"):
        view.pick_rows(10, rows=(1,), random=2)


def test_cli_inspect_dataset_plain_when_not_a_terminal(chat_dataset):
    result = CliRunner().invoke(cli, ["inspect", str(chat_dataset), "--row", "0", "--ids"])
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.output
    assert result.output.splitlines()[1].startswith("━━ train row 0 · ")
    assert "⟨<|assistant|>⟩[32001]" in result.output
    forced = CliRunner().invoke(cli, ["inspect", str(chat_dataset), "--row", "0", "--color"])
    assert forced.exit_code == 0 and "\x1b[48;5;28m" in forced.output


def test_cli_inspect_recipe_and_errors(pair_recipe, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["inspect", str(pair_recipe / "pairs.jsonl"), "--recipe", str(pair_recipe / "r.yaml")])
    assert result.exit_code == 0 and "⟦c│ba│⟨<|endoftext|>⟩⟧" in result.output and "dropped: empty_field" in result.output
    usage = runner.invoke(cli, ["inspect", "--recipe", str(pair_recipe / "r.yaml"), "--random", "2"])
    assert usage.exit_code == 2 and "with --recipe, use --head K" in usage.output
    with pytest.raises(InputError, match="not a dataprep dataset"):
        open_dataset(tmp_path)
    with pytest.raises(InputError, match="inspect FILE --recipe"):
        open_dataset(pair_recipe / "pairs.jsonl")


def test_recipe_that_trains_its_tokenizer_needs_one_named():
    recipe = load_recipe(RECIPES / "demo-pretrain.yaml")
    with pytest.raises(ConfigError, match="--tokenizer OUT/tokenizer"):
        preview.rows_from_recipe(recipe)
    result = CliRunner().invoke(cli, ["inspect", "--recipe", str(RECIPES / "demo-pretrain.yaml"), "--tokenizer", str(GPT2), "-n", "1"])
    assert result.exit_code == 0, result.output
    first = json.loads((RECIPES / "data" / "tiny_corpus.jsonl").read_text(encoding="utf-8").splitlines()[0])["text"]
    ids = load_tokenizer(TokenizerSpec(path=str(GPT2)), base_dir=GPT2).tokenizer.encode(first).ids + [50256]
    assert f"━━ tiny_corpus.jsonl line 1 · {len(ids)} tokens · 1 segment · no loss mask · 0 pad ━━" in result.output


def test_cli_inspect_shows_mlm_targets_and_span_labels(tmp_path):
    """Static MLM rows: the chosen positions are the targets, each with what it shows and the original;
    span-corruption rows: the labels sequence after the inputs."""
    mlm = tmp_path / "mlm"
    run(load_recipe(RECIPES / "mlm-wikitext.yaml"), mlm, workers=1)
    row = open_dataset(mlm).table("train").slice(0, 1).to_pylist()[0]
    chosen = [i for i, x in enumerate(row["labels"]) if x != -100]
    result = CliRunner().invoke(cli, ["inspect", str(mlm), "--row", "0"])
    assert result.exit_code == 0, result.output
    assert f"masked LM · {len(chosen)} chosen positions: shown → original" in result.output
    assert re.search(rf"(^|  ){chosen[0]}:\S+→\S+", result.output, re.M)
    assert (row["seq_lengths"], row["num_pad"]) == ([128], 0)  # one piece fills row 0: the chosen positions are its targets
    assert f"━━ train row 0 · 128 tokens · 1 segment · {len(chosen)} targets · 0 pad ━━" in result.output.splitlines()
    assert f"── segment 1/1 · tokens 0–127 · {len(chosen)} targets ──" in result.output.splitlines()
    span = tmp_path / "span"
    run(load_recipe(RECIPES / "span-c4.yaml"), span, workers=1)
    labels = open_dataset(span).table("train").slice(0, 1).to_pylist()[0]["labels"]
    result = CliRunner().invoke(cli, ["inspect", str(span), "--row", "0", "--ids"])
    assert result.exit_code == 0, result.output
    assert f"labels · {len(labels)} tokens (sentinels and the spans they replace)" in result.output
    assert f"[{labels[0]}]" in result.output.split("labels · ", 1)[1]


def test_inspect_recipe_shows_tool_calls_results_and_reasoning(tmp_path):
    # a tool-call turn and the final answer are targets; the tool list and the tool's result are context
    runner = CliRunner()
    result = runner.invoke(cli, ["inspect", "--recipe", str(RECIPES / "chat-tools.yaml"), "-n", "1", "--no-color"])
    assert result.exit_code == 0, result.output
    plain = result.output.replace("│", "")
    assert '"name": "search_recipes"' in plain and "Environment: ipython" in plain  # the tools reached the template
    assert '⟦{"name": "search_recipes", "parameters": {"ingredients": ["chicken", "bell peppers", "rice"]}}⟨<|eot_id|>⟩⟧' in plain
    assert '⟨<|start_header_id|>⟩ipython⟨<|end_header_id|>⟩↵\n↵\n"{\\"recipes\\"' in plain  # the result: context
    # reasoning (gpt-oss `thinking`, read from reasoning_content) is drawn as a target on the final turn
    chats = tmp_path / "think.jsonl"
    chats.write_text(json.dumps({"messages": [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "reasoning_content": "Add them."},
    ]}) + "\n")
    recipe = {"task": "sft", "inputs": [{"path": str(chats)}], "tokenizer": {"path": str(DATA / "tokenizers" / "gpt-oss")},
              "template": "chat", "split": {"validation": 0.0}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = runner.invoke(cli, ["inspect", "--recipe", str(tmp_path / "r.yaml"), "--no-color"])
    assert result.exit_code == 0, result.output
    plain = result.output.replace("│", "")
    assert "⟦⟨<|channel|>⟩analysis⟨<|message|>⟩Add them.⟨<|end|>⟩⟨<|start|>⟩assistant⟨<|channel|>⟩final⟨<|message|>⟩4⟨<|return|>⟩⟧" in plain
