"""Default model on Fashion-MNIST: test accuracy and wall time of `make demo`'s training.

    .venv/bin/python benchmarks/bench_fashion.py [--epochs 6] [--threads 2]

Trains `cnnlab train` with the defaults (smallcnn, SGD+Nesterov lr 0.05, one-cycle, batch 128,
shift+flip augmentation) in a fresh run folder and prints a Markdown row with the training
time (fit only), the end-to-end time and the test accuracy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cnnlab


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    overrides = {k: v for k, v in {"epochs": args.epochs, "threads": args.threads}.items() if v}
    overrides.update(item.split("=", 1) for item in args.set)
    with tempfile.TemporaryDirectory() as runs:
        start = time.perf_counter()
        result = cnnlab.train(name="bench", runs_dir=runs, **overrides)
        total = time.perf_counter() - start
        status = json.loads((Path(runs) / "bench" / "run.json").read_text())
        rows = (Path(runs) / "bench" / "metrics.csv").read_text().splitlines()
    print()
    print(
        "| epochs | training (fit) s | end to end s | best val acc | test acc | img/s (last epoch) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {status['epochs_run']} | {status['wall_time_s']:.0f} | {total:.0f} | "
        f"{status['best_val_acc']:.4f} | {result.test['accuracy']:.4f} | {rows[-1].split(',')[-1]} |"
    )


if __name__ == "__main__":
    main()
