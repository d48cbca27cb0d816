"""One typed plan per run, built once before anything heavy runs or anything is written.

    config  ->  RunPlan (model, inputs the weights imply, device, processes, run folder, resume)
            ->  data  ->  model  ->  engine  ->  evaluation / report / export

Every check that can fail without touching the data (unknown model, pretrained weights that do
not exist or are not installed, a device that is not there, a batch that does not split over
the processes, a missing path) fails here, so a bad command never leaves a run folder behind.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab import config as C
from cnnlab.engine.devices import DevicePlan, plan_device
from cnnlab.errors import ConfigError, DataError
from cnnlab.models import ModelInfo, get_model_info, list_models
from cnnlab.models.spec import PreprocessSpec

MAX_IMAGE_SIZE = 2048  # a 2048 px RGB image is 50 MB as float; beyond that, nothing fits a batch
MANIFEST = "split_manifest.csv"


@dataclass(frozen=True)
class InputPlan:
    """What the model is fed: the weights' preprocessing, or None to measure mean/std on the
    training split (models from scratch)."""

    preprocess: PreprocessSpec | None
    image_size: int
    in_chans: int


@dataclass
class RunPlan:
    config: C.Config  # resolved and validated
    run_dir: Path
    model: ModelInfo | None  # None: a user's own module (cnnlab.fit)
    inputs: InputPlan
    device: DevicePlan
    resume_from: Path | None = None  # the checkpoint a resumed run continues from
    notes: list[str] = field(default_factory=list)  # warnings shown before training
    recipe: list[str] = field(default_factory=list)  # defaults chosen for this run, and why

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def manifest(self) -> Path | None:
        """The saved split of a run being resumed (its data must be the same files)."""
        path = self.run_dir / MANIFEST
        return path if self.resume_from is not None and path.exists() else None


def make_plan(cfg: C.Config, run_dir: Path, *, resume_from: Path | None = None) -> RunPlan:
    info = model_info_for(cfg)
    check_paths(cfg)
    check_logger(cfg)
    inputs = plan_inputs(cfg, info)
    device = plan_device(cfg)
    notes = [*C.lint(cfg), *device.notes]
    recipe = [*cfg.notes, *plan_memory_format(cfg, info, device.accelerator)]
    return RunPlan(cfg, Path(run_dir), info, inputs, device, resume_from, notes, recipe)


def make_user_plan(cfg: C.Config, run_dir: Path, preprocess: PreprocessSpec) -> RunPlan:
    """The plan for `cnnlab.fit`: the user brings the model and the (already prepared) data."""
    if cfg.model.freeze_backbone or cfg.model.pretrained:
        raise ConfigError(
            "freeze_backbone/pretrained apply to cnnlab's models; freeze your module's "
            "parameters yourself (requires_grad_(False)) before cnnlab.fit"
        )
    check_logger(cfg)
    device = plan_device(cfg)
    c, h, _ = preprocess.input_size
    inputs = InputPlan(preprocess, h, c)
    return RunPlan(cfg, Path(run_dir), None, inputs, device, None, [*C.lint(cfg), *device.notes])


def plan_memory_format(cfg: C.Config, info: ModelInfo, accelerator: str) -> list[str]:
    """The training memory format where the user left it unset: channels_last, except on a CPU
    for a family whose steps measured faster in NCHW (`ModelInfo.cpu_channels_last`). Written
    into the config, so config.yaml records it and a resumed run keeps it."""
    if cfg.is_set("model.channels_last") or accelerator != "cpu" or info.cpu_channels_last:
        return []
    cfg.model.channels_last = False
    return [
        f"memory format: NCHW ({info.family} trains faster so on a CPU: benchmarks/RESULTS.md, "
        f"'Memory format per model'); --channels-last overrides"
    ]


def model_info_for(cfg: C.Config, *, fetch: bool = True) -> ModelInfo:
    """The model's registry entry, with its pretrained weights present when asked for (or, with
    fetch=False, at least obtainable: installed, or downloadable when online)."""
    info = get_model_info(cfg.model.name)
    if not cfg.model.pretrained:
        return info
    if info.weights is None:
        have = [n for n in list_models() if get_model_info(n).weights is not None]
        raise ConfigError(
            f"model '{info.name}' has no pretrained weights in cnnlab; models that have: "
            f"{', '.join(have)}; drop --pretrained, or start from a file with --weights FILE"
        )
    if not info.weights.available():
        if info.weights.fetch is None or not fetch:
            if info.weights.fetch is not None:
                return info
            raise ConfigError(
                f"pretrained weights for '{info.name}' are not installed: {info.weights.where}"
            )
        info.weights.fetch()  # downloads when online, else a one-line error naming the file
    return info


def plan_inputs(cfg: C.Config, info: ModelInfo) -> InputPlan:
    """The input size, channels and preprocessing for this model and data.

    Pretrained weights bring their own preprocessing; models from scratch get the data's own
    statistics. Fashion-MNIST trains at its native 28 px in 1 channel unless asked otherwise
    (the classic architectures have small-input variants, see `cnnlab summary`); image folders
    train in colour at the model's native size."""
    d = cfg.data
    if cfg.model.pretrained:
        spec = info.weights.preprocess
        chans = spec.input_size[0]
        if d.channels is not None and d.channels != chans:
            raise ConfigError(
                f"pretrained '{info.name}' takes {chans} channels, not --channels {d.channels}; "
                f"grayscale images are replicated to RGB for it: drop --channels"
            )
        size = d.image_size or spec.input_size[1]
        spec = dataclasses.replace(spec, input_size=(chans, size, size))
        return InputPlan(spec, size, chans)
    if d.dataset == "fashion-mnist":
        return InputPlan(None, d.image_size or 28, d.channels or 1)
    return InputPlan(None, d.image_size or info.default_input, d.channels or 3)


def check_logger(cfg: C.Config) -> None:
    """--logger tensorboard without the package: said now, before any folder exists."""
    if cfg.train.logger == "tensorboard":
        from cnnlab.engine.tensorboard import require_tensorboard

        require_tensorboard()


def check_paths(cfg: C.Config) -> None:
    """Every path the user gave exists and is of the right kind."""
    d, m = cfg.data, cfg.model
    if d.image_size is not None and d.image_size > MAX_IMAGE_SIZE:
        raise ConfigError(
            f"--image-size {d.image_size} is too large (at most {MAX_IMAGE_SIZE}); the classic "
            f"models train at 224-299 px"
        )
    if d.path is not None:
        path = Path(d.path).expanduser()
        if not path.exists():
            raise DataError(f"data path {path} does not exist; pass an image folder or a CSV")
        if d.dataset == "csv" and not path.is_file():
            raise DataError(f"data path {path} is not a CSV file")
        if d.dataset == "folder" and not path.is_dir():
            raise DataError(
                f"data path {path} is not a folder; pass an image folder or a .csv manifest"
            )
    if d.data_dir is not None and not Path(d.data_dir).expanduser().is_dir():
        raise DataError(
            f"--data-dir {d.data_dir} is not a folder; point it at the folder holding the "
            f"Fashion-MNIST .gz files, or drop it to use the installed copy"
        )
    if m.weights is not None and not Path(m.weights).expanduser().is_file():
        raise ConfigError(f"--weights {m.weights} is not a file; pass a .safetensors or .pth file")
