"""Which :class:`~dataprep.tasks.base.Task` builds a recipe's dataset."""

from __future__ import annotations

from dataprep.errors import ConfigError
from dataprep.recipe import Recipe
from dataprep.tasks.base import Task
from dataprep.tasks.fewshot import FewshotTask
from dataprep.tasks.mlm import MlmTask
from dataprep.tasks.preference.task import PreferenceTask
from dataprep.tasks.pretrain import PretrainTask
from dataprep.tasks.sft.task import SftTask
from dataprep.tasks.span import SpanTask

PRETRAINING: dict[str, Task] = {"clm": PretrainTask(), "mlm": MlmTask(), "span_corruption": SpanTask()}  # by objective
OTHERS: dict[str, Task] = {"sft": SftTask(), "fewshot": FewshotTask(), "preference": PreferenceTask()}  # by task


def task_for(recipe: Recipe) -> Task:
    """The task of ``recipe``: its pretraining objective, or its ``task``."""
    if recipe.task == "pretrain":
        table, key, field = PRETRAINING, recipe.objective, "objective"
    else:
        table, key, field = OTHERS, recipe.task, "task"
    if key not in table:  # the schema allows only these; a recipe built in code may not
        raise ConfigError(f"unknown {field} {key!r}; one of: {', '.join(sorted(table))}")
    return table[key]
