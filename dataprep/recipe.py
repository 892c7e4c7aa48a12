"""Recipes: YAML -> overrides -> JSON Schema check (every issue at once) -> frozen dataclasses.

A recipe says what to read, how to clean, tokenize, pack and split it. Defaults live in
``schemas/recipe.schema.json`` and nowhere else; :func:`load_recipe` fills them in, so
the resolved recipe recorded in the manifest is complete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dataprep.errors import Issue, RecipeError
from dataprep.read import FieldSpec, InputSpec
from dataprep.pack.mixture import MIX_KEYS, MixtureSpec, mixture_from_recipe
from dataprep.schema import iter_issues, load_schema, with_defaults
from dataprep.text.filters import MINHASH, FilterSpec
from dataprep.text.minhash import MinhashSpec
from dataprep.text.normalize import NormalizeSpec
from dataprep.text.tokenizer import TokenizerSpec

SCHEMA = "recipe"


@dataclass(frozen=True)
class PackingSpec:
    mode: str = "wrap"
    seq_len: int = 2048
    remainder: str = "drop"
    pad_rows: bool = True
    buffer_tokens: int = 4 * 1024 * 1024
    segment_tokens: int | None = None  # pack and write the train split in segments of this many tokens (build/segments.py)


@dataclass(frozen=True)
class SplitSpec:
    validation: float = 0.01
    salt: str = ""


@dataclass(frozen=True)
class OutputSpec:
    shard_bytes: int = 256 * 1024 * 1024
    chunk_records: int = 2048
    chunk_bytes: int = 4 * 1024 * 1024
    batch_tokens: int = 4 * 1024 * 1024
    labels: bool = False  # sft: also write `labels` (ids at targets, IGNORE_INDEX elsewhere)


@dataclass(frozen=True)
class ClassificationSpec:
    labels: tuple[str, ...] | None = None
    unknown_label: str = "error"
    train: str = "generative"  # how `dataprep train` trains it: generative | head


@dataclass(frozen=True)
class ChatSpec:
    """How a chat template renders (``chat:`` in a recipe with ``template: chat``)."""

    template: Path | None = None  # a Jinja file instead of the tokenizer's own template
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # extra template variables
    date: str = "2026-01-01"  # what strftime_now prints
    reasoning: bool = True  # reasoning the template renders is a target


@dataclass(frozen=True)
class SftSpec:
    """The fine-tuning part of a recipe (``task: sft``)."""

    template: str | Mapping[str, Any]
    target_policy: str  # the recipe's `masking:`: which text is a target (completion, all_assistant, last_assistant, generation, ...)
    max_length: int
    overflow: str
    classification: ClassificationSpec | None = None
    special_text: str = "error"  # a field holding a special token's text: error (bad record) | keep
    # per input (same order as Recipe.inputs): template field -> where it is in a record; None = defaults
    fields: tuple[Mapping[str, FieldSpec] | None, ...] = ()
    chat: ChatSpec = field(default_factory=ChatSpec)


@dataclass(frozen=True)
class MlmSpec:
    """``objective: mlm`` options (see :mod:`dataprep.tasks.mlm`)."""

    masking: str = "dynamic"
    rate: float = 0.15
    mask_ratio: float = 0.8
    random_ratio: float = 0.1
    whole_word: bool = False
    mask_token: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class SpanSpec:
    """``objective: span_corruption`` options (see :mod:`dataprep.tasks.span`)."""

    noise_density: float = 0.15
    mean_span_length: float = 3.0
    seed: int = 0


@dataclass(frozen=True)
class FewshotSpec:
    """``task: fewshot`` options (see :mod:`dataprep.tasks.fewshot`)."""

    k: int = 4
    separator: str = "\n\n"
    seed: int = 0


@dataclass(frozen=True)
class Recipe:
    """A validated recipe with every default filled in."""

    task: str
    inputs: tuple[InputSpec, ...]
    tokenizer: TokenizerSpec
    normalize: NormalizeSpec
    filter: FilterSpec
    packing: PackingSpec
    split: SplitSpec
    output: OutputSpec
    on_error: str
    base_dir: Path
    max_dropped_fraction: float = 0.01  # on_error: skip: the most of any input's records that may be dropped
    allow_empty: bool = False  # a run that writes no example (or an empty split) may succeed
    name: str = ""
    sft: SftSpec | None = None  # also set for task: fewshot (template, masking, max_length, overflow)
    objective: str = "clm"  # pretrain: clm | mlm | span_corruption
    mlm: MlmSpec | None = None
    span: SpanSpec | None = None
    fewshot: FewshotSpec | None = None
    mixture: MixtureSpec | None = None  # inputs drawn by weight, tokens or epochs (dataprep.pack.mixture)
    resolved: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def hash(self) -> str:
        """sha256 of the resolved recipe's canonical JSON."""
        return recipe_hash(self.resolved)


