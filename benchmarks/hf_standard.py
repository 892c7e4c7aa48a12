"""The standard Hugging Face pretraining recipe (transformers' ``run_clm.py``), as a reference.

``datasets`` JSON load -> ``map(tokenize, batched=True, num_proc)`` -> ``map(group_texts)`` into
``block_size`` blocks -> ``save_to_disk``. Run by ``pretrain_throughput.py`` in its own process
(so its peak RSS and cache files are its own); prints one JSON line with its counts.

    python benchmarks/hf_standard.py DATA.jsonl --tokenizer bpe32k.json --cache /tmp/hf-cache --out /tmp/hf-out
"""

from __future__ import annotations

import argparse
import json
import os
import time
from itertools import chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="JSONL with a `text` field")
    parser.add_argument("--tokenizer", required=True, help="a tokenizer.json")
    parser.add_argument("--cache", required=True, help="datasets cache folder (measured afterwards)")
    parser.add_argument("--out", required=True, help="save_to_disk folder")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count())
    parser.add_argument("--block-size", type=int, default=2048)
    args = parser.parse_args()

    os.environ["HF_DATASETS_CACHE"] = args.cache
    import datasets
    from transformers import PreTrainedTokenizerFast

    datasets.disable_progress_bars()
    started = time.perf_counter()
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=args.tokenizer)
    raw = datasets.load_dataset("json", data_files=args.data, split="train", cache_dir=args.cache)

    def tokenize(batch):
        return tokenizer(batch["text"])

    tokenized = raw.map(tokenize, batched=True, num_proc=args.num_proc, remove_columns=raw.column_names)
    block_size = args.block_size

    def group_texts(examples):  # run_clm.py's, verbatim in substance
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total_length = len(concatenated[list(examples.keys())[0]])
        total_length = (total_length // block_size) * block_size
        result = {k: [t[i : i + block_size] for i in range(0, total_length, block_size)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    grouped = tokenized.map(group_texts, batched=True, num_proc=args.num_proc)
    grouped.save_to_disk(args.out)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rows": grouped.num_rows, "tokens": grouped.num_rows * block_size, "documents": raw.num_rows}))


if __name__ == "__main__":
    main()
