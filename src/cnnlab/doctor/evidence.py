"""What the doctor reasons over: the files of a run folder, read once into plain data, and the
probes' measurements. No torch here: the rules stay pure functions of these two objects.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import RunError


@dataclass
class RunFolder:
    path: str
    config: dict[str, Any]  # config.yaml as a dict (sections data, model, optim, train)
    status: dict[str, Any]  # run.json
    history: list[dict[str, float]]  # metrics.csv rows; epoch is 0-based
    signals: list[dict[str, Any]] = field(default_factory=list)  # signals.jsonl rows
    test: dict[str, Any] | None = None  # test.json
    class_counts: dict[str, list[int]] | None = None  # class_counts.json: split -> per class
    classes: list[str] | None = None  # classes.json
    divergence: dict[str, Any] | None = None  # divergence.json
    audit: dict[str, Any] | None = None  # audit.json, when the dataset audit ran on this run

    @property
    def num_classes(self) -> int | None:
        if self.classes:
            return len(self.classes)
        if self.class_counts and self.class_counts.get("train"):
            return len(self.class_counts["train"])
        build = self.status.get("build") or {}
        return build.get("num_classes")

    def opt(self, section: str, key: str, default: Any = None) -> Any:
        return (self.config.get(section) or {}).get(key, default)


@dataclass
class ProbeResults:
    """Measurements on the model and data (probes.py); a field is None when not measured."""

    init_loss: float | None = None  # fresh model, same config, one training batch
    prior_bias_loss: float | None = None  # the same with the head bias set to log(prior)
    act_std: dict[str, float] | None = None  # output std per conv/linear layer at init
    init_grad_ratio: float | None = None  # first / last weight layer gradient norm at init
    overfit: dict[str, Any] | None = None  # one-batch fit at the configured optimizer
    update_ratio: dict[str, Any] | None = None  # |step| / |w| per layer, one step at peak lr
    input_stats: dict[str, list[float]] | None = None  # per-channel mean/std after preprocess
    bn_gap: dict[str, Any] | None = None  # saved model: running vs batch statistics
    dead_relu: dict[str, Any] | None = None  # saved model: dead channel fraction per layer
    val: dict[str, Any] | None = None  # saved model on val: accuracy, recall per class
    train_eval: dict[str, Any] | None = None  # saved model on train images, no augmentation
    duplicates: dict[str, Any] | None = None  # exact pixel copies of train images per split
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise RunError(f"{path} is unreadable ({e}); the run folder is damaged") from None


def read_history(path: Path) -> list[dict[str, float]]:
    """metrics.csv rows as numbers (epoch int); empty cells and 'nan' become NaN."""
    try:
        with open(path, encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        return []
    out = []
    for r in rows:
        row: dict[str, float] = {}
        for k, v in r.items():
            if k == "epoch":
                row[k] = int(v)
            else:
                try:
                    row[k] = float(v) if v not in ("", None) else math.nan
                except ValueError:
                    row[k] = math.nan
        out.append(row)
    return out


def read_signals(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _class_counts(raw: Any) -> dict[str, list[int]] | None:
    """split -> images per class, from either layout of class_counts.json: the built-in data
    set's {"train": [...], ...} or the folder source's {"classes", "counts": {...}, "totals"}."""
    if not isinstance(raw, dict):
        return None
    return raw.get("counts", raw)


def read_run_folder(run_dir: str | Path) -> RunFolder:
    run_dir = Path(run_dir)
    status = _read_json(run_dir / "run.json")
    if status is None:
        raise RunError(f"{run_dir} is not a cnnlab run folder (no run.json); pass a run folder")
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise RunError(f"{run_dir} has no config.yaml; the run folder is damaged") from None
    return RunFolder(
        path=str(run_dir),
        config=config,
        status=status,
        history=read_history(run_dir / "metrics.csv"),
        signals=read_signals(run_dir / "signals.jsonl"),
        test=_read_json(run_dir / "test.json"),
        class_counts=_class_counts(_read_json(run_dir / "class_counts.json")),
        classes=_read_json(run_dir / "classes.json"),
        divergence=_read_json(run_dir / "divergence.json"),
        audit=_read_json(run_dir / "audit.json"),
    )
