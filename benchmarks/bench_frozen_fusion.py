"""The frozen EfficientNet-Lite0 feature pass: folded eager (what cnnlab runs) vs TorchScript with
oneDNN Graph fusion (conv + ReLU6 in one kernel), against a plain channels_last loop.

Each round, over the same decoded photos (train + val, batch 64 for both compiled forms, the
plain loop at batch 32): the plain loop; cnnlab's folded eager copy, its build included; the
folded copy traced, frozen and run under `torch.jit.fuser("fuser3")` (oneDNN Graph), its build
and the fuser's profiling runs included. Then the steady state of each on one batch of 64,
after warm-up, best of 4. Photos: ../shared/datasets/hymenoptera when present (bench_engine).

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_frozen_fusion.py --rounds 3
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_engine import _config, _lite0, eval_module, photo_bundle
from common import cpu_model
from torch.utils.data import DataLoader

CL = torch.channels_last


def main() -> None:
    from cnnlab.engine.feature_cache import inference_encoder
    from cnnlab.models.fold import fast_eval_copy
    from cnnlab.runtime import tune_process

    tune_process()
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = _config("efficientnet_lite0", 32, 1, pretrained=True, freeze_backbone=True)
    bundle = photo_bundle(cfg, augment="none")
    backbone = _lite0().eval().backbone
    tf = bundle.batch_transform
    xs = [
        tf(x).contiguous(memory_format=CL)
        for ds in (bundle.train, bundle.val)
        for x, *_ in DataLoader(ds, batch_size=64)
    ]
    n = sum(len(x) for x in xs)

    def eager() -> tuple[float, torch.Tensor]:  # what FeatureCache.fill runs
        start = time.perf_counter()
        encode = inference_encoder(backbone, xs[0][:2], channels_last=True)
        out = torch.cat([encode(x) for x in xs])
        return time.perf_counter() - start, out

    def fused() -> tuple[float, torch.Tensor, float]:
        start = time.perf_counter()
        fast = fast_eval_copy(backbone, xs[0][:2], memory_format=CL)
        with torch.jit.fuser("fuser3"), torch.no_grad():
            graph = torch.jit.freeze(torch.jit.trace(fast, xs[0][:2]).eval())
            build = time.perf_counter() - start
            out = torch.cat([graph(x) for x in xs])
        return time.perf_counter() - start, out, build

    def plain() -> float:
        model = eval_module(backbone, channels_last=True)
        start = time.perf_counter()
        with torch.inference_mode():
            for x in xs:
                for i in range(0, len(x), 32):
                    model(x[i : i + 32])
        return time.perf_counter() - start

    print(f"CPU: {cpu_model()}; {args.threads} threads; {n} photos\n")
    print("| round | plain img/s | folded eager img/s | oneDNN Graph img/s (its build s) "
          "| eager / plain | oneDNN / plain | max abs difference |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in range(args.rounds):
        te, fe = eager()
        tg, fg, build = fused()
        tp = plain()
        diff = float((fe - fg).abs().max())
        print(f"| {r + 1} | {n / tp:.1f} | {n / te:.1f} | {n / tg:.1f} ({build:.2f}) | "
              f"{tp / te:.2f}x | {tp / tg:.2f}x | {diff:.1e} |")  # fmt: skip

    # steady state: one batch of 64, compiled forms warmed up
    x = xs[0]
    fast = fast_eval_copy(backbone, x[:2], memory_format=CL)
    with torch.jit.fuser("fuser3"), torch.no_grad():
        graph = torch.jit.freeze(torch.jit.trace(fast, x[:2]).eval())
        for _ in range(3):
            graph(x)
        times: dict[str, list[float]] = {"folded eager": [], "oneDNN Graph": []}
        for _ in range(4):
            for name, fn in (("folded eager", fast), ("oneDNN Graph", graph)):
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
    best = {k: len(x) / min(v) for k, v in times.items()}
    print(f"\nsteady state, batch {len(x)}: folded eager {best['folded eager']:.1f} img/s, oneDNN "
          f"Graph {best['oneDNN Graph']:.1f} img/s "
          f"({best['oneDNN Graph'] / best['folded eager']:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
