"""The trainer's CUDA path, checked: bf16 with each attention backend, against each other and against fp32 on the CPU.

    python benchmarks/gpu_check.py                          # on a CUDA machine; builds out/demo-sft if missing
    python benchmarks/gpu_check.py --json gpu_check.json    # also write every figure as JSON
    python benchmarks/gpu_check.py --device cpu --steps 30  # a dry run of the script itself (no GPU figures)

Three parts, each printed (and written to ``--json``) as soon as it is done:

1. **Kernels agree.** One packed batch of demo-sft (four examples per row, so segments must stay
   apart) through the ``cpu``-preset model with the same weights: fp32 ``sdpa`` is the reference;
   each backend (``sdpa``, ``varlen``, ``flex``) in bf16 autocast must match it within
   ``LOGITS_TOL`` (largest logit difference), ``LOSS_TOL`` (relative loss difference) and
   ``GRAD_TOL`` (relative norm of the gradient difference). A backend that cannot run here is
   reported with its error, never silently replaced.
2. **Training agrees.** ``dataprep train out/demo-sft`` (``cpu`` preset, ``--steps``) on CUDA in bf16
   with each backend, and on the CPU in fp32. Training is chaotic: the same run on 2 or 16 CPU
   threads (another summation order) already ends a few points of task accuracy apart, so the runs
   are compared where they cannot have drifted yet and judged on what the data proves: the first
   ``START`` steps' losses must match the CPU run's within ``START_TOL`` (relative, each step), and
   each run must pass learning, mask and packing and reach ``LEARNED`` task accuracy (the verdict's
   90% is printed beside it).
3. **The loader keeps the GPU fed.** The ``gpu`` preset (GPT-2-small-shaped) trains ``--loader-steps``
   steps with the trainer's DataLoader (4 workers); each step's wait for its batch and its whole
   time (CUDA synchronized) are timed apart. The data wait must be under ``STARVED`` of the step.
4. **The default run on the GPU.** ``dataprep train out/demo-sft`` with nothing set: on CUDA that is bf16, the
   preset ``--model auto`` sizes to the data (demo-sft: ``cpu``) and the attention ``pick_attention``
   chooses; its verdict and figures.
5. **A transformers model on the GPU.** ``dataprep train out/demo-sft --model FOLDER`` with a small
   Llama built from a config (random weights): the checks of the trainer's code (collator,
   attention: packed rows kept apart inside transformers) and learning must pass.

Exit status 0 when every part passes. The README and benchmarks/README quote its output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataprep import columns as C  # noqa: E402
from dataprep.train.config import config_from  # noqa: E402
from dataprep.train.device import to_device  # noqa: E402
from dataprep.train.loader import ArrowRows, Collator, read_info  # noqa: E402
from dataprep.train.model import Transformer, attention_backend, preset  # noqa: E402

BACKENDS = ("sdpa", "varlen", "flex")
LOGITS_TOL = 5e-2     # bf16 vs fp32: the tolerance pick_attention's probe uses
LOSS_TOL = 1e-2       # relative
GRAD_TOL = 5e-2       # relative norm of the difference
START = 20            # the first steps of each training run, compared step by step with the CPU run
START_TOL = 0.02      # relative, each of those steps
LEARNED = 0.8         # task accuracy every training run must reach (the verdict itself needs 90%)
STARVED = 0.05        # data wait as a share of the step time


def packed_batch(info: Any, device: torch.device, *, rows: int = 8, per_row: int = 4) -> dict[str, Any]:
    """``rows`` rows of ``per_row`` demo-sft examples each (pads dropped), collated for the model."""
    source = ArrowRows(info.dataset, "train")
    packed, k = [], 0
    for _ in range(rows):
        ids, masks, lengths = [], [], []
        for _ in range(per_row):
            row = source[k]
            k += 1
            n = len(row[C.INPUT_IDS]) - int(row[C.NUM_PAD])
            ids.append(np.asarray(row[C.INPUT_IDS][:n]))
            masks.append(np.asarray(row[C.LOSS_MASK][:n]))
            lengths.append(n)
        packed.append({C.INPUT_IDS: np.concatenate(ids), C.LOSS_MASK: np.concatenate(masks),
                       C.SEQ_LENS: np.array(lengths), C.NUM_PAD: 0})
    return to_device(Collator(pad_id=info.pad_id)(packed), device)


def forward(model: Transformer, batch: dict[str, Any], dtype: torch.dtype) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Logits (fp32), the mean loss, and every gradient flattened, under autocast ``dtype``."""
    model.zero_grad(set_to_none=True)
    with torch.autocast(batch["input_ids"].device.type, dtype=dtype, enabled=dtype != torch.float32):
        h = model.hidden(batch["input_ids"], batch["position_ids"], batch["document_ids"],
                         cu_seqlens=batch["cu_seqlens"], max_seqlen=batch["max_seqlen"])
        logits = model.logits(h).float()
        total, count = model.lm_loss(batch)
    (total / count).backward()
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    return logits.detach(), float(total.detach()) / count, grads


