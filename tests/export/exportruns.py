"""Run folders to export, built without training (helpers for tests/export).

`make_run` writes what a finished `cnnlab train` leaves behind and the exporter reads:
config.yaml, run.json, classes.json, split_manifest.csv, model.safetensors + model.json. The
data set is a small image folder of real JPEG and PNG files (several sizes, aspect ratios and
colour modes); the model is a registered model at `image_size`, pretrained or not, whose
BatchNorm statistics are measured on the training images (a freshly initialised network in eval
mode would otherwise blow activations up to 1e10 through its depth: no trained model looks
like that, and parity on such logits would test nothing).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab import config as C
from cnnlab import runs
from cnnlab.data.build import build_data
from cnnlab.export import export_model
from cnnlab.fsio import write_json, write_text
from cnnlab.models import create_model, get_model_info
from cnnlab.plan import InputPlan

CLASSES = ("ants", "bees", "wasps")


def photo(h: int, w: int, seed: int, mode: str = "RGB") -> Image.Image:
    """A smooth, photo-like image (compresses like one) of h x w pixels in `mode`."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, h // 6), max(2, w // 6), 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    if mode == "RGBA":  # a real alpha ramp: decoding must composite it on white
        im.putalpha(Image.linear_gradient("L").resize((w, h)))
        return im
    return im.convert(mode) if mode != "RGB" else im


def write_tree(root: Path, *, side: int, train: int = 6, val: int = 4) -> Path:
    """root/{train,val}/<class>/: JPEGs and PNGs around `side` px, a few not RGB."""
    modes = ["RGB", "RGB", "L", "RGBA", "P"]
    seed = 0
    for split, n in (("train", train), ("val", val)):
        for c in CLASSES:
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                h, w = side + (seed * 7) % 23, side + (seed * 13) % 41  # mixed aspect ratios
                mode = modes[seed % len(modes)]
                ext = ".jpg" if mode in ("RGB", "L") and seed % 2 else ".png"
                photo(h, w, seed, mode).save(folder / f"{c}{i:02d}{ext}")
    return root


def make_run(
    root: Path,
    model: str,
    *,
    image_size: int,
    pretrained: bool = False,
    side: int | None = None,
    seed: int = 0,
) -> Path:
    """A finished-looking run of `model` on a fresh image tree under `root`; returns its folder."""
    data = write_tree(root / "data", side=side or int(image_size * 1.3))
    cfg = C.Config(name=model)
    cfg.data.dataset, cfg.data.path, cfg.data.image_size = "folder", str(data), image_size
    cfg.model.name, cfg.model.pretrained = model, pretrained
    cfg.train.seed = seed
    run_dir = root / "runs" / model
    run_dir.mkdir(parents=True)
    write_text(run_dir / "config.yaml", C.to_yaml(C.validate(cfg)))
    preprocess, in_chans = None, get_model_info(model).in_chans  # as `cnnlab train` decides
    if pretrained:
        spec = get_model_info(model).weights.preprocess
        preprocess = dataclasses.replace(spec, input_size=(3, image_size, image_size))
    inputs = InputPlan(preprocess, image_size, in_chans)
    bundle = build_data(cfg, inputs, log=lambda s: None)
    bundle.write_artifacts(run_dir)
    write_json(run_dir / "classes.json", bundle.classes)
    torch.manual_seed(seed)
    net = create_model(
        model, num_classes=len(bundle.classes), pretrained=pretrained, in_chans=in_chans,
        input_size=image_size,
    )  # fmt: skip
    net.preprocess = bundle.preprocess
    if not pretrained:  # pretrained statistics are real already
        calibrate_batchnorm(net, bundle)
    build = {
        "name": model, "num_classes": len(bundle.classes), "in_chans": in_chans,
        "input_size": image_size, "dropout": net.head[0].p,
    }  # fmt: skip
    export_model(
        net, run_dir, classes=bundle.classes, preprocess=bundle.preprocess, build=build,
        extra={"epoch": 1, "run": model},
    )  # fmt: skip
    runs.write_status(run_dir, status="finished", name=model, best_epoch=1)
    return run_dir


@torch.no_grad()
def calibrate_batchnorm(net: torch.nn.Module, bundle) -> None:
    """BatchNorm running statistics = the exact mean/var over the training images."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch
    x = torch.stack([torch.as_tensor(bundle.train[i][0]) for i in range(len(bundle.train))])
    if bundle.batch_transform is not None:
        x = bundle.batch_transform(x)
    net.train()
    net(x.float())
    net.eval()
