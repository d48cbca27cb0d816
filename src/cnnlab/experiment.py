"""Experiments: a grid of runs over any config keys, repeated over seeds, and one honest table.

    cnnlab experiment examples/hymenoptera_lite0.yaml --dry-run     # the plan, nothing trained
    cnnlab experiment examples/hymenoptera_lite0.yaml --parallel 2  # two trainings at a time

The file (relative data.path / data.data_dir / model.weights are resolved against its folder):

    name: lr-sweep                  # runs/lr-sweep/ holds the runs and results.{csv,md,png}
    base: {data: {subset: 2000}, train: {epochs: 5}}   # a config mapping, or a config YAML path
    grid: {optim.lr: [0.1, 0.01]}   # cartesian product over dotted keys
    runs:                           # each listed run is crossed with the grid
      - {model.name: smallcnn}
      - {label: vgg11-paper, model.name: vgg11, model.init: paper}   # label: its name
    seeds: [0, 1, 2]                # every configuration once per seed (default [0])

Run names come from the settings (`smallcnn-lr0.1-s0`, `vgg11-paper-lr0.01-s1`), so a re-run
finds its runs: finished ones are reused, interrupted ones resume, failed and diverged ones stay
in the table as such unless rerun_failed. The vgg11 runs' lr is in the grid, not in the label.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cnnlab import config as C
from cnnlab import runs
from cnnlab.errors import CnnlabError, ConfigError, InterruptedRun, suggest
from cnnlab.fsio import read_json, write_text, write_with

Log = Callable[[str], None]
TOP_KEYS = ("name", "description", "base", "grid", "runs", "seeds")
PATH_KEYS = ("data.path", "data.data_dir", "model.weights")
# Keys that change speed, not results: a run trained with other values is still the same run.
NOT_COMPARED = ("name", "train.threads", "data.workers")
TERMINAL = ("finished", "failed", "diverged")
MAX_NAME = 100  # run folder names stay well under every filesystem's 255-byte limit
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a folder name on every OS


@dataclass
class RunSpec:
    name: str  # folder under the experiment folder: label + "-s<seed>"
    label: str  # the configuration, shared by its seeds
    settings: dict[str, Any]  # the varied keys (dotted, typed), seed excluded
    seed: int
    config: C.Config  # resolved and validated


@dataclass
class Experiment:
    name: str
    source: Path
    keys: list[str]  # every varied key, in order of first appearance
    seeds: list[int]
    runs: list[RunSpec]

    def folder(self, runs_dir: str | Path | None = None) -> Path:
        return runs.runs_root(runs_dir) / self.name

    def plan(self, runs_dir: str | Path | None = None, *, rerun_failed: bool = False) -> str:
        """What a run of this experiment would do, run by run (for --dry-run)."""
        folder = self.folder(runs_dir)
        configs = len({s.label for s in self.runs})
        lines = [
            f"experiment '{self.name}' from {self.source}: {len(self.runs)} runs "
            f"({configs} configurations x {len(self.seeds)} seeds) in {folder}",
        ]
        width = max(len(s.name) for s in self.runs)
        for spec in self.runs:
            action = _action(spec, folder / spec.name, rerun_failed)
            if action.startswith("keep"):
                status = _status(folder / spec.name)
                action += f": {status.get('error') or status.get('stop_reason') or '?'}"[:100]
            lines.append(f"  {spec.name:<{width}}  {action}")
        notes: dict[str, list[str]] = {}
        for spec in self.runs:
            for note in C.lint(spec.config):
                notes.setdefault(note, []).append(spec.label)
        for note, labels in notes.items():
            lines.append(f"warning: {note} ({', '.join(dict.fromkeys(labels))})")
        return "\n".join(lines)


@dataclass
class ExperimentResult:
    name: str
    folder: Path
    rows: list[dict[str, Any]]  # one per run, the rows of results.csv
    markdown: str  # results.md's grouped table

    @property
    def finished(self) -> int:
        return sum(r["status"] == "finished" for r in self.rows)

    def summary(self) -> str:
        failed = len(self.rows) - self.finished
        kinds = [r["status"] for r in self.rows if r["status"] != "finished"]
        words = {"failed": "error"}  # "2 failed (1 diverged, 1 error)", not "1 failed" twice
        detail = ", ".join(f"{kinds.count(k)} {words.get(k, k)}" for k in dict.fromkeys(kinds))
        line = f"{self.finished} finished, {failed} failed" + (f" ({detail})" if detail else "")
        if "failed" in kinds or "diverged" in kinds:
            line += "; retrain those with --rerun-failed"
        return line


# ---------------------------------------------------------------------------------------------
# loading: the file -> a validated list of runs


def load_experiment(path: str | Path) -> Experiment:
    """Read and expand an experiment file; every problem is reported before anything trains."""
    path = Path(path)
    doc = _read_yaml(path)
    problems: list[str] = []
    for key in doc:
        if key not in TOP_KEYS:
            problems.append(f"unknown key '{key}'{suggest(str(key), TOP_KEYS)}; use {TOP_KEYS}")
    name = doc.get("name")
    if not isinstance(name, str) or not _SAFE.fullmatch(name):
        problems.append(f"'name' must be a folder-safe name like 'lr-sweep', got {name!r}")
    base = _base(doc.get("base"), path.parent, problems)
    grid = _grid(doc.get("grid"), path.parent, problems)
    entries = _entries(doc.get("runs"), path.parent, problems)
    seeds = doc.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(type(s) is int for s in seeds)):
        problems.append(f"'seeds' must be a list of integers like [0, 1, 2], got {seeds!r}")
        seeds = [0]
    elif len(set(seeds)) != len(seeds):
        problems.append(f"'seeds' repeats a seed: {seeds}")
    for entry in [grid, *entries]:
        if "train.seed" in entry:
            problems.append("set seeds with the top-level 'seeds' list, not train.seed")
            break
    specs = [] if problems else _expand(base, grid, entries, seeds, problems)
    if problems:
        unique = list(dict.fromkeys(problems))
        head = f"{len(unique)} problems: " if len(unique) > 1 else ""
        raise ConfigError(f"{path}: {head}{'; '.join(unique)}")
    keys = list(dict.fromkeys(k for s in specs for k in s.settings))
    return Experiment(name=name, source=path, keys=keys, seeds=seeds, runs=specs)


def _read_yaml(path: Path) -> dict[str, Any]:
    doc = C.read_yaml(path, "experiment file")
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: an experiment file is a mapping with keys {TOP_KEYS}")
    return doc


def _typed(key: str, value: Any, folder: Path) -> tuple[str, Any]:
    """(full dotted key, value converted to the field's type); relative paths -> absolute."""
    section, leaf = C.resolve_key(key)
    if section is None:
        raise ConfigError("'name' is the experiment's; run names are generated")
    scratch = C.Config()
    scratch.set(f"{section}.{leaf}", value)
    typed = getattr(getattr(scratch, section), leaf)
    dotted = f"{section}.{leaf}"
    if dotted in PATH_KEYS and typed is not None:
        # absolute: the runs' saved configs must not depend on where cnnlab was started
        typed = os.path.abspath(folder / os.path.expanduser(typed))
    return dotted, typed


def _flat(mapping: Any, folder: Path, where: str, problems: list[str]) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        problems.append(f"{where} must be a mapping of config keys to values")
        return {}
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        try:
            dotted, typed = _typed(str(key), value, folder)
        except ConfigError as e:
            problems.append(f"{where}: {e}")
            continue
        if dotted in out:
            problems.append(f"{where}: '{key}' repeats {dotted}")
        out[dotted] = typed
    return out


def _base(base: Any, folder: Path, problems: list[str]) -> dict[str, Any]:
    """The base config as flat dotted keys; a string is a config YAML beside the experiment."""
    if base is None:
        return {}
    if isinstance(base, str):
        file = folder / base
        try:
            base = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            problems.append(f"base config {file} is unreadable ({type(e).__name__})")
            return {}
        folder = file.parent
    if not isinstance(base, dict):
        problems.append("'base' must be a config mapping (data/model/optim/train) or a YAML path")
        return {}
    flat: dict[str, Any] = {}
    for section, values in base.items():
        if section not in C.SECTIONS:
            problems.append(f"base: unknown config section '{section}'; use {tuple(C.SECTIONS)}")
        elif isinstance(values, dict):
            flat.update(_flat({f"{section}.{k}": v for k, v in values.items()}, folder, "base",
                              problems))  # fmt: skip
        else:
            problems.append(f"base: section '{section}' must be a mapping of keys to values")
    return flat


def _grid(grid: Any, folder: Path, problems: list[str]) -> dict[str, list[Any]]:
    if grid is None:
        return {}
    if not isinstance(grid, dict):
        problems.append("'grid' must map config keys to lists of values")
        return {}
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.append(f"grid: '{key}' needs a non-empty list of values, got {values!r}")
            continue
        typed = [_flat({key: v}, folder, "grid", problems) for v in values]
        if all(typed):
            dotted = next(iter(typed[0]))
            if dotted in out:
                problems.append(f"grid: '{key}' repeats {dotted}")
            out[dotted] = [t[dotted] for t in typed]
    return out


def _entries(entries: Any, folder: Path, problems: list[str]) -> list[tuple[str | None, dict]]:
    """(label or None, settings) per listed run; `label:` names a run where the generated name
    would be long."""
    if entries is None:
        return [(None, {})]
    if not isinstance(entries, list) or not entries:
        problems.append("'runs' must be a non-empty list of mappings of config keys to values")
        return [(None, {})]
    out = []
    for i, entry in enumerate(entries):
        entry = dict(entry) if isinstance(entry, dict) else entry
        label = entry.pop("label", None) if isinstance(entry, dict) else None
        if label is not None and not (isinstance(label, str) and _SAFE.fullmatch(label)):
            problems.append(f"runs[{i}]: label must be a folder-safe name, got {label!r}")
        out.append((label, _flat(entry, folder, f"runs[{i}]", problems)))
    labels = [label for label, _ in out if label is not None]
    for label in dict.fromkeys(lb for lb in labels if labels.count(lb) > 1):
        problems.append(f"runs: label '{label}' is used twice")
    return out


def _expand(base, grid, entries, seeds, problems: list[str]) -> list[RunSpec]:
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    configs: list[dict[str, Any]] = []
    labels: list[str] = []
    for i, (label, entry) in enumerate(entries):
        both = set(entry) & set(grid)
        if both:
            problems.append(f"runs[{i}] and grid both set {sorted(both)}; keep each key in one")
        configs += [{**entry, **combo} for combo in combos]
        labels += [
            run_label({**entry, **combo}) if label is None else
            "-".join([label, *([run_label(combo)] if combo else [])])
            for combo in combos
        ]  # fmt: skip
    labels = _unique_labels(configs, labels)
    seen: dict[str, str] = {}
    for settings, label in zip(configs, labels, strict=True):
        key = json.dumps(settings, sort_keys=True, default=str)
        if key in seen:
            problems.append(f"configuration {label} is listed twice")
        seen[key] = label
    specs = []
    for settings, label in zip(configs, labels, strict=True):
        for seed in seeds:
            name = f"{label}-s{seed}"
            try:
                specs.append(RunSpec(name, label, settings, seed,
                                     _build_config(base, settings, seed, name)))  # fmt: skip
            except ConfigError as e:
                problems.append(f"run {label}: {e}")
    return specs


def _build_config(base: dict[str, Any], settings: dict[str, Any], seed: int, name: str):
    from cnnlab.api import resolve_config
    from cnnlab.models.registry import INIT_SCHEMES, get_model_info

    cfg = C.Config(name=name)
    for key, value in {**base, **settings, "train.seed": seed}.items():
        cfg.set(key, value)
    cfg = resolve_config(cfg)
    info = get_model_info(cfg.model.name)
    if cfg.model.pretrained and info.weights is None:
        raise ConfigError(f"model '{cfg.model.name}' has no pretrained weights in cnnlab")
    if cfg.model.init not in INIT_SCHEMES:
        raise ConfigError(f"unknown init '{cfg.model.init}'; choose one of {INIT_SCHEMES}")
    for key in PATH_KEYS:
        section, leaf = key.split(".")
        value = getattr(getattr(cfg, section), leaf)
        if value is not None and not Path(value).exists():
            raise ConfigError(f"{key} {value} does not exist")
    return cfg


def run_label(settings: dict[str, Any]) -> str:
    """A readable, folder-safe name from the settings: {model.name: vgg16, model.pretrained:
    true, optim.lr: 0.001} -> 'vgg16-pretrained-lr0.001'."""
    parts = []
    for key, value in settings.items():
        leaf = key.split(".")[1].replace("_", "-")
        if value is None:
            parts.append(f"{leaf}-none")
        elif key == "model.name":
            parts.append(str(value))
        elif key == "data.path":
            parts.append(Path(value).name)
        elif isinstance(value, bool):
            parts.append(leaf if value else f"no-{leaf}")
        elif isinstance(value, int | float):
            parts.append(f"{leaf}{value:g}".replace("+", ""))
        else:
            parts.append(f"{leaf}-{Path(value).name if key in PATH_KEYS else value}")
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)).strip("._-") or "base"
    if len(label) > MAX_NAME:
        label = f"{label[: MAX_NAME - 9]}-{_digest(settings)}"
    return label