def kernels_agree(info: Any, device: torch.device) -> dict[str, Any]:
    """Part 1: each backend in bf16 against fp32 sdpa on the same weights and the same packed batch."""
    torch.manual_seed(0)
    cfg = preset("cpu", vocab_size=info.vocab_size, max_seq_len=info.seq_len * 4 + 64)
    model = Transformer(cfg, attention="sdpa").to(device)
    batch = packed_batch(info, device)
    ref_logits, ref_loss, ref_grads = forward(model, batch, torch.float32)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    out: dict[str, Any] = {"dtype": str(dtype), "reference": "sdpa fp32", "rows": int(batch["input_ids"].shape[0]),
                           "segments": int(len(batch["cu_seqlens"]) - 1), "backends": {}}
    for backend in BACKENDS:
        try:
            with attention_backend(model, backend):
                logits, loss, grads = forward(model, batch, dtype)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run here is a finding, not a crash
            out["backends"][backend] = {"ran": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                                        "pass": False}
            continue
        entry = {"ran": True, "max_logit_diff": float((logits - ref_logits).abs().max()),
                 "loss_rel_diff": abs(loss - ref_loss) / abs(ref_loss),
                 "grad_rel_diff": float((grads - ref_grads).norm() / ref_grads.norm())}
        entry["pass"] = bool(entry["max_logit_diff"] <= LOGITS_TOL and entry["loss_rel_diff"] <= LOSS_TOL
                             and entry["grad_rel_diff"] <= GRAD_TOL)
        out["backends"][backend] = entry
    out["pass"] = all(b["pass"] for b in out["backends"].values())
    return out


def train_run(dataset: Path, work: Path, *, device: str, attention: str, steps: int, preset_name: str = "cpu") -> dict[str, Any]:
    """One ``dataprep train`` run; its verdict, figures and loss curve (the first steps, and a mean per fifth)."""
    from dataprep.train.loop import train

    cfg = config_from(steps=steps, model=preset_name, device=device, attention=attention, progress_every=60.0)
    out = work / f"{device}-{attention}-{preset_name}"
    started = time.perf_counter()
    report = train(dataset, out, cfg, overwrite=True, echo=lambda line: None)
    seconds = time.perf_counter() - started
    losses = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["history"]["loss"]
    checks = report["checks"]
    return {"device": device, "preset": preset_name, "asked": attention, "attention": report["attention"],
            "passed": report["passed"], "checks": {name: check.get("pass") for name, check in checks.items()},
            "val_loss_after": checks["learning"]["val_loss_after"],
            "task_accuracy": (checks.get("task") or {}).get("after"),
            "first_losses": losses[:START], "loss_by_fifth": [float(np.mean(part)) for part in np.array_split(losses, 5)],
            "tokens_per_s": report["throughput"]["train_tokens_per_s"], "seconds": seconds}


def training_agrees(dataset: Path, device: torch.device, *, steps: int, on_run: Any) -> dict[str, Any]:
    """Part 2: the demo on ``device`` with each backend, then on the CPU in fp32; the comparisons."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        if device.type == "cuda":
            for backend in BACKENDS:
                runs.append(train_run(dataset, Path(tmp), device="cuda", attention=backend, steps=steps))
                on_run(runs[-1])
        cpu = train_run(dataset, Path(tmp), device="cpu", attention="sdpa", steps=steps)
        on_run(cpu)
    reference = np.array(cpu["first_losses"])
    for run in runs:
        start = float(np.max(np.abs(np.array(run["first_losses"]) - reference) / reference))
        others = [ok for name, ok in run["checks"].items() if name != "task" and ok is not None]  # None: not for this data
        run["vs_cpu"] = {"first_steps_max_rel_diff": start,
                         "task_accuracy_diff": None if run["task_accuracy"] is None or cpu["task_accuracy"] is None
                         else run["task_accuracy"] - cpu["task_accuracy"]}
        run["pass"] = bool(run["attention"] == run["asked"] and start <= START_TOL and all(others)
                           and (run["task_accuracy"] or 0) >= LEARNED)
    return {"steps": steps, "cpu": cpu, "cuda": runs,
            "pass": bool(cpu["passed"] and all(run["pass"] for run in runs))}


def default_run(dataset: Path, *, steps: int) -> dict[str, Any]:
    """Part 4: ``dataprep train DATASET`` with nothing set, on CUDA (the preset and the attention picked)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = train_run(dataset, Path(tmp), device="cuda", attention="auto", steps=steps, preset_name="auto")
    run["pass"] = bool(run["passed"])
    return run


