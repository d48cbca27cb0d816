"""Inference copies with and without fused convolution + activation (models/fuse.py).

For each model: the plain eval-mode model, the inference copy with BatchNorm folded only
(`fuse=False`, cnnlab before the fusion), and the copy cnnlab runs now (folded, then each
conv + activation pair in one oneDNN kernel), all channels_last, on one batch of random inputs
after warm-up; rounds interleaved, best of 3 repeats per round. Prints the CPU and the ratios.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_fused_conv.py --rounds 3
"""

from __future__ import annotations

import argparse
import time

import torch
from common import cpu_model

CL = torch.channels_last
WORKLOADS = {  # name: (model, channels, size, batch)
    "efficientnet_lite0": ("efficientnet_lite0", 3, 224, 64),
    "mobilenet_v3_small": ("mobilenet_v3_small", 3, 224, 64),
    "resnet18": ("resnet18", 3, 224, 32),
    "vgg16": ("vgg16", 3, 64, 32),
    "smallcnn": ("smallcnn", 1, 28, 1024),
}


def main() -> None:
    from cnnlab.models import create_model
    from cnnlab.models.fold import inference_copy
    from cnnlab.models.fuse import ConvAct
    from cnnlab.runtime import tune_process

    tune_process()
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {args.threads} threads\n")
    print("| model | input, batch | pairs fused | plain img/s | folded img/s | folded + fused "
          "img/s | fused / folded | fused / plain |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.only:
        model_name, c, s, b = WORKLOADS[name]
        torch.manual_seed(0)
        pretrained = model_name.startswith("efficientnet_lite")
        model = create_model(model_name, num_classes=10, in_chans=c, input_size=s,
                             pretrained=pretrained).eval()  # fmt: skip
        x = torch.randn(b, c, s, s).contiguous(memory_format=CL)
        plain = model.to(memory_format=CL)
        folded = inference_copy(model, x[:2], memory_format=CL, fuse=False)
        fused = inference_copy(model, x[:2], memory_format=CL)
        pairs = sum(isinstance(m, ConvAct) for m in fused.modules())
        best = {"plain": 0.0, "folded": 0.0, "fused": 0.0}
        with torch.inference_mode():
            for m in (plain, folded, fused):
                m(x)  # warm-up: oneDNN primitives for this shape
            for _ in range(args.rounds):
                for key, m in (("plain", plain), ("folded", folded), ("fused", fused)):
                    for _ in range(3):
                        start = time.perf_counter()
                        m(x)
                        best[key] = max(best[key], b / (time.perf_counter() - start))
        print(f"| {name} | {c}x{s}x{s}, {b} | {pairs} | {best['plain']:,.1f} | "
              f"{best['folded']:,.1f} | {best['fused']:,.1f} | "
              f"**{best['fused'] / best['folded']:.2f}x** | {best['fused'] / best['plain']:.2f}x |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
