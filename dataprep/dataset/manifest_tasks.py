"""The sections a task adds to the manifest: ``sft`` (fine-tuning, few-shot and preference: how
examples render), ``fewshot``, ``preference``, and ``objective`` for the pretraining objectives other than next-token prediction (``mlm``,
``span_corruption``). Next-token pretraining (``clm``) adds none: its facts are all in
:class:`~dataprep.dataset.manifest_parts.Rows`.

Each section is a frozen record whose fields are its JSON keys in written order
(:mod:`._codec`); the task builds it (:mod:`dataprep.tasks`) and every reader gets it from
:meth:`~dataprep.dataset.manifest.Manifest.load`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dataprep.dataset._codec import optional


@dataclass(frozen=True, kw_only=True)
class Template:
    name: str  # a pair template's name, or ``chat``
    text_sha256: str


@dataclass(frozen=True, kw_only=True)
class Chat:
    """How a chat template rendered (``template: chat``)."""

    template_file: str | None  # recipe chat.template (relative to the recipe), or None: the tokenizer's own
    kwargs: dict[str, Any]
    date: str
    reasoning: bool
    stop_tokens: tuple[str, ...]  # the texts that may close a target


@dataclass(frozen=True, kw_only=True)
class Examples:
    truncated: int
    truncated_tokens: int
    with_boundary_straddle: int
    system_not_rendered: int | None = optional()
    unrendered: dict[str, int] | None = optional()


@dataclass(frozen=True, kw_only=True)
class Sft:
    """Fine-tuning: template, masking, stop ids, examples and targets, class labels.

    Attributes:
        stop_token_ids: the ids that may close an example's targets (EOS for pair templates; the
            chat template's end-of-turn tokens; empty for ``masking: generation``). None: not
            stated and not known (a chat dataset made before they were recorded).
        labels: classification: label -> label id; None otherwise.
    """

    template: Template
    chat: Chat | None = None
    masking: str
    stop_token_ids: tuple[int, ...] | None = optional()
    max_length: int
    overflow: str
    examples: Examples
    target_tokens: int
    target_ratio: float
    labels: dict[str, int] | None
    classification_train: str | None = None  # generative | head


@dataclass(frozen=True, kw_only=True)
class Pool:
    split: str
    examples: int


@dataclass(frozen=True, kw_only=True)
class Fewshot:
    """``task: fewshot``: k, the demonstration pool, and prompts per number of shots."""

    k: int
    separator: str | None = optional()
    seed: int | None = optional()
    pool: Pool | None = optional()
    shots: dict[str, int]  # "0", "1", ... -> prompts with that many demonstrations
    prompts_with_fewer_shots: int | None = optional()
    mean_shots: float | None = optional()


@dataclass(frozen=True, kw_only=True)
class Preference:
    """``task: preference``: the record shape, the boundary policy, and what the written pairs hold.

    How a prompt and its responses render (template, chat, stop ids, ``max_length``, overflow) is the
    ``sft`` section: each of chosen and rejected is a fine-tuning example whose target is the last
    assistant turn.

    Attributes:
        shape: ``triples`` | ``conversation`` | ``transcripts`` | ``kto``.
        boundary: a token merged across prompt and response: ``drop`` the pair, or ``cut`` before it.
        boundary_cuts: pairs kept with the merged token as their responses' first token (``cut``;
            with ``drop`` such pairs are in ``counts.dropped.boundary_merge``).
        prompt_tokens: the written prompts' tokens (each pair's prompt once), both splits.
        chosen_tokens / rejected_tokens: the responses' tokens, stop tokens included (pairs).
        chosen_longer: pairs whose chosen response has more tokens than the rejected one: the
            length bias preference data is known for (about half is no bias).
        completion_tokens, desirable, undesirable: KTO examples' responses, and how many are
            labelled good and bad (TRL's KTO trainer weighs the two classes by these counts).
    """

    shape: str
    boundary: str
    boundary_cuts: int
    prompt_tokens: int
    chosen_tokens: int | None = optional()
    rejected_tokens: int | None = optional()
    chosen_longer: int | None = optional()
    completion_tokens: int | None = optional()
    desirable: int | None = optional()
    undesirable: int | None = optional()


@dataclass(frozen=True, kw_only=True)
class Frame:
    """The ids the post-processor puts before and after each piece (``[CLS]`` / ``[SEP]``)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class StaticMasks:
    """What static masking chose and did, over both splits."""

    maskable: int
    chosen: int
    masked: int
    random: int
    unchanged: int
    chosen_ratio: float


@dataclass(frozen=True, kw_only=True)
class Mlm:
    """``objective: mlm``: the masking options, the ids it relies on, and (static) what it masked."""

    NAME: ClassVar[str] = "mlm"
    name: str = NAME
    masking: str  # static | dynamic
    rate: float
    mask_ratio: float
    random_ratio: float
    whole_word: bool
    word_starts: str | None  # wordpiece | byte_level | metaspace | token (whole_word only)
    seed: int
    mask_token_id: int
    never_masked_ids: tuple[int, ...]
    frame: Frame
    added_tokens: tuple[str, ...] | None = optional()  # <mask>, added to a trained tokenizer
    static: StaticMasks | None = optional()


@dataclass(frozen=True, kw_only=True)
class Span:
    """``objective: span_corruption``: T5 lengths, sentinels, and the raw tokens the rows hold."""

    NAME: ClassVar[str] = "span_corruption"
    name: str = NAME
    noise_density: float
    mean_span_length: float
    seed: int
    raw_length: int
    noise_tokens: int
    spans: int
    labels_length: int
    input_length: int
    sentinel_ids: tuple[int, ...]
    eos_id: int | None
    added_tokens: tuple[str, ...]
    raw_tokens: int


Objective = Mlm | Span


@dataclass(frozen=True)
class TaskSections:
    """The sections a task adds to its manifest (each None when the task has none)."""

    sft: Sft | None = None
    fewshot: Fewshot | None = None
    preference: Preference | None = None
    objective: Objective | None = None
