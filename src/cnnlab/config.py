"""One validated configuration per run: typed dataclasses, loaded from YAML, overridden from the
command line, saved resolved in the run folder and stored in checkpoints as plain data.

    cnnlab train --config my.yaml --epochs 5 --set optim.lr=0.05

YAML has one section per dataclass (`data`, `model`, `optim`, `train`) plus `name`. Unknown keys
and wrong types are errors that name the key and the fix.
"""

from __future__ import annotations

import builtins
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cnnlab.errors import ConfigError, suggest, unknown

# Fields with a fixed set of values are Literal types: `coerce` checks them when they are set
# (from YAML, the CLI or the API), and the CLI's --help lists them from here.
Dataset = Literal["fashion-mnist", "folder", "csv"]
Augment = Literal["default", "none", "light", "strong"]
Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["plateau", "cosine", "step", "onecycle", "none"]
Precision = Literal["32", "16-mixed", "bf16-mixed"]
Device = Literal["auto", "cpu", "cuda", "mps"]
Balance = Literal["none", "weights", "sampler"]
Cache = Literal["auto", "memory", "disk", "off"]
OnBadImage = Literal["skip", "fail"]
Init = Literal["default", "paper", "kaiming", "xavier"]
Monitor = Literal["val_acc", "val_loss"]
AuditMode = Literal["fast", "full", "off"]
Logger = Literal["csv", "tensorboard"]
# a learning rate, or "auto": the lr finder picks it before training (engine/lr_finder.py)
LearningRate = float | Literal["auto"]


def choices(typ: Any) -> tuple[str, ...]:
    """The allowed values of a Literal field; () for any other type."""
    return typing.get_args(typ) if typing.get_origin(typ) is Literal else ()


@dataclass
class DataConfig:
    dataset: Dataset = "fashion-mnist"  # or "folder" / "csv" (set automatically by --data PATH)
    path: str | None = None  # image folder or CSV manifest
    data_dir: str | None = None  # where Fashion-MNIST's IDX files are looked for first
    val_fraction: float = 0.1  # carved, stratified, from train when there is no val split
    test_fraction: float = 0.0  # for a single class-per-folder tree
    image_size: int | None = None  # None: the weights' size, 28 for Fashion-MNIST, else the model's
    channels: int | None = None  # None: 1 for Fashion-MNIST, 3 for image folders and pretrained
    augment: Augment = "default"  # the data's own: none for Fashion-MNIST, light for folders
    batch_size: int = 64  # twice the updates of 128 for the same compute: better in 4 epochs
    workers: int = 0  # 0 loads in the main process, the fastest choice for small images on 2 cores
    balance: Balance = "none"  # class-weighted loss ("weights") or a balanced sampler
    cache: Cache = "auto"
    subset: int | None = None  # use only the first N training images (quick checks)
    on_bad_image: OnBadImage = "skip"
    # resume a run although files of its split vanished from the folder (they are skipped)
    allow_changed_data: bool = False
    # dataset audit of image folders and CSVs before training (cnnlab.audit.run): fast = exact
    # and perceptual-hash duplicates, inside and across the run's splits
    audit: AuditMode = "fast"


@dataclass
class ModelConfig:
    name: str = "smallcnn"
    pretrained: bool = False
    weights: str | None = None  # a .safetensors/.pth file to start from
    dropout: float | None = None  # head dropout; None: the model's default
    init: Init = "default"  # default | paper | kaiming | xavier
    freeze_backbone: bool = False
    unfreeze_at: int | None = None  # epoch at which a frozen backbone starts training
    # keep the backbone's BatchNorm in inference mode even while it trains (Keras' advice for
    # fine-tuning: small batches would otherwise overwrite the pretrained statistics)
    bn_eval: bool = False
    channels_last: bool = True  # faster convolutions on CPU and on tensor cores


@dataclass
class OptimConfig:
    optimizer: Optimizer = "sgd"
    lr: LearningRate = 0.1  # with batch norm and one-cycle, SGD takes a high peak rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # L2 penalty
    backbone_lr: float | None = None  # None: same as lr (fine-tuning often uses lr/10)
    schedule: Schedule = "onecycle"
    plateau_patience: int = 2  # epochs without val-accuracy gain before lr /= plateau_factor
    plateau_factor: float = 0.1
    step_size: int = 10
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    grad_clip: float | None = None


@dataclass
class TrainConfig:
    epochs: int = 4  # Fashion-MNIST reaches 91% test in 4 (3.76 TFLOP with smallcnn)
    seed: int = 0
    device: Device = "auto"
    precision: Precision = "32"
    deterministic: bool = False
    early_stopping: bool = True
    monitor: Monitor = "val_acc"
    patience: int = 5
    min_delta: float = 0.0
    checkpoint_every_n_steps: int | None = None  # also save mid-epoch, for long epochs
    devices: int = 1
    num_nodes: int = 1
    sync_batchnorm: bool = False
    threads: int | None = None  # torch intra-op threads; None: torch's default
    # metrics.csv is always written; "tensorboard" adds event files under RUN/tensorboard/
    logger: Logger = "csv"


