"""Everything cnnlab reads back from a run folder, read once and tolerantly: the one reader
the report (report.html) and the doctor (doctor.json) share.

A report or a diagnosis is most useful when a run went wrong, so nothing here is required
except the folder: a missing file is None, a damaged one is None plus a line in `problems`
(the page shows it, the doctor notes which findings it could not check).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.runs import read_history


@dataclass
class RunFolder:
    path: Path
    status: dict[str, Any] = field(default_factory=dict)  # run.json ({} when missing)
    config: dict[str, Any] | None = None  # config.yaml, parsed
    config_text: str | None = None  # config.yaml as written
    classes: list[str] = field(default_factory=list)
    class_counts: dict[str, list[int]] | None = None  # split -> images per class (`classes` order)
    skipped: list[dict[str, str]] | None = None  # skipped.csv rows: path, reason, detail
    model_meta: dict[str, Any] | None = None  # model.json
    test: dict[str, Any] | None = None  # test.json (or val.json when the data has no test split)
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv rows (runs.py)
    signals: list[dict[str, Any]] = field(default_factory=list)  # signals.jsonl rows
    environment: dict[str, Any] | None = None
    divergence: dict[str, Any] | None = None
    doctor: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def name(self) -> str:
        return self.status.get("name") or self.path.name

    @property
    def num_classes(self) -> int | None:
        if self.classes:
            return len(self.classes)
        if self.class_counts and self.class_counts.get("train"):
            return len(self.class_counts["train"])
        return (self.status.get("build") or {}).get("num_classes")

    def opt(self, section: str, key: str, default: Any = None) -> Any:
        """A config value (config.yaml's `section.key`), `default` when absent."""
        return ((self.config or {}).get(section) or {}).get(key, default)


def read_run_folder(run_dir: str | Path) -> RunFolder:
    path = Path(run_dir)
    problems: list[str] = []

    def js(name: str) -> Any:
        return _json(path / name, problems)

    config_text = _text(path / "config.yaml", problems)
    classes = js("classes.json") or []
    test = js("test.json")
    if test is None and (path / "val.json").exists():
        test = js("val.json")
    if not classes and test:
        classes = list(test.get("per_class", {}))
    return RunFolder(
        path=path,
        status=js("run.json") or {},
        config=_yaml(config_text, problems),
        config_text=config_text,
        classes=classes,
        class_counts=class_counts(js("class_counts.json")),
        skipped=_csv(path / "skipped.csv", problems),
        model_meta=js("model.json"),
        test=test,
        history=read_history(path),
        signals=_jsonl(path / "signals.jsonl", problems),
        environment=js("environment.json"),
        divergence=js("divergence.json"),
        doctor=js("doctor.json"),
        audit=js("audit.json"),
        problems=problems,
    )


def class_counts(raw: Any) -> dict[str, list[int]] | None:
    """split -> counts, from class_counts.json ({"classes", "counts", "totals"}, written by
    data.bundle.write_class_counts for every data source)."""
    counts = raw.get("counts") if isinstance(raw, dict) else None
    if not isinstance(counts, dict):
        return None
    return {k: list(v) for k, v in counts.items() if isinstance(v, list)} or None


def _text(file: Path, problems: list[str]) -> str | None:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{file.name} is unreadable ({e})")
        return None


def _json(file: Path, problems: list[str]) -> Any:
    text = _text(file, problems)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        problems.append(f"{file.name} is damaged ({e})")
        return None


def _jsonl(file: Path, problems: list[str]) -> list[dict[str, Any]]:
    text = _text(file, problems)
    rows = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut by a killed writer: the rows before it still count
            problems.append(f"{file.name} has a damaged line")
            break
    return rows


def _yaml(text: str | None, problems: list[str]) -> dict[str, Any] | None:
    import yaml

    if text is None:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problems.append(f"config.yaml is damaged ({str(e).splitlines()[0]})")
        return None
    return data if isinstance(data, dict) else None


def _csv(file: Path, problems: list[str]) -> list[dict[str, str]] | None:
    text = _text(file, problems)
    if text is None:
        return None
    return list(csv.DictReader(text.splitlines()))
