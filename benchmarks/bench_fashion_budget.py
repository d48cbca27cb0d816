"""Fashion-MNIST on a FLOP budget: test accuracy against training compute, through `cnnlab.train`.

Training FLOPs = forward + backward FLOPs per training image (cnnlab.engine.flops, measured on
one step) x images seen; they do not depend on the machine. Seconds do: the CPU is printed.
Each run is then also evaluated with flip test-time augmentation (`cnnlab evaluate RUN --tta
flip`: each test image averaged with its mirror image), whose inference FLOPs are printed too.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_fashion_budget.py \\
        --recipe budget4 [--recipe ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import cpu_model

import cnnlab

RECIPES = {
    # the default (`make demo`): 91% within 4 TFLOP
    "budget4": dict(model="smallcnn", epochs=4, batch_size=64, augment="none"),
    # the default before it: depthwise-separable blocks, as many FLOPs, more seconds
    "budget4-dw": dict(model="smallcnn_dw", epochs=4, batch_size=64, augment="none"),
    # the earlier default, for comparison (42 TFLOP)
    "dense6": dict(model="smallcnn_dense", epochs=6, batch_size=128, augment="default"),
    # more epochs of the default model, with flips
    "budget20": dict(model="smallcnn", epochs=20, batch_size=64, augment="default"),
    # the 93% recipe: 19.3 TFLOP of training, evaluated with --tta flip
    "deep93": dict(
        model="smallcnn_deep", epochs=13, batch_size=64, augment="light", label_smoothing=0.1
    ),
}


def main() -> None:
    from cnnlab.engine.flops import forward_flops_per_image, train_flops_per_image
    from cnnlab.models import create_model

    p = argparse.ArgumentParser()
    p.add_argument("--recipe", action="append", choices=list(RECIPES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(f"CPU: {cpu_model()}; {args.threads} threads; seed {args.seed}\n")
    rows = []
    for name in args.recipe or ["budget4"]:
        recipe = RECIPES[name]
        model = create_model(recipe["model"], num_classes=10)
        per_image = train_flops_per_image(model, (1, 28, 28))
        tta_tflop = 2 * forward_flops_per_image(model, (1, 28, 28)) * 10_000 / 1e12
        with tempfile.TemporaryDirectory() as runs:
            start = time.perf_counter()
            result = cnnlab.train(
                name=name, runs_dir=runs, seed=args.seed, threads=args.threads, log=lambda s: None,
                **recipe,
            )  # fmt: skip
            total = time.perf_counter() - start
            tta = cnnlab.evaluate(name, runs_dir=runs, tta="flip", log=lambda s: None)
            run = Path(runs) / name
            status = json.loads((run / "run.json").read_text())
            lines = (run / "metrics.csv").read_text().splitlines()
        head = lines[0].split(",")
        hist = [dict(zip(head, ln.split(","), strict=True)) for ln in lines[1:]]
        n_train = 54_000
        per_epoch = " ".join(f"{float(h['val_acc']):.4f}" for h in hist)
        secs = " ".join(f"{float(h['epoch_time_s']):.0f}" for h in hist)
        tflop = per_image * n_train * len(hist) / 1e12
        rows.append(
            f"| {name}: {recipe} | {per_image / 1e6:.1f} | {len(hist)} | {tflop:.2f} | "
            f"**{result.test['accuracy']:.4f}** | **{tta['accuracy']:.4f}** ({tta_tflop:.2f}) | "
            f"{per_epoch} | {secs} | {status['wall_time_s']:.0f} | {total:.0f} |"
        )
        print(rows[-1], flush=True)
    print(
        "\n| recipe | MFLOP / train image | epochs | training TFLOP | test acc | test acc, flip "
        "TTA (its inference TFLOP) | val acc per epoch | s per epoch | fit s | end to end s |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
