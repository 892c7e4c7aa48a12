"""Column names, Arrow types and file-name patterns: each named once, here."""

from __future__ import annotations

import pyarrow as pa

# --- record batches flowing between stages -------------------------------------------
TEXT = "text"          # document text (pretraining)
SOURCE = "source"      # index of the input file in the run's input list (int32)
LINE = "line"          # 1-based line (line formats) or 0-based record/row index (others) (int64)

# --- output rows ---------------------------------------------------------------------
# Column names are the ones trainers already read, so a dataset trains as-is (#16): TRL's
# SFTTrainer turns ``assistant_masks`` into labels without flags and keeps packed examples apart
# from ``seq_lengths`` (padding_free=True); Hugging Face models read ``input_ids`` and ``labels``.
# The Python names (SEQ_LENS, LOSS_MASK) name the fact; the strings are what the shards hold.
INPUT_IDS = "input_ids"  # list<int32>
SEQ_LENS = "seq_lengths"  # list<int32>: lengths of the pieces in the row, summing to len(input_ids)
NUM_PAD = "num_pad"      # int32: length of the trailing pad piece (0 when the row has none)
LOSS_MASK = "assistant_masks"  # list<uint8>: 1 = training target (fine-tuning)
LABEL_ID = "label_id"    # int32 (classification, one example per row)
LABEL_IDS = "label_ids"  # list<int32> (classification, packed: one per example in the row)
LABELS = "labels"        # list<int32>: mlm (static): the original id where chosen, else IGNORE_INDEX;
                         # span_corruption: the sentinel-delimited spans; sft with ``output.labels``:
                         # input_ids where a target, else IGNORE_INDEX (prompts, piece starts, pad)
# preference (#18): the names TRL's DataCollatorForPreference / KTO collator read, one pair per row;
# the prompt once, each response its target tokens with the stop token last
PROMPT_IDS = "prompt_ids"      # list<int32>: the shared prompt's tokens
CHOSEN_IDS = "chosen_ids"      # list<int32>: the chosen response
REJECTED_IDS = "rejected_ids"  # list<int32>: the rejected response
COMPLETION_IDS = "completion_ids"  # list<int32> (kto): the one response
KTO_LABEL = "label"            # bool (kto): the response is desirable
SEGMENT = "segment"            # uint8 per token, between stages only: 0 prompt, 1 chosen, 2 rejected
QUERY_START = "query_start"  # int32 (fewshot): where the query's own prompt starts in input_ids

TOKEN_TYPE = pa.int32()
PRETRAIN_ROW_SCHEMA = pa.schema(
    [
        pa.field(INPUT_IDS, pa.list_(TOKEN_TYPE)),
        pa.field(SEQ_LENS, pa.list_(pa.int32())),
        pa.field(NUM_PAD, pa.int32()),
    ]
)

# Label value that loss functions ignore (PyTorch's cross_entropy default).
IGNORE_INDEX = -100

# --- files and folders ---------------------------------------------------------------
SPLITS = ("train", "validation")
MANIFEST_FILE = "manifest.json"
SHARD_PATTERN = "data-{index:05d}-of-{count:05d}.arrow"  # the `save_to_disk` naming
TOKENIZER_DIR = "tokenizer"  # a tokenizer trained by the recipe is saved here
INCOMPLETE_SUFFIX = ".incomplete"