@dataclass
class Config:
    name: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Keys the user set (YAML, CLI, API), as "section.key": recipes fill in only the others,
    # and warnings speak only of these. Not saved: a saved config is all explicit.
    # (builtins.set: inside this class, `set` is the method below)
    explicit: builtins.set[str] = field(default_factory=set, compare=False, repr=False)
    notes: list[str] = field(default_factory=list, compare=False, repr=False)  # recipe lines

    def to_dict(self) -> dict[str, Any]:
        sections = {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}
        return {"name": self.name, **sections}

    def set(self, dotted: str, value: Any) -> None:
        """Set `section.key` (or a key unique across sections) from a string or typed value."""
        section, key = resolve_key(dotted)
        obj = self if section is None else getattr(self, section)
        setattr(obj, key, coerce(value, _field_type(type(obj), key), dotted))
        self.explicit.add(key if section is None else f"{section}.{key}")

    def is_set(self, dotted: str) -> bool:
        return dotted in self.explicit


SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig}


# the natural spellings `train(model="resnet18", data="photos/")` (and --model/--data)
KEY_ALIASES = {"model": "model.name", "data": "data.path"}


def resolve_key(dotted: str) -> tuple[str | None, str]:
    if dotted == "name":
        return None, "name"
    dotted = KEY_ALIASES.get(dotted, dotted)
    if "." in dotted:
        section, key = dotted.split(".", 1)
        if section not in SECTIONS:
            raise unknown("config section", section, SECTIONS)
        names = [f.name for f in dataclasses.fields(SECTIONS[section])]
        if key not in names:
            full = [f"{section}.{n}" for n in names]
            raise ConfigError(
                f"unknown config key '{dotted}'{suggest(dotted, full)}; see `cnnlab train --help`"
            )
        return section, key
    owners = [
        s for s, cls in SECTIONS.items() if dotted in {f.name for f in dataclasses.fields(cls)}
    ]
    if len(owners) == 1:
        return owners[0], dotted
    all_keys = [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]
    raise ConfigError(f"unknown config key '{dotted}'{suggest(dotted, all_keys)}")


def _field_type(cls: type, key: str) -> Any:
    return typing.get_type_hints(cls)[key]


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's type, or say which key wants what."""
    origin = typing.get_origin(typ)
    if origin is Literal:
        allowed = typing.get_args(typ)
        if str(value) not in allowed:
            raise unknown(f"value for {key}", str(value), allowed)
        return str(value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if type(None) in typing.get_args(typ) and (
            value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))
        ):
            return None
        literals = [v for a in args for v in choices(a)]
        if literals and str(value) in literals:  # float | Literal["auto"]: "auto" is a value
            return str(value)
        try:
            return coerce(value, args[0], key)
        except ConfigError:
            if not literals:
                raise
            name = getattr(args[0], "__name__", str(args[0]))
            alternatives = " or ".join(repr(v) for v in literals)
            raise ConfigError(
                f"config key '{key}' needs a {name} or {alternatives}, got {value!r}"
            ) from None
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            if isinstance(value, dict | list):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        name = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"config key '{key}' needs a {name}, got {value!r}") from None
    return value


def from_dict(d: dict[str, Any]) -> Config:
    if not isinstance(d, dict):
        raise ConfigError(
            "a config file must hold a mapping of sections (data, model, optim, train)"
        )
    cfg = Config()
    for top, value in d.items():
        if top == "name":
            cfg.name = None if value is None else str(value)
        elif top in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config section '{top}' must be a mapping of keys to values")
            for key, v in value.items():
                cfg.set(f"{top}.{key}", v)
        else:
            raise unknown("config section", top, [*SECTIONS, "name"])
    return cfg