def recipe_hash(resolved: Mapping[str, Any]) -> str:
    canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read, override, check and freeze the recipe at ``path``.

    Args:
        path: the YAML file.
        overrides: ``key.path=value`` strings (``--set`` on the command line); values are
            parsed as YAML, so ``packing.seq_len=4096`` gives an int.

    Raises:
        RecipeError: with every problem found, each with its path in the YAML.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(str(path), [Issue("", f"cannot read the recipe: {exc.strerror or exc}")]) from exc
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(str(path), [Issue(where, f"invalid YAML: {problem}")]) from exc
    return recipe_from_dict(data, base_dir=path.resolve().parent, source=str(path), overrides=overrides)


class _RecipeLoader(yaml.SafeLoader):
    """YAML as a recipe is read: a date stays the text it is. ``date: 2026-01-01`` (or ``--set
    chat.date=2026-01-01``) would otherwise become a ``datetime.date`` that the schema, which wants the
    string, rejects; no recipe value is a YAML timestamp."""


_RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_yaml(text: str) -> Any:
    """A recipe's YAML (or a ``--set`` value) as Python values, dates kept as text.

    Raises:
        yaml.YAMLError: the text is not YAML.
    """
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass


def recipe_from_dict(
    data: Any, *, base_dir: Path, source: str = "<recipe>", overrides: Sequence[str] = ()
) -> Recipe:
    """Like :func:`load_recipe` for a recipe already parsed into Python objects."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(source, [Issue("", f"a recipe is a mapping of keys, got {type(data).__name__}")])
    issues: list[Issue] = []
    for item in overrides:
        try:
            apply_override(data, item)
        except ValueError as exc:
            issues.append(Issue(f"--set {item}", str(exc)))
    issues.extend(iter_issues(data, SCHEMA))
    if issues:
        raise RecipeError(source, issues)
    resolved = with_defaults(data, load_schema(SCHEMA))
    if resolved["normalize"].get("fix_mojibake") and resolved["task"] != "pretrain":
        raise RecipeError(source, [Issue("normalize.fix_mojibake", "mojibake repair is for task: pretrain; repair the "
                                                                   "records before building (ftfy.fix_encoding)")])
    if resolved["normalize"].get("pii") and resolved["task"] != "pretrain":
        # only the pretraining worker redacts (a fine-tuning example's fields are rendered by its template)
        raise RecipeError(source, [Issue("normalize.pii", "personal-data redaction is for task: pretrain; remove it "
                                                          "here, or redact the records before building")])
    if resolved["filter"]["dedup"] == MINHASH and (resolved["task"], resolved.get("objective", "clm")) != ("pretrain", "clm"):
        # the other tasks' workers send no signatures (dataprep.tasks.pretrain computes them)
        raise RecipeError(source, [Issue("filter.dedup", "minhash is for task: pretrain with objective: clm; "
                                                         "use exact (or none) here")])
    mixture, issues = mixture_from_recipe(resolved["inputs"], resolved.get("mixture"))
    if resolved["packing"].get("segment_tokens") is not None:
        # segments pack a document stream (dataprep.build.segments): pretraining's, whole when drawn by no mixture
        if (resolved["task"], resolved.get("objective", "clm")) != ("pretrain", "clm"):
            issues.append(Issue("packing.segment_tokens", "segments are for task: pretrain with objective: clm; "
                                                          "remove packing.segment_tokens"))
        elif mixture is not None:
            issues.append(Issue("packing.segment_tokens", "a mixture draws its documents after the last chunk, so it "
                                                          "packs them in one stream: remove packing.segment_tokens"))
    if mixture is not None and resolved["task"] == "preference":
        issues.append(Issue("inputs", "mixtures are for pretraining and fine-tuning recipes; a preference recipe reads "
                                      "its inputs whole (remove group / weight / tokens / epochs and mixture:)"))
    if resolved.get("decontaminate") and resolved["task"] == "preference":
        issues.append(Issue("decontaminate", "decontamination is for pretraining and fine-tuning recipes; decontaminate the "
                                             "pairs' source before building them"))
    if issues:
        raise RecipeError(source, issues)
    return _freeze(resolved, base_dir=base_dir, mixture=mixture)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one ``a.b.c=value`` override in place (``inputs.0.path=...`` indexes lists)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ValueError("expected KEY=VALUE, e.g. --set packing.seq_len=4096")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot parse the value {raw!r}: {exc}") from exc
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, parts[: i + 1], create=True)
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, parts)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ValueError(f"{'.'.join(parts[:-1])} is a {type(node).__name__}, not a mapping")


def _child(node: Any, part: str, so_far: list[str], *, create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, so_far)]
    if not isinstance(node, dict):
        raise ValueError(f"{'.'.join(so_far[:-1])} is a {type(node).__name__}, not a mapping")
    if part not in node and create:
        node[part] = {}
    return node[part]


def _index(node: list[Any], part: str, so_far: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ValueError(f"{'.'.join(so_far)}: list index {part!r} is out of range (the list has {len(node)} items)")
    return int(part)


def _freeze(r: dict[str, Any], *, base_dir: Path, mixture: MixtureSpec | None) -> Recipe:
    inputs, fields = [], []
    for spec in r["inputs"]:
        spec = {k: v for k, v in spec.items() if k not in ("group", *MIX_KEYS)}  # the mixture's, not the reader's
        field_map = spec.pop("fields", None)
        inputs.append(InputSpec(**spec))
        fields.append(None if field_map is None else {name: _field(v) for name, v in field_map.items()})
    sft = None
    if r["task"] in ("sft", "fewshot", "preference"):  # preference renders as sft does (its own options: resolved)
        cls = r.get("classification")
        sft = SftSpec(
            template=r["template"],
            target_policy=r["masking"],
            max_length=r["max_length"],
            overflow=r["overflow"],
            classification=None
            if cls is None
            else ClassificationSpec(labels=None if cls["labels"] is None else tuple(cls["labels"]), unknown_label=cls["unknown_label"], train=cls["train"]),
            fields=tuple(fields),
            special_text=r.get("special_text") or "error",
            chat=_chat(r.get("chat"), base_dir),
        )
    return Recipe(
        task=r["task"],
        name=r.get("name", ""),
        inputs=tuple(inputs),
        tokenizer=TokenizerSpec(**r["tokenizer"]),
        normalize=_normalize(r["normalize"]),
        filter=_filter(r["filter"]),
        packing=PackingSpec(**r["packing"]),
        split=SplitSpec(**r["split"]),
        output=OutputSpec(**r["output"]),
        on_error=r["on_error"],
        base_dir=base_dir,
        max_dropped_fraction=r["max_dropped_fraction"],
        allow_empty=r["allow_empty"],
        sft=sft,
        objective=r.get("objective", "clm"),
        mlm=MlmSpec(**r["mlm"]) if "mlm" in r else None,
        span=SpanSpec(**r["span_corruption"]) if "span_corruption" in r else None,
        fewshot=FewshotSpec(**r["fewshot"]) if "fewshot" in r else None,
        mixture=mixture,
        resolved=r,
    )


def _normalize(value: Mapping[str, Any]) -> NormalizeSpec:
    """``normalize:`` as a NormalizeSpec; ``pii: {email: redact, ...}`` as the kinds to redact."""
    value = dict(value)
    if "pii" in value:
        value["pii"] = tuple(kind for kind, action in value["pii"].items() if action == "redact")
    return NormalizeSpec(**value)


def _filter(value: Mapping[str, Any]) -> FilterSpec:
    """``filter:`` as a FilterSpec; the quality rules built now, so a bad option fails at load."""
    value = dict(value)
    if "minhash" in value:
        value["minhash"] = MinhashSpec(**value["minhash"])
    if isinstance(value.get("languages"), list):
        value["languages"] = tuple(value["languages"])
    if "quality" in value:
        from dataprep.text.quality import quality_filters

        value["quality"] = quality_filters(value["quality"])
    return FilterSpec(**value)


def _chat(value: Mapping[str, Any] | None, base_dir: Path) -> ChatSpec:
    value = dict(value or {})
    if value.get("template"):
        value["template"] = base_dir / value["template"]
    return ChatSpec(**value)


def _field(value: str | Mapping[str, Any]) -> FieldSpec:
    return FieldSpec(path=value) if isinstance(value, str) else FieldSpec(**value)
