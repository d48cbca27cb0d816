"""Image-folder input pipeline: torchvision ImageFolder + PIL vs cnnlab's cached dataset.

Same JPEG folder, same output (random-resized-crop 224 + horizontal flip, ImageNet normalisation),
same DataLoader (batch 32, shuffled, same worker count, persistent workers); images/s for epoch 1
and epochs 2+. cnnlab runs twice: float items (the default) and uint8 items normalised per batch
(`output="uint8"` + `batch_transform()`), which is what to use with DataLoader workers.
cnnlab's setup (the up-front scan that decodes every file once and fills the pixel cache) is
timed separately and also counted into its epoch 1, so the comparison is fair to ImageFolder.

    .venv/bin/python benchmarks/bench_folder.py                      # 400 generated JPEGs
    .venv/bin/python benchmarks/bench_folder.py --data /work/shared/datasets/hymenoptera/train \
        --workers 0 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from cnnlab.data.folder import build_folder_data
from cnnlab.data.imaging import worker_init_fn
from cnnlab.models.spec import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec


def generate(root: Path, n: int = 400, size: tuple[int, int] = (500, 375), seed: int = 0) -> Path:
    """n photo-like JPEGs (smooth noise, quality 90) in two class folders, like hymenoptera."""
    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(n):
        folder = root / ("ants" if i % 2 else "bees")
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, size=(h // 16, w // 16, 3), dtype=np.uint8)
        im = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
        fine = rng.integers(-12, 13, size=(h, w, 3))
        arr = np.clip(np.asarray(im, dtype=np.int16) + fine, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:04d}.jpg", quality=90)
    return root


def run_epochs(loader: DataLoader, epochs: int, set_epoch=None, on_batch=None) -> list[float]:
    """Wall-clock seconds per epoch."""
    times = []
    for epoch in range(epochs):
        if set_epoch is not None:
            set_epoch(epoch)
        start = time.perf_counter()
        for x, _y in loader:
            if on_batch is not None:
                on_batch(x)
        times.append(time.perf_counter() - start)
    return times


def loader_for(dataset, workers: int, batch: int, seed: int = 0, **kw) -> DataLoader:
    # persistent_workers for both pipelines: re-forking workers every epoch would otherwise
    # dominate a 250-image epoch. cnnlab's set_epoch reaches persistent workers (shared memory).
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )


def bench_imagefolder(root: Path, workers: int, args) -> dict:
    tf = T.Compose(
        [
            T.RandomResizedCrop(args.size),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    ds = datasets.ImageFolder(str(root), transform=tf)
    times = run_epochs(loader_for(ds, workers, args.batch), args.epochs)
    return {"n": len(ds), "setup": 0.0, "warm_setup": 0.0, "times": times}


def bench_cnnlab(root: Path, workers: int, args, cache_dir: Path, output: str) -> dict:
    """output="uint8": items stay uint8 and the batch is normalised in this loop (on the CPU
    here; a trainer does it on the GPU), so the float tensors never cross process borders."""
    spec = PreprocessSpec((3, args.size, args.size), IMAGENET_MEAN, IMAGENET_STD, crop_pct=0.875)
    opts = dict(image_size=args.size, in_chans=3, preprocess=spec, augment="light")
    opts |= dict(val_fraction=0.0, workers=workers, cache_dir=cache_dir, log=lambda s: None)
    opts |= dict(output=output)
    start = time.perf_counter()
    data = build_folder_data(root, **opts)
    setup = time.perf_counter() - start
    loader = loader_for(data.train, workers, args.batch, worker_init_fn=worker_init_fn)
    times = run_epochs(loader, args.epochs, data.train.set_epoch, data.batch_transform())
    start = time.perf_counter()
    build_folder_data(root, **opts)  # a second run on the same folder: warm caches
    warm = time.perf_counter() - start
    mode = next(line for line in data.notes if line.startswith("pixel cache")).split(",")[0]
    mode = mode.removeprefix("pixel cache: ").split(" in ")[0]
    return {"n": len(data.train), "setup": setup, "warm_setup": warm, "times": times, "mode": mode}


def metrics(r: dict) -> dict[str, float]:
    n, t = r["n"], r["times"]
    return {
        "setup": r["setup"],
        "warm": r["warm_setup"],
        "first": n / t[0],
        "first_all": n / (t[0] + r["setup"]),  # setup counted into epoch 1
        "later": n * (len(t) - 1) / sum(t[1:]),
    }


def table(runs: dict[tuple[str, int], list[dict]]) -> list[str]:
    """Medians over the repeats; ratios of medians to ImageFolder at the same worker count."""
    out = [
        "| pipeline | workers | setup s (cold / warm) | epoch 1 img/s | epoch 1 incl. setup img/s "
        "| epochs 2+ img/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (name, workers), reps in runs.items():
        m = {k: statistics.median(metrics(r)[k] for r in reps) for k in metrics(reps[0])}
        label = name + (f" ({reps[0]['mode']} cache)" if "mode" in reps[0] else "")
        out.append(
            f"| {label} | {workers} | {m['setup']:.2f} / {m['warm']:.2f} | {m['first']:.0f} "
            f"| {m['first_all']:.0f} | {m['later']:.0f} |"
        )
        if name != "ImageFolder":
            base = runs["ImageFolder", workers]
            keys = ("first_all", "later")
            b = {k: statistics.median(metrics(r)[k] for r in base) for k in keys}
            ratio = {k: m[k] / b[k] for k in keys}
            out.append(
                f"| ratio to ImageFolder | {workers} | | | **{ratio['first_all']:.2f}x** "
                f"| **{ratio['later']:.1f}x** |"
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, help="a folder of class folders (default: generate)")
    p.add_argument("--n", type=int, default=400, help="images to generate without --data")
    p.add_argument("--workers", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeat", type=int, default=1, help="interleaved repeats; medians reported")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = p.parse_args()
    # One intra-op thread, as in a DataLoader worker: PIL decodes on one core anyway, and on a
    # busy machine torch's spinning OpenMP threads would distort both pipelines.
    torch.set_num_threads(args.threads)
    runs: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as tmp:
        root = args.data or generate(Path(tmp) / "jpegs", n=args.n)
        for rep in range(args.repeat):  # interleaved, so that load changes hit all pipelines
            for workers in args.workers:
                r = bench_imagefolder(root, workers, args)
                runs.setdefault(("ImageFolder", workers), []).append(r)
                for output in ("float", "uint8"):
                    cache_dir = Path(tmp) / f"cache-{rep}-{workers}-{output}"  # cold
                    r = bench_cnnlab(root, workers, args, cache_dir, output)
                    runs.setdefault((f"cnnlab, {output} items", workers), []).append(r)
    n = next(iter(runs.values()))[0]["n"]
    src = args.data or "generated 500x375"
    print(f"{n} JPEGs from {src}; size {args.size}, batch {args.batch}, {args.epochs} epochs,")
    print(
        f"median of {args.repeat}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    print(f"load average before/after: {LOAD0} / {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs\n")
    print("\n".join(table(runs)))


LOAD0 = f"{os.getloadavg()[0]:.2f}"

if __name__ == "__main__":
    main()
