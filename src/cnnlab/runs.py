"""The run folder: where a run's files live, what state it is in, and who owns it.

runs/<name>/
  config.yaml  classes.json  environment.json  run.json (status)
  metrics.csv  signals.jsonl  curves.png            <- training history
  best.ckpt  last.ckpt  last.prev.ckpt               <- Lightning checkpoints (resume)
  model.safetensors  model.json                      <- best weights + preprocessing
  test.json  confusion_matrix.png  summary.md        <- evaluation and report
  .lock                                              <- present while a process owns the run

`run.json` is read and written only here; its `status` is a `RunStatus`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import errno
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError, RunError
from cnnlab.fsio import read_json, write_json

DEFAULT_RUNS_DIR = "runs"
LOCK = ".lock"
MAX_NAME = 200  # bytes; every filesystem allows 255

# Every file cnnlab writes into a run folder; `--force` removes these and nothing else.
ARTIFACTS = (
    "metrics.csv", "signals.jsonl", "curves.png", "val.json", "best.ckpt", "last.ckpt",
    "last.prev.ckpt", "model.safetensors", "model.json", "test.json", "confusion_matrix.png",
    "summary.md", "divergence.json", "skipped.csv", "split_manifest.csv", "class_counts.json",
    "run.json", "config.yaml", "classes.json", "environment.json", "doctor.json", "audit.json",
    "audit.png", "report.html", "lr_find.json", "lr_find.png", "export.json", "model.onnx",
    "model.torchscript.pt", "train.log", "planned_config.yaml",
)  # fmt: skip
ARTIFACT_DIRS = ("tensorboard", "explain", "evaluations")


class RunStatus(str, enum.Enum):
    """The life of a run: preparing -> running -> one of the terminal states (or interrupted,
    which `--resume` continues)."""

    PREPARING = "preparing"  # set-up: data scan, model build
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: a checkpoint was written
    DIVERGED = "diverged"  # NaN/Inf loss; the last good checkpoint is kept
    FAILED = "failed"  # an error; see run.json's `error`

    def __str__(self) -> str:
        return self.value

    @property
    def retrainable(self) -> bool:
        """States an experiment re-runs only when asked (--rerun-failed)."""
        return self in (RunStatus.FAILED, RunStatus.DIVERGED)


def runs_root(runs_dir: str | Path | None = None) -> Path:
    return Path(runs_dir or os.environ.get("CNNLAB_RUNS_DIR", DEFAULT_RUNS_DIR))


def new_run_name(model: str, dataset: str) -> str:
    return f"{model}-{dataset}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def check_run_name(name: str) -> str:
    """A run name is one folder name under the runs folder: never a path that leads elsewhere."""
    bad = (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or any(c in name for c in "/\\\0")
        or len(name.encode()) > MAX_NAME
    )
    if bad:
        raise ConfigError(
            f"run name {name!r} is not a plain folder name; use letters, digits, '-', '_' and '.' "
            f"(no '/', not starting with '.'), and --runs-dir to choose where runs go"
        )
    return name


def run_folder(name: str, runs_dir: str | Path | None = None) -> Path:
    return runs_root(runs_dir) / check_run_name(name)


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


# ---------------------------------------------------------------------------------------------
# run.json


def read_status(run_dir: Path, *, missing_ok: bool = False) -> dict[str, Any]:
    """run.json with `status` as a RunStatus; {} when it is missing and `missing_ok`."""
    path = Path(run_dir) / "run.json"
    if missing_ok and not path.exists():
        return {}
    try:
        status = read_json(path)
        if not isinstance(status, dict):
            raise ValueError("not a mapping")
        if "status" in status:
            status["status"] = RunStatus(status["status"])
    except (OSError, ValueError):
        raise RunError(f"{path} is unreadable; the run folder is damaged") from None
    return status


def try_read_status(run_dir: Path) -> dict[str, Any]:
    """run.json, or {} when it is missing or damaged (tables over many runs must not stop)."""
    try:
        return read_status(run_dir, missing_ok=True)
    except RunError:
        return {}


def status_of(run_dir: Path) -> RunStatus | None:
    """The run's state, or None when the folder holds no run (yet)."""
    return read_status(run_dir, missing_ok=True).get("status")


def read_config(run_dir: Path) -> Any:
    """The run's config.yaml as a Config; a RunError naming the file when it is damaged."""
    from cnnlab import config as C

    path = Path(run_dir) / "config.yaml"
    try:
        raw = C.read_yaml(path)
        # cnnlab writes every section: one that is gone means a cut or damaged file, whose
        # missing keys would otherwise quietly take their defaults
        missing = [s for s in C.SECTIONS if not isinstance(raw, dict) or s not in raw]
        if missing:
            raise ConfigError(f"section {missing[0]} is missing")
        return C.from_dict(raw)
    except ConfigError as e:
        raise RunError(f"{path} is unusable ({e}); restore it") from None


