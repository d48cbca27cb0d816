"""Which recipe should `--pretrained` alone use? Candidates measured on two real photo sets.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_pretrained.py --data ants
    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_pretrained.py --data faces

Data sets (both real photographs, both offline):
  ants   hymenoptera: 245 train / 153 val photos of ants and bees (../shared/datasets)
  faces  scikit-image's `lfw_subset`: 100 faces (Labeled Faces in the Wild) and 100 non-face
         patches of natural photos, 25x25 grayscale, written as PNGs and split 60/40 per class;
         upscaled to 224 px by the model's own preprocessing, a harder, blurrier task
Recipes: EfficientNet-Lite0 with its ImageNet weights, seed 0, batch 32 (see RECIPES).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cnnlab

HERE = Path(__file__).resolve().parent
# shared/ sits beside the main checkout (../shared) or beside the worktrees folder (../../shared)
ANTS = next(
    (p / "shared/datasets/hymenoptera" for p in HERE.parents[1:3] if (p / "shared").is_dir()),
    HERE.parents[1] / "shared/datasets/hymenoptera",
)

BASE = dict(model="efficientnet_lite0", pretrained=True, batch_size=32, seed=0, threads=2)
RECIPES = {
    # today's behaviour of `--pretrained` alone: the from-scratch defaults on every layer
    "scratch-defaults": dict(epochs=4),
    # frozen backbone, features cached: one backbone pass, then head epochs on vectors
    "frozen-cached": dict(
        freeze_backbone=True, augment="none", optimizer="adamw", lr=3e-3, weight_decay=1e-4,
        schedule="cosine", epochs=10,
    ),
    # two stages: head alone, then every layer at a 30x lower lr with frozen BN statistics
    "two-stage": dict(
        freeze_backbone=True, unfreeze_at=2, augment="light", optimizer="adamw", lr=3e-3,
        backbone_lr=1e-4, weight_decay=1e-4, schedule="cosine", epochs=5, bn_eval=True,
    ),
    # every layer from the start, low lr, frozen BN statistics
    "finetune-low-lr": dict(
        augment="light", optimizer="adamw", lr=3e-3, backbone_lr=1e-4, weight_decay=1e-4,
        schedule="cosine", epochs=4, bn_eval=True,
    ),
}  # fmt: skip


def faces_folder(root: Path) -> Path:
    import numpy as np
    from PIL import Image
    from skimage.data import lfw_subset

    images = (lfw_subset() * 255).round().astype(np.uint8)  # (200, 25, 25): 100 faces first
    for i, img in enumerate(images):
        label = "face" if i < 100 else "nonface"
        split = "val" if i % 5 in (1, 3) else "train"  # 60 / 40 per class
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", choices=["ants", "faces"], default="ants")
    p.add_argument("--only", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    args = p.parse_args()
    from cnnlab.runtime import tune_process

    tune_process()
    with tempfile.TemporaryDirectory() as tmp:
        data = ANTS if args.data == "ants" else faces_folder(Path(tmp) / "faces")
        rows = []
        for name in args.only:
            start = time.perf_counter()
            cnnlab.train(
                name=name, runs_dir=Path(tmp) / "runs", data=str(data), log=lambda s: None,
                **BASE, **RECIPES[name],
            )  # fmt: skip
            total = time.perf_counter() - start
            run = Path(tmp) / "runs" / name
            status = json.loads((run / "run.json").read_text())
            lines = (run / "metrics.csv").read_text().splitlines()
            head = lines[0].split(",")
            hist = [dict(zip(head, ln.split(","), strict=True)) for ln in lines[1:]]
            accs = " ".join(f"{float(h['val_acc']):.3f}" for h in hist)
            rows.append(
                f"| {args.data} | {name} | {status['best_val_acc']:.4f} | {status['wall_time_s']:.0f} "
                f"| {total:.0f} | {accs} |"
            )
            print(rows[-1], flush=True)
    print("\n| data | recipe | best val acc | fit s | end to end s | val acc per epoch |")
    print("|---|---|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
