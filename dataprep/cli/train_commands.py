"""``train`` and ``export``: handing a built dataset to a model."""

from __future__ import annotations

import click

from dataprep.cli.app import cli


@cli.command("train")
@click.argument("dataset", type=click.Path(file_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Run folder for checkpoint.pt, verify.json and loss.png (default: DATASET-train beside DATASET).")
@click.option("--steps", type=click.IntRange(min=1), help="Optimizer steps (default 2000).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Rows per step (default 4096 // seq_len: 64 for demo-sft).")
@click.option("--lr", type=float, help="Peak learning rate (default: 4e-3 for the cpu model, 6e-4 for gpu).")
@click.option("--seed", type=int, help="Seeds the weights and the data order (default 0).")
@click.option("--model", metavar="cpu|gpu|auto|PATH", help="Model size (default auto: gpu when CUDA is present), or PATH: a local transformers causal-LM folder (config.json, and model.safetensors to start from its weights; config.json alone: random weights from --seed). Never downloaded.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train (default auto).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for training (default: the cores this process may run on). On a machine busy with other work, fewer is faster: --threads 1.")
@click.option("--classification", type=click.Choice(["generative", "head"]), help="Classification data: train the label words or a head on label_id (default: as the recipe's classification.train says).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Any other training setting (dataprep.train.config.TrainConfig), e.g. --set task_proof=on. Repeatable.")
@click.option("--eval-fewshot", "eval_fewshot", type=click.Path(file_okay=False), help="A task: fewshot dataset (same tokenizer): report exact match zero-shot and k-shot, before and after training, in one table.")
@click.option("--init-from", "init_from", type=click.Path(), help="Start from the model of this run folder (its checkpoint.pt): pretrain, then fine-tune. The dataset must use the run's tokenizer (new tokens added after its own are allowed).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start again over a run in --out.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict.")
def train_command(dataset: str, out: str | None, steps: int | None, batch_size: int | None, lr: float | None, seed: int | None, model: str | None, device: str | None, threads: int | None, classification: str | None, overrides: tuple[str, ...], eval_fewshot: str | None, init_from: str | None, resume: bool, overwrite: bool, quiet: bool) -> int:
    """Train a small transformer on DATASET and prove the data trains: the loss falls, held-out
    answers are right (short-answer fine-tuning data), masks and packing are exact (the
    loader's speed against training's is reported, not part of the verdict). Writes verify.json, loss.png and checkpoint.pt.

    MLM datasets train an encoder (bidirectional attention), span-corruption datasets a prefix LM;
    both check that the loss falls. --eval-fewshot compares in-context learning with fine-tuning.
    Preference datasets (task: preference) run DPO from --init-from RUN, a fine-tuned run; their pairs
    are re-rendered to prove the masks (chat data: --set reference_chat_template=PATH, a
    {% generation %}-tagged template).

    Exit status: 0 every check passed, 1 a check failed (or a dataprep error).

    Example:

    \b
        dataprep train out/demo-sft
        dataprep train out/demo-pretrain --out runs/pretrain --steps 300 --set eval_every=100
        dataprep train out/demo-sft --eval-fewshot out/fewshot-demo
        dataprep train out/demo-sft --model models/tiny-llama --steps 300
        dataprep train out/task-sft --init-from runs/base --eval-fewshot out/task-fewshot
        dataprep train out/mlm-wikitext --out runs/mlm --steps 300
        dataprep train out/preference-synthetic --init-from runs/sft --steps 200 --set beta=0.5
    """
    from dataprep.train.checks import verdict
    from dataprep.train.config import config_from
    from dataprep.train.dpo_checks import verdict as dpo_verdict
    from dataprep.train.loop import train

    settings = dict(item.split("=", 1) for item in overrides if "=" in item)
    if len(settings) != len(overrides):
        raise click.UsageError("--set takes KEY=VALUE, e.g. --set task_proof=on")
    cfg = config_from(settings, steps=steps, batch_size=batch_size, lr=lr, seed=seed, model=model, device=device, threads=threads, classification=classification, eval_fewshot=eval_fewshot, init_from=init_from)
    run_dir = out or dataset.rstrip("/\\") + "-train"
    report = train(dataset, run_dir, cfg, resume=resume, overwrite=overwrite, echo=(lambda _: None) if quiet else click.echo)
    if quiet:  # a DPO report has its own checks (preference, masks), not fine-tuning's (task, packing)
        click.echo(dpo_verdict(report) if report.get("objective") == "dpo" else verdict(report))
    return 0 if report["passed"] else 1


@cli.command("export")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "fmt", required=True, type=click.Choice(["megatron", "nanogpt", "mds", "parquet", "jsonl"]), help="megatron: SPLIT.bin/.idx (--data-path DEST/train); nanogpt: train.bin/val.bin + meta.pkl; mds: MosaicML streaming shards; parquet and jsonl: every column (jsonl adds decoded text and targets).")
@click.option("--split", type=click.Choice(["train", "validation", "all"]), default="all", show_default=True, help="The split(s) to export.")
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Export folder, written atomically (default: DATASET-FORMAT beside DATASET).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export at --out.")
def export_command(dataset: str, fmt: str, split: str, out: str | None, overwrite: bool) -> None:
    """Export DATASET for another trainer, with export.json recording where it came from (the
    manifest's sha256, counts, each file's sha256). Token-only formats (megatron, nanogpt) refuse
    rows that carry a loss mask or labels: use mds, parquet or jsonl for those.

    Example:

    \b
        dataprep export out/demo-pretrain --to megatron --out out/demo-pretrain-megatron
        dataprep export out/demo-sft --to mds --split train
    """
    from dataprep.export import export

    record = export(dataset, fmt, split=split, dest=out, overwrite=overwrite)
    for name, entry in record["splits"].items():
        docs = f", {entry['documents']:,} documents" if "documents" in entry else ""
        click.echo(f"{name}: {entry['rows']:,} rows, {entry['tokens']:,} tokens{docs} -> {', '.join(entry['files'])}")
    click.echo(f"wrote {out or dataset.rstrip('/') + '-' + fmt} (provenance in export.json)")

