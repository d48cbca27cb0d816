"""One training step per memory format, NCHW against channels_last, per model and input size.

The evidence for `ModelInfo.cpu_channels_last` (the format a model trains in on a CPU unless
the user sets --(no-)channels-last). Both formats start from the same weights and take the
same random batch; rounds alternate (NCHW, channels_last, NCHW, ...) in this one process, and
the table gives the best step of each (forward, backward, SGD with momentum) and their ratio.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_memory_format.py
    .venv/bin/python benchmarks/bench_memory_format.py vgg16:224:4 resnet18:64:32 --rounds 4

Each argument is MODEL:SIZE:BATCH. With --verbose-conv the oneDNN implementation each format
gets for one VGG-sized convolution's backward is printed (ONEDNN_VERBOSE in a child process).
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from common import cpu_model, print_table_head, setup_cpu

DEFAULT = [
    "smallcnn:28:128", "resnet18:64:32", "resnet18:224:16", "resnet50:64:16", "resnet50:224:8",
    "vgg16:64:8", "vgg16:224:4", "vgg16_bn:224:4", "alexnet:224:16", "seresnet50:224:8",
    "inception_v3:299:4", "mobilenet_v3_large:224:16", "efficientnet_lite0:224:16",
]  # fmt: skip
FORMATS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


def step_seconds(name: str, size: int, batch: int, rounds: int) -> dict[str, float]:
    from cnnlab.models import create_model, get_model_info

    chans = get_model_info(name).in_chans
    torch.manual_seed(0)
    base = create_model(name, num_classes=10, in_chans=chans, input_size=size)
    x, y = torch.randn(batch, chans, size, size), torch.randint(0, 10, (batch,))
    steps = {}
    for label, fmt in FORMATS.items():
        model = copy.deepcopy(base).to(memory_format=fmt).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model=model, opt=opt, fmt=fmt) -> None:
            loss = F.cross_entropy(model(x.contiguous(memory_format=fmt)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # first call: oneDNN builds its primitives
        steps[label] = step
    best = {label: float("inf") for label in FORMATS}
    for _ in range(rounds):
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            best[label] = min(best[label], time.perf_counter() - start)
    return best


CONV_PROBE = """
import sys, torch
torch.set_num_threads(2)
fmt = torch.channels_last if sys.argv[1] == "channels_last" else torch.contiguous_format
conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=fmt)
x = torch.randn(4, 64, 224, 224).contiguous(memory_format=fmt).requires_grad_()
for _ in range(2):
    out = conv(x)
    out.backward(torch.ones_like(out))
"""


def verbose_conv() -> None:
    """oneDNN's own account of VGG's first 3x3 conv (64 channels, 224 px, batch 4) per format."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    for label in FORMATS:
        out = subprocess.run(
            [sys.executable, "-c", CONV_PROBE, label], env=env, capture_output=True, text=True
        ).stdout
        lines = [ln.split(",") for ln in out.splitlines() if ",exec,cpu,convolution," in ln]
        for f in lines[len(lines) // 2 :]:  # the second (warm) pass
            print(f"{label}: {f[6]} {f[7]}, {f[8].split()[0]}: {float(f[-1]):.1f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cases", nargs="*", default=DEFAULT, help="MODEL:SIZE:BATCH")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--verbose-conv", action="store_true")
    args = p.parse_args()
    from cnnlab.models import get_model_info

    setup_cpu(args.threads)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {args.threads} threads; "
          f"ISA {torch.backends.cpu.get_cpu_capability()}; best of {args.rounds} rounds\n")  # fmt: skip
    print_table_head("model, input, batch", "NCHW ms:", "channels_last ms:",
                     "NCHW / channels_last (time):", "cnnlab trains in")  # fmt: skip
    for case in args.cases:
        name, size, batch = case.split(":")
        best = step_seconds(name, int(size), int(batch), args.rounds)
        nchw, cl = best["NCHW"], best["channels_last"]
        default = "channels_last" if get_model_info(name).cpu_channels_last else "NCHW"
        print(f"| {name}, {size} px, {batch} | {1e3 * nchw:.1f} | {1e3 * cl:.1f} "
              f"| {nchw / cl:.2f} | {default} |", flush=True)  # fmt: skip
    if args.verbose_conv:
        print()
        verbose_conv()
    return 0


if __name__ == "__main__":
    sys.exit(main())
