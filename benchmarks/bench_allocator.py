"""glibc malloc defaults vs `cnnlab.runtime.tune_process()`, per workload, in fresh processes.

Each measurement is a new Python process (the allocator's state is per process); default and
tuned processes alternate, `--repeat` times each, and the table gives medians and the ratio.
Minor page faults (getrusage) show what the tuned allocator saves: the kernel no longer maps
and zero-fills fresh pages for every large buffer of every batch.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_allocator.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from common import cpu_model

WORKLOADS = {
    # name: (model, input (C, S), batch, mode)
    "smallcnn train": ("smallcnn", (1, 28), 128, "train"),
    "Lite0 frozen pass": ("efficientnet_lite0", (3, 224), 32, "infer"),
    "Lite0 train step": ("efficientnet_lite0", (3, 224), 16, "train"),
}


def child(workload: str, tuned: bool, steps: int, threads: int) -> dict:
    if tuned:
        from cnnlab.runtime import tune_process

        tune_process()
    import torch

    from cnnlab.models import create_model

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    name, (c, s), batch, mode = WORKLOADS[workload]
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=c, input_size=s)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, c, s, s).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        if mode == "infer":
            model.eval()
            with torch.inference_mode():
                model(x)
        else:
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    for _ in range(2):  # warm-up: oneDNN primitive caches, first-touch of the weights
        step()
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    return {
        "img_s": steps * batch / elapsed,
        "faults_per_step": faults / steps,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(workload: str, tuned: bool, steps: int, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["CNNLAB_TUNE_MALLOC"] = "1"
    cmd = [sys.executable, __file__, "--child", workload, "--steps", str(steps)]
    cmd += ["--threads", str(threads)] + (["--tuned"] if tuned else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child")
    p.add_argument("--tuned", action="store_true")
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", nargs="*", default=list(WORKLOADS))
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tuned, args.steps, args.threads)))
        return
    steps = {"smallcnn train": 30, "Lite0 frozen pass": 8, "Lite0 train step": 6}
    print(f"CPU: {cpu_model()}; {args.threads} threads; median of {args.repeat}")
    print("| workload | default img/s | tuned img/s | ratio | minor faults/step default → tuned "
          "| max RSS MB default → tuned |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for w in args.only:
        res: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeat):
            for tuned in (False, True):
                res[tuned].append(run_child(w, tuned, steps[w], args.threads))

        def med(tuned: bool, key: str, res=res) -> float:
            return statistics.median(r[key] for r in res[tuned])

        d, t = med(False, "img_s"), med(True, "img_s")
        print(
            f"| {w} | {d:.1f} | {t:.1f} | **{t / d:.2f}x** | "
            f"{med(False, 'faults_per_step'):,.0f} → {med(True, 'faults_per_step'):,.0f} | "
            f"{med(False, 'maxrss_mb'):,.0f} → {med(True, 'maxrss_mb'):,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
