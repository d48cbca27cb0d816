"""Helpers for tests that run `cnnlab` as a real process: start it, wait for an epoch, kill it.

Shared by tests/e2e/test_resume.py, the chaos suite (tests/chaos) and benchmarks/bench_chaos.py.
They read the run folder as files only (metrics.csv, last.ckpt), so they work against any
version of cnnlab.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

TIMING = ("epoch_time_s", "images_per_s")  # columns that differ between identical runs


def cli_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m cnnlab ARGS` with its output captured (unbuffered, so it can be waited on)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=full_env,
    )  # fmt: skip


def metrics_rows(run: Path) -> list[dict]:
    """metrics.csv without the timing columns (so that two identical runs compare equal)."""
    with open(run / "metrics.csv") as fh:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)]


def wait_for_epochs(proc: subprocess.Popen, run: Path, n: int, timeout: float = 180) -> None:
    """Until `run` has n rows in metrics.csv and a last.ckpt (the process must stay alive)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        # the checkpoint lands just after the metrics row (atomically: present means complete)
        if (
            (run / "metrics.csv").exists()
            and len(metrics_rows(run)) >= n
            and (run / "last.ckpt").exists()
        ):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("training did not reach the epoch in time")


def wait_for_file(proc: subprocess.Popen, path: Path, timeout: float = 180) -> None:
    """Until `path` exists (any file, temporary ones included) while `proc` runs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    raise AssertionError(f"{path} did not appear in time")


def exported_weights(run: Path) -> dict:
    """model.safetensors as tensors (to compare two runs bitwise)."""
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))
