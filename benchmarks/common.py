"""What every side-by-side benchmark needs: the machine's name, its measured peaks, timing."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch


def cpu_model() -> str:
    """`lscpu`'s model name (the same step runs 2.8x slower on some CPUs than on others)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} vCPUs"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def setup_cpu(threads: int):
    """What every training benchmark starts with, as cnnlab's own processes do: the allocator
    tuned (`runtime.tune_process`), a fixed thread count and denormals flushed (as the engine
    trains on a CPU). Returns the tuning (its `malloc` names the allocator in headers)."""
    from cnnlab.runtime import tune_process

    tuning = tune_process()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    return tuning


def print_table_head(*columns: str) -> None:
    """A Markdown table's head; a column named with a trailing ':' is right-aligned (numbers)."""
    names = [c.rstrip(":") for c in columns]
    rules = ["---:" if c.endswith(":") else "---" for c in columns]
    print("| " + " | ".join(names) + " |")
    print("|" + "|".join(rules) + "|", flush=True)


def best_seconds(fn: Callable[[], object], repeat: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.inference_mode()
def measure_peaks() -> dict[str, float]:
    """GFLOP/s of one large float32 matmul and of one dense 3x3 convolution (channels_last, the
    faster format here): what this machine can do, measured in the same run as the workloads."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    matmul = 2 * 2048**3 / best_seconds(lambda: a @ b) / 1e9
    x = torch.randn(32, 128, 28, 28).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3).contiguous(memory_format=torch.channels_last)
    flops = 2 * 32 * 28 * 28 * 128 * 128 * 9
    conv = flops / best_seconds(lambda: torch.nn.functional.conv2d(x, w, padding=1)) / 1e9
    return {"matmul": matmul, "conv": conv}