def _digest(settings: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _unique_labels(configs: list[dict[str, Any]], labels: list[str]) -> list[str]:
    # Two settings can slug alike (two data folders named 'train'): a digest tells them apart.
    return [
        f"{label}-{_digest(s)}" if labels.count(label) > 1 else label
        for label, s in zip(labels, configs, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# running


def run_experiment(
    path: str | Path,
    *,
    runs_dir: str | Path | None = None,
    parallel: int = 1,
    rerun_failed: bool = False,
    log: Log = print,
) -> ExperimentResult:
    """Train every run not yet finished, then write results.csv/.md/.png in the experiment
    folder. A run that fails is recorded and the others go on; Ctrl-C stops the experiment
    (re-running the same command continues it)."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {parallel}")
    exp = load_experiment(path)
    folder = exp.folder(runs_dir)
    todo = [(s, _action(s, folder / s.name, rerun_failed)) for s in exp.runs]
    todo = [(s, a) for s, a in todo if a in ("train", "retrain", "resume")]
    log(f"experiment '{exp.name}': {len(exp.runs)} runs, {len(todo)} to train, in {folder}")
    try:
        if parallel == 1:
            for i, (spec, action) in enumerate(todo, 1):
                log(f"=== run {i}/{len(todo)}: {spec.name} ({action}) ===")
                _run_inprocess(spec, folder, action, log)
        else:
            _run_parallel(todo, folder, parallel, log)
    except (KeyboardInterrupt, InterruptedRun):
        write_results(exp, folder)
        raise InterruptedRun(
            f"experiment '{exp.name}' interrupted; run the same `cnnlab experiment {exp.source}` "
            f"again to continue (finished runs are reused, interrupted ones resume from their "
            f"last checkpoint or start over)"
        ) from None
    result = write_results(exp, folder)
    log(result.markdown)
    log(f"results: {folder / 'results.md'}, results.csv, results.png")
    return result


def _status(run_dir: Path) -> dict[str, Any]:
    try:
        return read_json(run_dir / "run.json")
    except (OSError, ValueError):
        return {}


def _action(spec: RunSpec, run_dir: Path, rerun_failed: bool) -> str:
    """train | reuse | resume | retrain | keep failed; a finished run whose config differs from
    the experiment's is an error, never silently reported under the new settings."""
    status = _status(run_dir).get("status")
    if status is None:
        return "train"
    changed = _changed_keys(spec.config, run_dir)
    if changed and status == "finished":
        raise ConfigError(
            f"run {run_dir} was trained with other settings ({', '.join(changed[:4])}); delete "
            f"that folder to retrain it, or give the experiment a new name"
        )
    if status == "finished":
        return "reuse"
    if status in ("failed", "diverged"):
        return "retrain" if rerun_failed or changed else f"keep {status}"
    # interrupted, or killed while preparing/running: continue from its checkpoint if any
    has_ckpt = any((run_dir / n).exists() for n in ("last.ckpt", "last.prev.ckpt"))
    return "resume" if has_ckpt and not changed else "retrain"


def _changed_keys(cfg: C.Config, run_dir: Path) -> list[str]:
    try:
        saved = C.load_yaml(run_dir / "config.yaml")
    except ConfigError:
        return []  # a run that failed before writing its config has nothing to compare
    want, have = _flat_config(cfg), _flat_config(saved)
    return [f"{k}: {have.get(k)!r} -> {v!r}" for k, v in want.items() if have.get(k) != v]


def _flat_config(cfg: C.Config) -> dict[str, Any]:
    d = cfg.to_dict()
    flat = {f"{s}.{k}": v for s in C.SECTIONS for k, v in d[s].items()}
    return {k: v for k, v in flat.items() if k not in NOT_COMPARED}


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return text if isinstance(e, CnnlabError) else f"{type(e).__name__}: {text}".rstrip(": ")


def _record_failure(run_dir: Path, error: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    if _status(run_dir).get("status") != "diverged":  # divergence has its own status and reason
        runs.write_status(run_dir, status="failed", error=error)


def _run_inprocess(spec: RunSpec, folder: Path, action: str, log: Log) -> None:
    from cnnlab import api

    run_dir = folder / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "a" if action == "resume" else "w", encoding="utf-8") as fh:

        def tee(line: str) -> None:
            log(line)
            fh.write(line + "\n")
            fh.flush()

        try:
            if action == "resume":
                api.train(resume=run_dir, log=tee)
            else:
                api.train(spec.config, name=spec.name, runs_dir=folder,
                          force=action == "retrain", log=tee)  # fmt: skip
        except (KeyboardInterrupt, InterruptedRun):
            # Ctrl-C while preparing leaves "failed" behind; it is no failure of the run's own
            if _status(run_dir).get("status") not in ("finished", "diverged"):
                runs.write_status(run_dir, status="interrupted")
            raise
        except Exception as e:  # one bad run must not end the experiment
            tee(f"run failed: {_one_line(e)}")
            _record_failure(run_dir, _one_line(e))


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run_parallel(todo: list[tuple[RunSpec, str]], folder: Path, n: int, log: Log) -> None:
    """N `cnnlab train` subprocesses at a time, each with its share of the CPU threads."""
    threads = max(1, available_cpus() // n)
    pending, active = list(todo), {}
    try:
        while pending or active:
            while pending and len(active) < n:
                spec, action = pending.pop(0)
                active[_start(spec, folder, action, threads)] = spec
                log(f"started {spec.name} ({action}, {threads} threads): {folder / spec.name}")
            time.sleep(0.2)
            for proc, spec in list(active.items()):
                if proc.poll() is not None:
                    del active[proc]
                    log(f"{spec.name}: {_finish(proc, folder / spec.name)}")
    except KeyboardInterrupt:
        # children live in their own sessions: one SIGTERM each = one checkpoint-and-stop
        for proc in active:
            proc.terminate()
        for proc, spec in active.items():
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            # stopped by us, not failed: a re-run resumes or restarts it
            if _status(folder / spec.name).get("status") not in ("finished", "diverged"):
                runs.write_status(folder / spec.name, status="interrupted")
        raise


def _start(spec: RunSpec, folder: Path, action: str, threads: int) -> subprocess.Popen:
    run_dir = folder / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "cnnlab", "train", "--threads", str(threads)]
    if action == "resume":
        cmd += ["--resume", str(run_dir)]
    else:
        planned = run_dir / "planned_config.yaml"  # the resolved config this run is asked for
        write_text(planned, C.to_yaml(spec.config))
        cmd += ["--config", str(planned), "--name", spec.name, "--runs-dir", str(folder)]
        cmd += ["--force"] if action == "retrain" else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # closing our handle right away is fine: the child holds its own copy of the descriptor
    with open(run_dir / "train.log", "a" if action == "resume" else "w", encoding="utf-8") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip


def _finish(proc: subprocess.Popen, run_dir: Path) -> str:
    status = _status(run_dir).get("status")
    if proc.returncode == 0 or status in TERMINAL or status == "interrupted":
        return status or "unknown"
    errors = [ln for ln in _tail(run_dir / "train.log") if ln.startswith("error:")]
    error = errors[-1][len("error:") :].strip() if errors else f"exit code {proc.returncode}"
    _record_failure(run_dir, error)
    return f"failed: {error}"


def _tail(path: Path, n: int = 50) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]
    except OSError:
        return []


# ---------------------------------------------------------------------------------------------
# results


def diagnose(status: dict[str, Any], test: dict[str, Any] | None) -> str:
    """A flag for runs whose number hides a broken model (USERS.md: "predicts one class")."""
    if status.get("status") == "diverged":
        return "diverged"
    if not test:
        return ""
    loss = test.get("loss")
    if loss is not None and not math.isfinite(loss):
        # training loss stayed finite but the weights blew up: the accuracy is meaningless
        return "non-finite test loss"
    histogram = test.get("predicted_class_histogram") or []
    if sum(1 for count in histogram if count) == 1:
        return "predicts one class"
    accuracy, majority = test.get("accuracy"), test.get("majority_class_rate")
    if accuracy is not None and majority is not None and accuracy <= majority + 0.01:
        return "no better than the majority class"
    return ""


def stop_kind(status: dict[str, Any]) -> str:
    """The short why-it-stopped of the table: early stop, max epochs, diverged, failed, ..."""
    state = status.get("status") or "not run"
    if state != "finished":
        return state
    reason = status.get("stop_reason") or ""
    return "early stop" if reason.startswith("early stop") else reason or "finished"


def run_row(spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    status = _status(run_dir)
    history = _history(run_dir)
    test = val = None
    if status.get("status") == "finished":
        # data without a test split gets val.json instead: good for the diagnosis, but its
        # accuracy chose the best epoch, so it is never shown as a test accuracy
        test = _read_optional(run_dir / "test.json")
        val = None if test else _read_optional(run_dir / "val.json")
    best_val = status.get("best_val_acc")
    if best_val is None and history:
        best_val = max(h["val_acc"] for h in history)
    best_val = None if best_val is None else round(best_val, 6)  # float32 noise off the CSV
    best_epoch = status.get("best_epoch")
    # the epochs' own times (train + validation) add up across resumes; run.json's wall time
    # covers only the last session of a resumed run
    times = [h["epoch_time_s"] for h in history if "epoch_time_s" in h]
    wall = round(sum(times), 1) if times else status.get("wall_time_s")
    epochs = status.get("epochs_run", len(history) if history else None)
    row: dict[str, Any] = {"name": spec.name}
    for key in spec.settings:
        section, leaf = key.split(".")
        row[key] = getattr(getattr(spec.config, section), leaf)
    row.update(
        seed=spec.seed, status=status.get("status") or "not run", stopped=stop_kind(status),
        stop_reason=status.get("stop_reason") or "", best_val_acc=best_val,
        best_epoch=None if best_epoch is None else best_epoch + 1,  # 1-based, as in the logs
        epochs_run=epochs, test_acc=None if test is None else test.get("accuracy"),
        wall_time_s=wall, s_per_epoch=round(wall / epochs, 2) if wall and epochs else None,
        params=status.get("params"), diagnosis=diagnose(status, test or val),
        error=status.get("error") or "",
    )  # fmt: skip
    return row


def _read_optional(path: Path) -> dict[str, Any] | None:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def _history(run_dir: Path) -> list[dict[str, float]]:
    try:
        with open(run_dir / "metrics.csv", encoding="utf-8") as fh:
            return [{k: float(v) for k, v in r.items() if v} for r in csv.DictReader(fh)]
    except (OSError, ValueError):
        return []


def write_results(exp: Experiment, folder: Path) -> ExperimentResult:
    """results.csv (one row per run), results.md (seeds grouped) and results.png."""
    rows = [run_row(spec, folder / spec.name) for spec in exp.runs]
    columns = ["name", *exp.keys, *[k for k in rows[0] if k not in exp.keys and k != "name"]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if r.get(k) is None else r.get(k) for k in columns} for r in rows)
    write_text(folder / "results.csv", buf.getvalue())
    groups = _groups(exp, rows)
    table = markdown_table(exp, groups)
    failures = [f"- `{r['name']}`: {r['error']}" for r in rows if r["error"]]
    text = [f"# Experiment {exp.name}", "", f"From `{exp.source}`; {len(rows)} runs.", "", table]
    text += ["", "Failed runs (retrain with `--rerun-failed`):", "", *failures] if failures else []
    write_text(folder / "results.md", "\n".join(text) + "\n")
    plot_results(exp, folder, groups, folder / "results.png")
    return ExperimentResult(exp.name, folder, rows, table)


def _groups(exp: Experiment, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec, row in zip(exp.runs, rows, strict=True):
        groups.setdefault(spec.label, []).append(row)
    return groups


def mean_std(values: list[float], scale: float = 100.0) -> str:
    """'85.20 ± 1.31' (sample std over seeds), or '85.20' for one value, '–' for none."""
    if not values:
        return "–"
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values) * scale:.2f}"


def _span(values: list[Any]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _counted(items: list[str], total: int) -> str:
    items = [i for i in items if i]
    if len(set(items)) == 1 and len(items) == total:
        return items[0]
    return ", ".join(f"{i} ({items.count(i)}/{total})" for i in dict.fromkeys(items))


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    return Path(value).name if key in PATH_KEYS else str(value)


def markdown_table(exp: Experiment, groups: dict[str, list[dict[str, Any]]]) -> str:
    """One line per configuration, seeds pooled: mean ± std where there is more than one."""
    first = [rows[0] for rows in groups.values()]
    # columns for the keys that actually differ; the rest are the same for every row
    keys = [k for k in exp.keys if len({repr(r[k]) for r in first}) > 1]
    head = ["configuration", *keys, "runs", "best val acc (%)", "test acc (%)",
            "best epoch", "epochs", "stopped", "wall time (s)", "s/epoch", "params", "note"]  # fmt: skip
    tests = {label: [r["test_acc"] for r in rows if r["test_acc"] is not None]
             for label, rows in groups.items()}  # fmt: skip
    means = {label: statistics.fmean(v) for label, v in tests.items() if v}
    top = sorted(means.values(), reverse=True)
    # bold only a strict winner: a tie has no best
    best = max(means, key=means.get) if len(top) > 1 and top[0] > top[1] else None
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, rows in groups.items():
        n_ok = sum(r["status"] == "finished" for r in rows)
        test = mean_std(tests[label])
        notes = [r["diagnosis"] or (r["status"] if r["status"] != "finished" else "") for r in rows]
        walls = [r["wall_time_s"] for r in rows if r["wall_time_s"] is not None]
        per_epoch = [r["s_per_epoch"] for r in rows if r["s_per_epoch"] is not None]
        cells = [
            label, *[_cell(k, rows[0][k]) for k in keys],
            str(len(rows)) if n_ok == len(rows) else f"{n_ok}/{len(rows)} finished",
            mean_std([r["best_val_acc"] for r in rows if r["best_val_acc"] is not None]),
            f"**{test}**" if label == best else test,
            _span([r["best_epoch"] for r in rows]), _span([r["epochs_run"] for r in rows]),
            _counted([r["stopped"] for r in rows], len(rows)),
            f"{statistics.fmean(walls):.1f}" if walls else "–",
            f"{statistics.fmean(per_epoch):.2f}" if per_epoch else "–",
            f"{rows[0]['params']:,}" if rows[0]["params"] else "–",
            _counted(notes, len(rows)) or "",
        ]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    seeds = f"mean ± sample std over seeds {exp.seeds}" if len(exp.seeds) > 1 else "one seed"
    bold = "; **bold**: the best test accuracy" if best else ""
    lines += [
        "",
        f"Accuracies in %, {seeds}; best epoch counts from 1; wall time: the epochs' training + "
        f"validation time{bold}.",
    ]
    if any(r["status"] == "finished" and r["test_acc"] is None for g in groups.values() for r in g):
        lines += [
            "Runs on data without a test split show no test accuracy (the validation split chose "
            "the best epoch, so its accuracy is optimistic); set data.test_fraction to hold one out."
        ]
    return "\n".join(lines)


def plot_results(exp: Experiment, folder: Path, groups: dict[str, list[dict[str, Any]]],
                 path: Path) -> None:  # fmt: skip
    """Validation-accuracy curves (mean over seeds) overlaid, and test accuracy ± std."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only, no display
    import matplotlib.pyplot as plt

    fig, (ax_curve, ax_bar) = plt.subplots(1, 2, figsize=(13, max(4.0, 0.35 * len(groups) + 2)))
    from matplotlib.ticker import MaxNLocator

    labels, means, stds = [], [], []
    colors = [f"C{i % 10}" for i in range(len(groups))]  # one colour per configuration, both panels
    for color, (label, rows) in zip(colors, groups.items(), strict=True):
        curves = [[h["val_acc"] for h in _history(folder / r["name"])] for r in rows]
        curves = [c for c in curves if c]
        if curves:
            # seeds may stop at different epochs: average whichever seeds reached each epoch
            n = max(map(len, curves))
            mean = [statistics.fmean(c[e] for c in curves if len(c) > e) for e in range(n)]
            ax_curve.plot(range(1, n + 1), mean, "o-", ms=3, color=color, label=label)
        tests = [r["test_acc"] for r in rows if r["test_acc"] is not None]
        labels.append(label)
        means.append(statistics.fmean(tests) if tests else None)
        stds.append(statistics.stdev(tests) if len(tests) > 1 else 0.0)
    ax_curve.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy")
    ax_curve.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_curve.grid(alpha=0.3)
    if ax_curve.lines:
        ax_curve.legend(fontsize=7)
    ax_bar.barh(range(len(labels)), [m or 0.0 for m in means], xerr=stds, capsize=3, color=colors)
    for i, m in enumerate(means):
        # a missing bar must not read as 0 % accuracy
        text = "no test accuracy" if m is None else f"{m:.1%}"
        ax_bar.text(0.01 if m is None else m + 0.01, i, text, va="center", fontsize=7)
    ax_bar.set_yticks(range(len(labels)), labels, fontsize=7)
    ax_bar.invert_yaxis()
    ax_bar.set(xlabel="test accuracy", xlim=(0, 1), title="test accuracy (± std over seeds)")
    fig.suptitle(f"experiment {exp.name}")
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


__all__ = [
    "Experiment", "ExperimentResult", "RunSpec", "load_experiment", "run_experiment",
    "write_results", "diagnose", "run_label", "mean_std",
]  # fmt: skip