def read_yaml(path: str | Path, kind: str = "config file") -> Any:
    """Parsed YAML, or a one-line ConfigError naming the file (and the line of a syntax error)."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{kind} {path} not found; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{kind} {path} is a folder; pass a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{kind} {path} is not a text file; pass a YAML file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {kind} {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{kind} {path} is not valid YAML{where}; fix the syntax") from None


def load_yaml(path: str | Path) -> Config:
    return from_dict(read_yaml(path) or {})


def load_yaml_text(text: str) -> Config:
    return from_dict(yaml.safe_load(text) or {})


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def validate(cfg: Config) -> Config:
    """Reject impossible values before anything heavy happens; returns cfg for chaining."""
    d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.train
    checks = [
        (d.batch_size >= 1, f"batch size must be at least 1, got {d.batch_size}"),
        (0.0 <= d.val_fraction < 1.0, f"val fraction must be in [0, 1), got {d.val_fraction}"),
        (0.0 <= d.test_fraction < 1.0, f"test fraction must be in [0, 1), got {d.test_fraction}"),
        (d.val_fraction + d.test_fraction < 1.0, "val + test fractions must leave training data"),
        (d.workers >= 0, f"workers must be 0 or more, got {d.workers}"),
        (d.subset is None or d.subset >= 1, f"subset must be at least 1, got {d.subset}"),
        (d.image_size is None or d.image_size >= 8, f"image size must be >= 8, got {d.image_size}"),
        (d.channels in (None, 1, 3), f"channels must be 1 or 3, got {d.channels}"),
        (d.dataset == "fashion-mnist" or d.path, f"dataset '{d.dataset}' needs --data PATH"),
        (
            m.dropout is None or 0.0 <= m.dropout < 1.0,
            f"dropout must be in [0, 1), got {m.dropout}",
        ),
        (
            o.lr == "auto" or (math.isfinite(o.lr) and o.lr > 0),
            f"learning rate must be a number > 0, got {o.lr}",
        ),
        (
            o.lr != "auto" or o.backbone_lr is None,
            "--lr auto finds one rate for every layer: with --backbone-lr give --lr too "
            "(`cnnlab lr-find` shows the curve to choose both from)",
        ),
        (
            o.backbone_lr is None or (math.isfinite(o.backbone_lr) and o.backbone_lr >= 0),
            f"backbone lr must be a number >= 0, got {o.backbone_lr}",
        ),
        (
            math.isfinite(o.weight_decay) and o.weight_decay >= 0,
            f"weight decay must be a number >= 0, got {o.weight_decay}",
        ),
        (0.0 <= o.momentum < 1.0, f"momentum must be in [0, 1), got {o.momentum}"),
        (0.0 <= o.label_smoothing < 1.0, "label smoothing must be in [0, 1)"),
        (0.0 < o.plateau_factor < 1.0, "plateau factor must be in (0, 1)"),
        (o.plateau_patience >= 0 and t.patience >= 0, "patience must be 0 or more"),
        (o.step_size >= 1, "step size must be at least 1 epoch"),
        (o.grad_clip is None or o.grad_clip > 0, "grad clip must be > 0"),
        (t.epochs >= 1, f"epochs must be at least 1, got {t.epochs}"),
        (t.devices >= 1 and t.num_nodes >= 1, "devices and num_nodes must be at least 1"),
        (t.threads is None or t.threads >= 1, "threads must be at least 1"),
        (
            t.checkpoint_every_n_steps is None or t.checkpoint_every_n_steps >= 1,
            "checkpoint_every_n_steps must be at least 1",
        ),
        (m.unfreeze_at is None or m.unfreeze_at >= 1, "unfreeze_at must be an epoch >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return cfg


def lint(cfg: Config) -> list[str]:
    """Settings that are legal but contradictory or have no effect: warnings shown before training."""
    d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.train
    notes = []
    # only about what the user set: a short run with the default patience is not a mistake
    if t.early_stopping and cfg.is_set("train.patience") and t.patience >= t.epochs:
        notes.append(
            f"early-stopping patience ({t.patience}) >= epochs ({t.epochs}): it can never trigger"
        )
    if o.schedule == "plateau" and o.plateau_patience >= t.epochs:
        notes.append(f"plateau patience ({o.plateau_patience}) >= epochs: the lr never drops")
    if m.freeze_backbone and not (m.pretrained or m.weights):
        notes.append(
            "freeze_backbone without pretrained weights trains only a head on random features"
        )
    if m.bn_eval and not (m.pretrained or m.weights):
        notes.append("bn_eval without pretrained weights keeps BatchNorm at its initial statistics")
    if m.unfreeze_at is not None and not m.freeze_backbone:
        notes.append("unfreeze_at has no effect without freeze_backbone")
    if m.unfreeze_at is not None and m.unfreeze_at >= t.epochs:
        notes.append(
            f"unfreeze_at ({m.unfreeze_at}) >= epochs ({t.epochs}): the backbone never trains"
        )
    if o.backbone_lr is not None and m.freeze_backbone and m.unfreeze_at is None:
        notes.append("backbone_lr has no effect while the backbone stays frozen")
    if cfg.is_set("data.audit") and d.audit != "off" and d.dataset == "fashion-mnist":
        notes.append(
            "audit applies to image folders and CSVs; the built-in Fashion-MNIST is audited "
            "with `cnnlab audit fashion-mnist`"
        )
    if d.balance != "none" and d.dataset == "fashion-mnist":
        notes.append("Fashion-MNIST is balanced (6,000 images per class): balance has no effect")
    if o.warmup_epochs >= t.epochs:
        notes.append(f"warmup_epochs ({o.warmup_epochs}) >= epochs: training never leaves warm-up")
    return notes
