"""`make bench`: every benchmark, one after another (2 cores: never two heavy jobs at once).

    .venv/bin/python benchmarks/run_all.py [--skip transfer]

Prints each benchmark's Markdown table; copy the tables with their commands into
benchmarks/RESULTS.md. The transfer benchmark needs ../shared/datasets/hymenoptera and is
skipped (with a message) when the folder is absent.
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
    "budget": ["bench_fashion_budget.py", "--recipe", "budget4"],
    "fashion": ["bench_fashion.py"],
    "folder": ["bench_folder.py", "--workers", "0", "2", "--repeat", "3"],
    "transfer": ["bench_transfer.py", "--data", str(HYMENOPTERA)],
    "chaos": ["bench_chaos.py"],  # ~200 attacks as real processes (~40 min)
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--skip", nargs="*", default=[], choices=list(BENCHES))
    args = p.parse_args()
    failed = []
    for name, argv in BENCHES.items():
        if name in args.skip:
            continue
        if name == "transfer" and not HYMENOPTERA.is_dir():
            print(f"skipping transfer: {HYMENOPTERA} not found", flush=True)
            continue
        print(f"\n=== {name}: python benchmarks/{' '.join(argv)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]]).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
