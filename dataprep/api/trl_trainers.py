"""TRL's preference trainers on dataprep's rows as they are: ``DPOTrainer`` and ``KTOTrainer``.

dataprep writes preference rows in the columns TRL's collators read (``prompt_ids``, ``chosen_ids``,
``rejected_ids``; KTO: ``prompt_ids``, ``completion_ids``, ``label``), but TRL's trainers (1.x)
always run their own dataset preparation, which tokenizes ``prompt`` / ``chosen`` / ``rejected``
*text*: rows that are already tokens have none, and re-tokenizing would undo what dataprep proved (one
tokenization per sequence, the boundary merges it reported). These subclasses keep such rows as they
are and leave every other dataset to TRL::

    from datasets import load_from_disk
    from transformers import AutoTokenizer
    from trl import DPOConfig
    from dataprep.api.trl_trainers import DPOTrainer

    pairs = load_from_disk("out/preference-synthetic")
    tokenizer = AutoTokenizer.from_pretrained("out/preference-synthetic/tokenizer")
    trainer = DPOTrainer(model=model, args=DPOConfig(output_dir="runs/dpo", max_length=None),
                         train_dataset=pairs["train"], eval_dataset=pairs["validation"], processing_class=tokenizer)

KTO's trainer also estimates its KL term from mismatched (prompt, completion) pairs, which its
preparation builds by rotating completions by one within each batch; :class:`KTOTrainer` builds that
column the same way (TRL's ``add_kl_completion_ids``), as the one step of TRL's preparation that
pre-tokenized rows still need. Importing this module imports ``trl`` (not a dataprep dependency).
"""

from __future__ import annotations

from typing import Any

import trl

from dataprep import columns as C
from dataprep.train.dpo import PAIR_COLUMNS  # the columns a pair row holds, as dataprep's own DPO reads them

KTO_COLUMNS = (C.PROMPT_IDS, C.COMPLETION_IDS, C.KTO_LABEL)


def is_pretokenized(dataset: Any, columns: tuple[str, ...]) -> bool:
    """Whether ``dataset`` holds dataprep's token columns ``columns`` and no text to tokenize."""
    names = set(getattr(dataset, "column_names", None) or [])
    return set(columns) <= names and not names & {"prompt", "chosen", "rejected", "completion"}


class DPOTrainer(trl.DPOTrainer):
    """TRL's ``DPOTrainer``; a dataset of dataprep pairs is used as it is."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if is_pretokenized(dataset, PAIR_COLUMNS):
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)


class KTOTrainer(trl.KTOTrainer):
    """TRL's ``KTOTrainer``; a dataset of dataprep's KTO rows is used as it is, plus the KL column."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if not is_pretokenized(dataset, KTO_COLUMNS):
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if not self.calculate_KL:
            return dataset

        def rotated(batch: dict[str, list]) -> dict[str, list]:  # (x_i, y_i) -> (x_i, y_{i-1}) within the batch
            completions = batch[C.COMPLETION_IDS]
            return {**batch, "KL_completion_ids": completions[-1:] + completions[:-1]}

        return dataset.map(rotated, batched=True, batch_size=args.per_device_train_batch_size)
