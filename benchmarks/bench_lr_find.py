"""Does the lr finder's suggestion land within 3x of the best learning rate of a small grid?

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_lr_find.py --task fashion \
        --schedule onecycle
    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_lr_find.py --task transfer \
        [--data ../shared/datasets/hymenoptera]

For each task: one sweep through `cnnlab.lr_find` (what `cnnlab lr-find` and `--lr auto` run:
the run's own module, optimizer and training loader), then one short training run per grid
learning rate through `cnnlab.train` with everything else equal. The grid's best lr is the one with the
highest best validation accuracy, ties broken by the lower best validation loss. Prints a
Markdown table and writes lr_find.json/png per task under --out.

  fashion   smallcnn_dw (the default when this was measured) from scratch on a Fashion-MNIST
            subset, SGD (momentum 0.9, Nesterov): cnnlab's defaults
  transfer  EfficientNet-Lite0 (ImageNet weights), backbone frozen, at 128 px, AdamW, on
            hymenoptera (ants vs bees)
  transfer-sgd  the same head with SGD (momentum 0.9, Nesterov)
each with the one-cycle, cosine and constant ("none") schedules: with SGD, annealed schedules get
a suggestion a decade above a constant rate's; with Adam/AdamW the agreed rate for every
schedule (see engine/lr_finder.py). Every task's sweep
has more steps than its training set has batches, so the rules read the loss on one held-out
batch of validation images.
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import cnnlab
from cnnlab.engine.lr_finder import LRFindResult
from cnnlab.errors import DivergedError

HERE = Path(__file__).resolve().parent
# shared/ sits beside the main checkout (../shared) or beside the worktrees folder (../../shared)
HYMENOPTERA = next(
    (p / "shared/datasets/hymenoptera" for p in HERE.parents[1:3] if (p / "shared").is_dir()),
    HERE.parents[1] / "shared/datasets/hymenoptera",
)

# each task's settings but its optimizer; the AdamW tasks add weight decay 1e-4 to them, SGD
# keeps cnnlab's default (5e-4)
FASHION = dict(model="smallcnn_dw", subset=6000, epochs=3, batch_size=128, seed=0, threads=2)
HEAD = dict(
    model="efficientnet_lite0", pretrained=True, freeze_backbone=True, image_size=128,
    augment="none", epochs=4, batch_size=32, seed=0, threads=2,
)  # fmt: skip
ADAMW = dict(optimizer="adamw", weight_decay=1e-4)

TASKS: dict[str, dict[str, Any]] = {
    "fashion": {"options": FASHION, "grid": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]},
    # a held-out check: the same data with AdamW, the suggestion rules fixed beforehand
    "fashion-adamw": {
        "options": {**FASHION, **ADAMW},
        "grid": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
    },
    "transfer": {
        "options": {**HEAD, **ADAMW},
        "grid": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1],
    },
    # a held-out check: a frozen head with SGD (the peak rules fixed before it ran)
    "transfer-sgd": {
        "options": {**HEAD, "optimizer": "sgd"},
        "grid": [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0],
    },
}
# annealed schedules (a brief peak) get a suggestion a decade above a held one's (none)
SCHEDULES = ("onecycle", "cosine", "none")


def find(options: dict[str, Any], out: Path, name: str) -> LRFindResult:
    """The sweep `cnnlab lr-find` runs; lr_find.png/json land in out/name/."""
    return cnnlab.lr_find(name=name, runs_dir=out, log=lambda line: None, **options).result


def grid_run(options: dict[str, Any], lr: float, runs: Path) -> dict[str, float]:
    name = f"lr{lr:g}"
    try:
        cnnlab.train(name=name, runs_dir=runs, log=lambda line: None, **options, lr=lr)
    except DivergedError:
        return {"val_acc": 0.0, "val_loss": math.inf}
    with open(runs / name / "metrics.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "val_acc": max(float(r["val_acc"]) for r in rows),
        "val_loss": min(float(r["val_loss"]) for r in rows),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=[*TASKS, "all"], default="all")
    p.add_argument("--schedule", choices=[*SCHEDULES, "both"], default="both")
    p.add_argument("--data", default=str(HYMENOPTERA))
    p.add_argument("--out", default="lr_find_bench")
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = []
    schedules = SCHEDULES if args.schedule == "both" else [args.schedule]
    for task, schedule in [(t, s) for t in TASKS if args.task in (t, "all") for s in schedules]:
        options = dict(TASKS[task]["options"], schedule=schedule)
        if task.startswith("transfer"):
            options["data"] = args.data
        t0 = time.perf_counter()
        result = find(options, Path(args.out), f"{task}-{schedule}")
        t_find = time.perf_counter() - t0
        scores, t0 = {}, time.perf_counter()
        with tempfile.TemporaryDirectory() as runs:
            for lr in TASKS[task]["grid"]:
                scores[lr] = grid_run(options, lr, Path(runs))
                print(f"{task} {schedule} lr {lr:g}: {scores[lr]}", flush=True)
        t_grid = time.perf_counter() - t0
        best = max(scores, key=lambda lr: (scores[lr]["val_acc"], -scores[lr]["val_loss"]))
        s = result.suggestion
        ratio = max(s / best, best / s) if s else math.nan
        r = result.rules
        source = f"{result.held_out} held-out" if result.held_out else "training batches"
        rows.append(
            f"| {task} | {result.optimizer} | {schedule} | {source} | {result.status.value} | "
            + (f"{s:.3g}" if s else "—")
            + f" | {r.valley or math.nan:.3g} / {r.steepest or math.nan:.3g} / "
            f"{r.min_div10 or math.nan:.3g} | "
            + " ".join(f"{lr:g}:{v['val_acc']:.3f}/{v['val_loss']:.3f}" for lr, v in scores.items())
            + f" | {best:g} | {ratio:.2f}x | {'yes' if ratio <= 3 else 'NO'} | "
            f"{t_grid / t_find:.0f}x |"
        )
        print(f"{task} {schedule}: {result.reason}", flush=True)
    print(
        "\n| task | optimizer | schedule | losses | finder | suggestion | valley / steepest / min÷10 | "
        "grid lr:best val acc/best val loss | best grid lr | off by | within 3x | "
        "grid time / finder time |"
    )
    print("|---|---|---|---|---|---:|---|---|---:|---:|---|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
