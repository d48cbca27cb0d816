"""One optimizer step, per-tensor loop (PyTorch's CPU default) vs foreach vs fused kernels.

The evidence for `engine.module.make_optimizer` using fused kernels. Every parameter gets a
fixed random gradient; each variant starts from the same weights, takes 3 warm-up steps and is
timed over 10 (mean per step). "same as loop" says whether its weights after the 3 warm-up
steps equal the loop's bit for bit, else the largest difference.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_optimizer.py
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch
from common import cpu_model, print_table_head, setup_cpu

MODELS = {
    "smallcnn": {"in_chans": 1, "input_size": 28},
    "resnet18": {"input_size": 64},
    "vgg16": {"input_size": 64},
    "efficientnet_lite0": {},
}
OPTIMIZERS = {
    "SGD": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    "AdamW": (torch.optim.AdamW, {"lr": 1e-3}),
}
VARIANTS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def step_ms(base: torch.nn.Module, cls, kw: dict, variant: dict) -> tuple[float, list]:
    model = copy.deepcopy(base)
    params = list(model.parameters())
    for p, q in zip(params, base.parameters(), strict=True):
        p.grad = q.grad.clone()
    # as cnnlab groups them: decayed weights, un-decayed norms and biases
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": 5e-4},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    opt = cls(groups, **kw, **variant)
    for _ in range(3):
        opt.step()
    after = [p.detach().clone() for p in params]
    start = time.perf_counter()
    for _ in range(10):
        opt.step()
    return (time.perf_counter() - start) / 10 * 1e3, after


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    from cnnlab.models import create_model

    setup_cpu(args.threads)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {args.threads} threads\n")
    print_table_head("model", "parameters:", "optimizer", "loop ms:", "foreach ms:", "fused ms:",
                     "loop / fused:", "fused same as loop")  # fmt: skip
    for name, kw in MODELS.items():
        torch.manual_seed(0)
        base = create_model(name, num_classes=10, **kw)
        for q in base.parameters():
            q.grad = torch.randn_like(q)
        n = sum(q.numel() for q in base.parameters())
        for opt_name, (cls, opt_kw) in OPTIMIZERS.items():
            ms, weights = {}, {}
            for variant, flags in VARIANTS.items():
                ms[variant], weights[variant] = step_ms(base, cls, opt_kw, flags)
            diff = max(
                (a - b).abs().max().item()
                for a, b in zip(weights["loop"], weights["fused"], strict=True)
            )
            same = "bitwise" if diff == 0 else f"within {diff:.1e}"
            print(f"| {name} | {n / 1e6:.2f}M | {opt_name} | {ms['loop']:.2f} | "
                  f"{ms['foreach']:.2f} | {ms['fused']:.2f} | {ms['loop'] / ms['fused']:.1f}x "
                  f"| {same} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
