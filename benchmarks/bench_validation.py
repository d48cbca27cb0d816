"""A validation batch through the model's own eval forward vs the engine's refreshed inference
copy (BatchNorm folded, conv + activation fused: `models.fold.LiveInferenceCopy`).

The evidence for validating through the copy (`engine/module.py`, `_validation_model`). Each
model's BatchNorm statistics are first made real by a few training-mode passes; rounds then
alternate the two forwards on one batch under `inference_mode` (median of the rounds). "refresh"
is the copy's per-epoch cost, "build" its one-time cost (deep copy, probe passes, check), both
also as a fraction of one live validation batch.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_validation.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from common import cpu_model, print_table_head, setup_cpu

MODELS = {  # name: (channels, size, batch), the sizes bench_engine trains at
    "smallcnn": (1, 28, 128),
    "resnet18": (3, 64, 32),
    "resnet50": (3, 64, 16),
    "mobilenet_v3_large": (3, 224, 32),
    "efficientnet_lite0": (3, 224, 32),
}


def _ms(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - start) * 1e3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    from cnnlab.models import create_model
    from cnnlab.models.fold import LiveInferenceCopy

    setup_cpu(args.threads)
    torch.set_flush_denormal(True)  # as the engine's fit does
    cl = torch.channels_last
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {args.threads} threads, channels_last\n")
    print_table_head("model, input, batch", "live eval ms:", "copy ms:", "copy / live (time):",
                     "refresh ms:", "build ms:", "max abs diff:")  # fmt: skip
    for name, (c, s, b) in MODELS.items():
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, in_chans=c, input_size=s).to(memory_format=cl)
        x = torch.randn(b, c, s, s).contiguous(memory_format=cl)
        with torch.no_grad():
            model.train()
            for _ in range(3):  # real running statistics, as after training
                model(x)
        model.eval()
        start = time.perf_counter()
        live = LiveInferenceCopy.build(model, x[:1], memory_format=cl)
        build = (time.perf_counter() - start) * 1e3
        refresh = min(_ms(live.refresh) for _ in range(3))
        own, fast = [], []
        with torch.inference_mode():
            model(x), live.module(x)  # warm-up
            for _ in range(args.rounds):
                own.append(_ms(model, x))
                fast.append(_ms(live.module, x))
            diff = (model(x) - live.module(x)).abs().max().item()
        a, f = statistics.median(own), statistics.median(fast)
        print(f"| {name}, {s} px, {b} | {a:.1f} | {f:.1f} | {f / a:.2f} | {refresh:.2f} "
              f"({refresh / a:.1%}) | {build:.0f} ({build / a:.1f} batches) | {diff:.1e} |",
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
