"""Planning: an experiment file -> a validated list of named runs; nothing trains here."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab import config as C
from cnnlab import runs
from cnnlab.errors import ConfigError, suggest

TOP_KEYS = ("name", "description", "base", "grid", "runs", "seeds")
PATH_KEYS = ("data.path", "data.data_dir", "model.weights")
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
            base = C.read_yaml(file, "base config") or {}
        except ConfigError as e:
            problems.append(str(e))
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
    """The run's resolved config, checked by the same rules a `cnnlab train` plan applies."""
    from cnnlab.api import resolve_config
    from cnnlab.errors import CnnlabError
    from cnnlab.plan import check_paths, model_info_for, plan_inputs

    cfg = C.Config(name=name)
    for key, value in {**base, **settings, "train.seed": seed}.items():
        cfg.set(key, value)
    cfg = resolve_config(cfg)
    try:
        check_paths(cfg)
        plan_inputs(cfg, model_info_for(cfg, fetch=False))
    except CnnlabError as e:
        raise ConfigError(str(e)) from None
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
