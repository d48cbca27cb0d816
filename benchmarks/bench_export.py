"""Export parity per model family, and ONNX Runtime vs PyTorch CPU inference throughput.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_export.py parity --threads 2
    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_export.py speed --threads 2

parity  trains one short run per registered family (4 epochs from scratch on ants vs bees at
        64 px, Inception at 80 px; smallcnn one epoch on 6,000 Fashion-MNIST images at 28 px;
        EfficientNet-Lite0 from its ImageNet weights at 224 px, backbone frozen, 3 epochs),
        exports each with `export_run(format="onnx")` and prints its parity line: max
        |Δlogit| and top-1 agreement between ONNX Runtime and PyTorch on 64 validation images.
speed   smallcnn (1x28x28, 10 classes), ResNet50 and EfficientNet-Lite0 (3x224x224, 1000
        classes) exported with `to_onnx`, then timed side by side in one process at batch 1 and
        32: PyTorch eager (float32, inference_mode, channels_last), the inference copy that
        `cnnlab evaluate` and `predict` run (BatchNorm folded, convolution + activation fused,
        channels_last: `models.fold.fast_eval_copy`) and ONNX Runtime (CPUExecutionProvider),
        all with --threads intra-op threads, interleaved (model, batch, runtime) in each of
        --repeat rounds; the table gives medians.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

HYMENOPTERA = Path(__file__).parents[2] / "shared/datasets/hymenoptera"

FAMILY_RUNS = {
    "smallcnn": dict(model="smallcnn", epochs=1, subset=6000),  # Fashion-MNIST
    "alexnet": dict(model="alexnet_paper", image_size=64),
    "vgg": dict(model="vgg11_bn", image_size=64),
    "resnet": dict(model="resnet18", image_size=64),
    "inception": dict(model="inception_v3", image_size=80),  # its classic stem from 75 px
    "mobilenet": dict(model="mobilenet_v3_small", image_size=64),
    "senet": dict(model="seresnet50", image_size=64),
    "efficientnet": dict(
        model="efficientnet_lite0", pretrained=True, freeze_backbone=True, augment="none",
        optimizer="adamw", lr=3e-3, weight_decay=1e-4, epochs=3,
    ),
}  # fmt: skip


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def parity(args: argparse.Namespace) -> None:
    import cnnlab
    from cnnlab.export import export_run
    from cnnlab.run_files import read_run_folder

    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for family in args.only or FAMILY_RUNS:
            settings = dict(FAMILY_RUNS[family])
            if settings["model"] != "smallcnn":
                settings["data"] = args.data
            # 4 epochs (32 steps) from scratch: after 1 (8 steps) Inception's eval-mode logits
            # were 1e8; after 4, ResNet-18's still reach 5.5e5 (RESULTS.md): the table shows it
            settings.setdefault("epochs", 4)
            start = time.perf_counter()
            cnnlab.train(
                name=family, runs_dir=runs, seed=0, threads=args.threads, batch_size=32,
                log=lambda s: None, **settings,
            )  # fmt: skip
            trained = time.perf_counter() - start
            result = export_run(Path(runs) / family, images=64, log=print)
            p = result.parity
            # the tolerance is relative to the logits' size: show it, with how well the run learnt
            history = read_run_folder(Path(runs) / family).history
            best = max(float(r["val_acc"]) for r in history)
            rows.append(
                f"| {family} | `{settings['model']}` | {settings.get('image_size', '')} "
                f"| {best:.2f} | {p.images} | {p.max_abs_diff:.1e} | {p.max_abs_logit:.2g} "
                f"| {p.max_abs_diff / p.max_abs_logit:.1e} | {p.top1_agree}/{p.images} "
                f"| {result.opset} ({result.exporter}) | {trained:.0f} s / {result.seconds:.0f} s |"
            )
            print(rows[-1], flush=True)
    print(f"\nCPU: {cpu_model()}; torch {torch.__version__}; {args.threads} threads")
    print(
        "| family | model | px | best val acc | val images | max abs diff | max abs logit "
        "| diff / max logit | top-1 agree | opset | train / export |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    print("\n".join(rows))


def speed(args: argparse.Namespace) -> None:
    import onnxruntime as ort

    from cnnlab.export.onnx import to_onnx
    from cnnlab.models import create_model
    from cnnlab.models.fold import fast_eval_copy

    torch.set_num_threads(args.threads)
    models = {
        "smallcnn": create_model("smallcnn", num_classes=10, in_chans=1, input_size=28),
        "resnet50": create_model("resnet50", num_classes=1000, in_chans=3, input_size=224),
        "efficientnet_lite0": create_model("efficientnet_lite0", pretrained=True),
    }
    runtimes = ("torch", "copy", "ort")
    run: dict[tuple[str, str], Callable[[np.ndarray, int], float]] = {}
    shapes: dict[str, tuple[int, int]] = {}
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    with tempfile.TemporaryDirectory() as tmp:
        for name, net in models.items():
            net = net.eval()
            c, s = (1, 28) if name == "smallcnn" else (3, 224)
            path = Path(tmp) / f"{name}.onnx"
            to_onnx(net, torch.zeros(2, c, s, s), path, metadata={"cnnlab": "bench"})
            session = ort.InferenceSession(str(path), options)
            fast = fast_eval_copy(net, torch.zeros(2, c, s, s), memory_format=torch.channels_last)
            eager = net.to(memory_format=torch.channels_last)
            run[(name, "torch")] = functools.partial(_time_torch, eager)
            run[(name, "copy")] = functools.partial(_time_torch, fast)
            run[(name, "ort")] = functools.partial(_time_ort, session)
            shapes[name] = (c, s)
    rng = np.random.default_rng(0)
    rates: dict[tuple[str, int, str], list[float]] = {}
    for _ in range(args.repeat):  # rounds: every (model, batch, runtime) once per round
        for name, (c, s) in shapes.items():
            for batch in (1, 32):
                x = rng.standard_normal((batch, c, s, s), dtype=np.float32)
                n = max(1, args.images // batch)
                for runtime in runtimes:
                    seconds = run[(name, runtime)](x, n)
                    rates.setdefault((name, batch, runtime), []).append(batch * n / seconds)
    print(
        f"CPU: {cpu_model()}; torch {torch.__version__}, onnxruntime {ort.__version__}; "
        f"{args.threads} intra-op threads; medians of {args.repeat} interleaved rounds"
    )
    print("| model | batch | PyTorch eager img/s | cnnlab inference copy img/s | "
          "ONNX Runtime img/s | ORT / eager | ORT / copy |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in shapes:
        for batch in (1, 32):
            pt, cp, rt = (statistics.median(rates[(name, batch, r)]) for r in runtimes)
            print(f"| {name} | {batch} | {pt:,.1f} | {cp:,.1f} | {rt:,.1f} | {rt / pt:.2f}× | "
                  f"{rt / cp:.2f}× |")  # fmt: skip


@torch.inference_mode()
def _time_torch(net: torch.nn.Module, x: np.ndarray, n: int) -> float:
    t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    net(t)  # warm-up: first-call allocations and kernel choice are not inference speed
    start = time.perf_counter()
    for _ in range(n):
        net(t)
    return time.perf_counter() - start


def _time_ort(session, x: np.ndarray, n: int) -> float:
    name = session.get_inputs()[0].name
    session.run(None, {name: x})  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        session.run(None, {name: x})
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("part", choices=["parity", "speed"])
    p.add_argument("--data", default=str(HYMENOPTERA), help="image folder for parity runs")
    p.add_argument("--only", nargs="*", help="families for parity (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--images", type=int, default=64, help="images per timing (per runtime)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    parity(args) if args.part == "parity" else speed(args)


if __name__ == "__main__":
    main()
