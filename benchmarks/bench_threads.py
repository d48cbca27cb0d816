"""Two trainings sharing the machine's CPUs: each asking for --threads N unpinned, against each
pinned to CPUs of its own (where cnnlab then runs one torch thread per CPU it may use,
`cnnlab.runtime.cpu_threads`). This is what `make test` does with two pytest workers, and what
two users' jobs on one small machine do.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_threads.py --rounds 2

Each round runs both layouts one after the other (interleaved), two `cnnlab train` processes at
a time (smallcnn, 2,000 Fashion-MNIST images, 3 epochs), and reports the wall time of each pair
and the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.runtime import available_cpus


def pair(threads: int, pinned: bool, work: Path) -> float:
    """Wall seconds for two concurrent trainings."""
    cpus = sorted(os.sched_getaffinity(0))
    procs = []
    start = time.perf_counter()
    for i in range(2):
        cmd = [
            sys.executable, "-m", "cnnlab", "train", "--name", f"t{i}", "--runs-dir",
            str(work / f"{threads}-{pinned}-{i}"), "--threads", str(threads), "--seed", "0",
            "--subset", "2000", "--epochs", "3", "--force",
        ]  # fmt: skip
        if pinned:
            share = len(cpus) // 2
            cmd = ["taskset", "-c", ",".join(map(str, cpus[i * share : (i + 1) * share]))] + cmd
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(err.decode()[-2000:])
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=available_cpus(), help="asked by each run")
    args = p.parse_args()
    if available_cpus() < 2:
        raise SystemExit("needs at least 2 CPUs")
    per_run = available_cpus() // 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            free = pair(args.threads, False, Path(tmp))
            pinned = pair(args.threads, True, Path(tmp))
            rows.append((free, pinned))
            print(f"round {r + 1}: unpinned {free:.1f} s, pinned {pinned:.1f} s, "
                  f"{free / pinned:.2f}x", flush=True)  # fmt: skip
    print(f"\n{available_cpus()} CPUs; each run asks --threads {args.threads}; pinned runs get "
          f"{per_run} CPU(s) and so {min(args.threads, per_run)} thread(s)")  # fmt: skip
    print("| round | unpinned pair (s) | pinned pair (s) | unpinned / pinned |")
    print("|---:|---:|---:|---:|")
    for i, (f, q) in enumerate(rows, 1):
        print(f"| {i} | {f:.1f} | {q:.1f} | **{f / q:.2f}x** |")


if __name__ == "__main__":
    main()
