"""The run folder: where a run's files live and what state it is in.

runs/<name>/
  config.yaml  classes.json  environment.json  run.json (status)
  metrics.csv  signals.jsonl  curves.png            <- training history
  best.ckpt  last.ckpt  last.prev.ckpt               <- Lightning checkpoints (resume)
  model.safetensors  model.json                      <- best weights + preprocessing
  test.json  confusion_matrix.png  summary.md        <- evaluation and report
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from cnnlab.errors import RunError
from cnnlab.fsio import read_json, write_json

DEFAULT_RUNS_DIR = "runs"


def runs_root(runs_dir: str | Path | None = None) -> Path:
    return Path(runs_dir or os.environ.get("CNNLAB_RUNS_DIR", DEFAULT_RUNS_DIR))


def new_run_name(model: str, dataset: str) -> str:
    return f"{model}-{dataset}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def resolve_run(run: str | Path, runs_dir: str | Path | None = None) -> Path:
    """A run given as a folder path or as a name under the runs folder."""
    candidates = [Path(run), runs_root(runs_dir) / str(run)]
    for path in candidates:
        if (path / "run.json").is_file():
            return path
    for path in candidates:
        if path.is_dir():
            raise RunError(f"{path} is not a cnnlab run folder (no run.json); pass a run folder")
    raise RunError(
        f"run '{run}' not found (looked in {candidates[0]} and {candidates[1]}); "
        f"see the folders under {runs_root(runs_dir)}"
    )


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        return read_json(run_dir / "run.json")
    except (OSError, ValueError):
        raise RunError(f"{run_dir}/run.json is unreadable; the run folder is damaged") from None


def write_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    path = run_dir / "run.json"
    status = read_json(path) if path.exists() else {}
    status.update(fields)
    status["updated"] = now()
    write_json(path, status)
    return status


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.csv as rows of numbers (epoch as int); [] when the run has no readable history."""
    import csv

    try:
        with open(Path(run_dir) / "metrics.csv", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return [{k: int(v) if k == "epoch" else float(v) for k, v in r.items() if v} for r in rows]
    except (OSError, ValueError):
        return []


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def environment(device: str, device_reason: str) -> dict[str, Any]:
    """Versions and machine facts that make a result comparable (recorded in every run)."""
    import lightning
    import timm
    import torch
    import torchvision

    import cnnlab

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "cnnlab": cnnlab.__version__,
        "git_commit": _git_commit(),
        "device": device,
        "device_reason": device_reason,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None
