"""`make bench`: every benchmark, one after another (2 cores: never two heavy jobs at once).

    .venv/bin/python benchmarks/run_all.py [--skip transfer]

Prints each benchmark's Markdown table; copy the tables with their commands into
benchmarks/RESULTS.md. The transfer, audit, lr_find and export benchmarks need
../shared/datasets/hymenoptera and are skipped (with a message) when the folder is absent.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# shared/ sits beside the main checkout (../shared) or beside the worktrees folder (../../shared)
HYMENOPTERA = next(
    (p / "shared/datasets/hymenoptera" for p in HERE.parents[1:3] if (p / "shared").is_dir()),
    HERE.parents[1] / "shared/datasets/hymenoptera",
)
BENCHES = {
    "engine": ["bench_engine.py"],  # the engine vs a plain loop, every workload (~10 min)
    "memory_format": ["bench_memory_format.py", "--verbose-conv"],  # NCHW vs NHWC steps (~8 min)
    "optimizer": ["bench_optimizer.py"],  # per-tensor loop vs foreach vs fused steps (~1 min)
    "validation": ["bench_validation.py"],  # eval forward vs the refreshed inference copy (~1 min)
    "fused_conv": ["bench_fused_conv.py"],  # inference copies with and without fusion (~2 min)
    "cached_epochs": ["bench_cached_epochs.py"],  # frozen epochs 2+ without decoding (~2 min)
    "threads": ["bench_threads.py"],  # two runs sharing the CPUs, pinned or not (~3 min)
    "budget": ["bench_fashion_budget.py", "--recipe", "budget4"],
    "fashion": ["bench_fashion.py"],
    "folder": ["bench_folder.py", "--workers", "0", "2", "--repeat", "3"],
    "transfer": ["bench_transfer.py", "--data", str(HYMENOPTERA)],
    "doctor": ["bench_doctor.py", "--work", "/tmp/cnnlab-bench-doctor"],  # 28 runs (~15 min)
    "audit": ["bench_audit.py", "--data", str(HYMENOPTERA), "--out", "/tmp/cnnlab-bench-audit"],
    "lr_find": ["bench_lr_find.py", "--data", str(HYMENOPTERA), "--out", "/tmp/cnnlab-bench-lr"],
    "export": ["bench_export.py", "parity", "--data", str(HYMENOPTERA)],  # 8 families (~5 min)
    "export_speed": ["bench_export.py", "speed"],
    "chaos": ["bench_chaos.py"],  # ~200 attacks as real processes (~40 min)
}
# the benchmarks that read the ants-vs-bees photos
NEEDS_PHOTOS = {"transfer", "audit", "lr_find", "export"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--skip", nargs="*", default=[], choices=list(BENCHES))
    args = p.parse_args()
    failed = []
    for name, argv in BENCHES.items():
        if name in args.skip:
            continue
        if name in NEEDS_PHOTOS and not HYMENOPTERA.is_dir():
            print(f"skipping {name}: {HYMENOPTERA} not found", flush=True)
            continue
        print(f"\n=== {name}: python benchmarks/{' '.join(argv)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]]).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