def read_classes(run_dir: Path) -> list[str] | None:
    """classes.json (None when the run has none yet); a RunError naming it when damaged."""
    path = Path(run_dir) / "classes.json"
    if not path.exists():
        return None
    try:
        classes = read_json(path)
    except (OSError, ValueError):
        classes = None
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise RunError(f"{path} is unreadable; the run folder is damaged: restore it")
    return classes


def write_status(run_dir: Path, status: RunStatus | None = None, **fields: Any) -> dict[str, Any]:
    """Update run.json: the status (when given) and any other fields."""
    path = Path(run_dir) / "run.json"
    record = read_status(run_dir, missing_ok=True)
    if status is not None:
        record["status"] = RunStatus(status)
    record.update(fields)
    record["updated"] = now()
    write_json(path, record)
    return record


HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s")


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.csv as rows of numbers (epoch as int); [] when the run has no readable history."""
    import csv

    try:
        with open(Path(run_dir) / "metrics.csv", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        # a row cut short (a damaged file) has missing fields: it is left out, not half-read
        whole = [r for r in rows if None not in r and all(r.get(k) for k in HISTORY_COLUMNS)]
        return [{k: int(v) if k == "epoch" else float(v) for k, v in r.items() if v} for r in whole]
    except (OSError, ValueError, csv.Error):
        return []


def clear_run(run_dir: Path) -> None:
    """Remove what cnnlab wrote into a run folder, and only that (`--force`)."""
    import shutil

    for name in ARTIFACTS:
        (run_dir / name).unlink(missing_ok=True)
    for name in ARTIFACT_DIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)
    remove_stale_temporaries(run_dir)


def remove_stale_temporaries(run_dir: Path) -> list[str]:
    """Temporary files of an atomic write whose writer was killed (`.last.tmp-PID.ckpt`)."""
    removed = []
    for path in Path(run_dir).glob(".*.tmp-*"):
        pid = path.name.rsplit(".tmp-", 1)[1].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# ownership: one process per run folder


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_rank_zero() -> bool:
    """Under torchrun/SLURM every rank runs the command; only global rank 0 owns the folder."""
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return os.environ[key] == "0"
    return True


class RunInUse(RunError):
    pass


@contextlib.contextmanager
def owned(run_dir: Path, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the run folder's lock file for the duration: created exclusively (O_EXCL) with our
    PID and host, so two commands can never train, resume or clear one run at once. A lock left
    by a dead process on this host is taken over with a note."""
    if not is_rank_zero():
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": now(),
          "command": " ".join(sys.argv[:6])}  # fmt: skip
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(path)
            if _is_stale(holder):
                log(f"note: taking over the lock of {run_dir.name} left by dead process "
                    f"{holder.get('pid')} ({holder.get('command', '?')})")  # fmt: skip
                path.unlink(missing_ok=True)
                continue
            raise RunInUse(
                f"run '{run_dir.name}' is in use by process {holder.get('pid')} on "
                f"{holder.get('host')} since {holder.get('since')} ({holder.get('command', '?')}); "
                f"wait for it to end or stop it (Ctrl-C writes a checkpoint)"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        break
    try:
        yield
    finally:
        release_lock(run_dir)


def release_lock(run_dir: Path) -> None:
    """Remove the run folder's lock file if this process holds it."""
    path = Path(run_dir) / LOCK
    if _lock_holder(path).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def lock_holder(run_dir: Path) -> dict[str, Any] | None:
    """Who holds the run (a live process), or None."""
    path = Path(run_dir) / LOCK
    if not path.exists():
        return None
    holder = _lock_holder(path)
    return None if _is_stale(holder) else holder


def _lock_holder(path: Path) -> dict[str, Any]:
    try:
        holder = read_json(path)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # half-written by a process killed between open and write


def _is_stale(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True
    return holder.get("host") == socket.gethostname() and not pid_alive(pid)


# ---------------------------------------------------------------------------------------------
# facts about the machine


def environment(device: str, device_reason: str) -> dict[str, Any]:
    """Versions and machine facts that make a result comparable (recorded in every run)."""
    import lightning
    import timm
    import torch
    import torchvision

    import cnnlab
    from cnnlab.runtime import tune_process

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_model(),
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
        "malloc": tune_process().malloc,  # idempotent: says what this process runs with
    }


def cpu_model() -> str:
    """'AMD EPYC 7B13' rather than 'x86_64': speeds differ 2.8x between such machines."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


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


def disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