def loader_keeps_up(dataset: Path, device: torch.device, *, steps: int) -> dict[str, Any]:
    """Part 3: the gpu preset with the trainer's DataLoader; data wait vs step time per step."""
    from dataprep.train.setup import build
    from dataprep.train.step import optimizer_step

    name = "gpu" if device.type == "cuda" else "cpu"
    setup = build(read_info(dataset), config_from(steps=steps, model=name, device=device.type))
    waits, totals = [], []
    batches = iter(setup.batches(seed=0, start=0, count=steps))
    for step in range(steps):
        started = time.perf_counter()
        batch = next(batches)
        got = time.perf_counter()
        optimizer_step(setup.model, setup.opt, setup.loss, to_device(batch, setup.device), lr=setup.peak_lr, grad_clip=1.0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 10:  # the first steps start workers and compile kernels
            waits.append(got - started)
            totals.append(time.perf_counter() - started)
    wait, total = statistics.mean(waits), statistics.mean(totals)
    return {"preset": name, "params": setup.params, "attention": setup.attention, "workers": setup.workers,
            "batch_size": setup.batch_size, "steps_timed": len(totals), "data_wait_ms": wait * 1e3,
            "step_ms": total * 1e3, "data_share": wait / total, "starved_above": STARVED,
            "pass": bool(wait / total < STARVED)}


def transformers_run(dataset: Path, *, steps: int, device: str = "cuda") -> dict[str, Any]:
    """Part 5: a Llama-shaped transformers model (config only: random weights) trained with --model."""
    from dataprep.train.loop import train

    try:
        import transformers
    except ImportError as exc:
        return {"error": f"transformers is not installed: {exc}", "pass": False}
    info = read_info(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "llama"
        transformers.LlamaConfig(vocab_size=info.vocab_size, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                 tie_word_embeddings=True).save_pretrained(folder)
        started = time.perf_counter()
        report = train(dataset, Path(tmp) / "run", config_from(steps=steps, model=str(folder), device=device, progress_every=60.0),
                       overwrite=True, echo=lambda line: None)
    checks = report["checks"]
    return {"transformers": transformers.__version__, "model": report.get("model"), "passed": report["passed"],
            "checks": {name: check.get("pass") for name, check in checks.items()},
            "attention_check": checks["attention"], "task_accuracy": (checks.get("task") or {}).get("after"),
            "tokens_per_s": report["throughput"]["train_tokens_per_s"], "seconds": time.perf_counter() - started,
            "pass": bool(checks["collator"]["pass"] and checks["attention"]["pass"] and checks["learning"]["pass"])}


def show(part: str, result: dict[str, Any]) -> None:
    print(f"\n== {part}: {'PASS' if result.get('pass') else 'FAIL'}", flush=True)
    print(json.dumps(result, indent=1, default=str), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=REPO / "out" / "demo-sft")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--steps", type=int, default=2000, help="steps of each demo training run (part 2)")
    parser.add_argument("--loader-steps", type=int, default=200, help="steps of the loader timing (part 3)")
    parser.add_argument("--hf-steps", type=int, default=500, help="steps of the transformers model's run (part 5)")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu for a dry run of the script", file=sys.stderr)
        return 2
    if not (args.dataset / C.MANIFEST_FILE).is_file():
        from dataprep.build.run import run
        from dataprep.recipe import load_recipe

        run(load_recipe(REPO / "recipes" / "demo-sft.yaml"), args.dataset, workers=1)
    info = read_info(args.dataset)
    results: dict[str, Any] = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                               "tolerances": {"logits": LOGITS_TOL, "loss": LOSS_TOL, "grad": GRAD_TOL, "start_steps": START,
                                              "start_tol": START_TOL, "learned": LEARNED, "starved": STARVED}}

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")

    print(f"torch {results['torch']} on {results['device']}", flush=True)
    results["kernels"] = kernels_agree(info, device)
    show("1. kernels agree (bf16 backends vs fp32 sdpa, one packed batch)", results["kernels"])
    save()
    results["loader"] = loader_keeps_up(args.dataset, device, steps=args.loader_steps)
    show("3. the loader keeps the GPU fed", results["loader"])
    save()

    if device.type == "cuda":
        results["transformers"] = transformers_run(args.dataset, steps=args.hf_steps)
        show("5. a transformers model (--model, a small Llama from a config)", results["transformers"])
        save()
        results["default"] = default_run(args.dataset, steps=args.steps)
        show("4. the default run on the GPU (preset sized to the data, bf16, attention picked)", results["default"])
        save()

    def on_run(run: dict[str, Any]) -> None:
        print(f"   trained {run['device']} {run['asked']} (ran {run['attention']}): verdict "
              f"{'PASS' if run['passed'] else 'FAIL'}, task {run['task_accuracy']}, loss by fifth "
              f"{' '.join(f'{x:.3f}' for x in run['loss_by_fifth'])}, "
              f"{run['tokens_per_s']:,.0f} tok/s, {run['seconds']:.0f} s", flush=True)
        results.setdefault("runs_so_far", []).append(run)
        save()

    results["training"] = training_agrees(args.dataset, device, steps=args.steps, on_run=on_run)
    results.pop("runs_so_far", None)
    show("2. training agrees (demo-sft, cpu preset)", results["training"])
    results["pass"] = all(results[k]["pass"] for k in ("kernels", "loader", "training", "default", "transformers") if k in results)
    save()
    print(f"\ngpu check: {'PASS' if results['pass'] else 'FAIL'}")
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
