"""Frozen-backbone epochs after the first: the head trains on cached features, and the loaders
no longer decode the images (IndexedDataset.features_cached), against the same engine decoding
every image every epoch as it did before (features_cached made a no-op).

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_cached_epochs.py [--repeat 2]

EfficientNet-Lite0 with ImageNet weights, frozen, no augmentation, AdamW, 3 epochs, batch 32,
on the photos bench_engine.py uses (hymenoptera when ../shared has it); both variants
interleaved in one process. Prints each run's epoch times and the best epoch-2/3 ratio.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
from bench_engine import _config, _lite0, engine_fit, photo_bundle

from cnnlab.data.bundle import IndexedDataset


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(2)
    cfg = _config("efficientnet_lite0", 32, 3, pretrained=True, freeze_backbone=True)
    cfg.optim.optimizer, cfg.optim.lr = "adamw", 3e-3
    bundle = photo_bundle(cfg, augment="none")
    model = _lite0()
    real = IndexedDataset.features_cached
    variants = {"no decode once cached": real, "decode every epoch": lambda self, labels: None}
    times: dict[str, list[list[float]]] = {name: [] for name in variants}
    try:
        for _ in range(args.repeat):
            for name, method in variants.items():
                IndexedDataset.features_cached = method
                with tempfile.TemporaryDirectory() as tmp:
                    history = engine_fit(cfg, bundle, copy.deepcopy(model), Path(tmp))
                times[name].append([h["epoch_time_s"] for h in history])
    finally:
        IndexedDataset.features_cached = real
    n = len(bundle.train) + len(bundle.val)
    for name, runs in times.items():
        print(f"{name}: epoch seconds per run {[[round(t, 3) for t in r] for r in runs]}")
    new, old = (min(min(r[1:]) for r in times[k]) for k in variants)
    print(
        f"\n{n} photos; epochs 2-3, best of {args.repeat}: decoding {old:.3f} s, "
        f"not decoding {new:.3f} s: {old / new:.1f}x"
    )


if __name__ == "__main__":
    main()
