"""The learning-rate finder on a run: the model, data, optimizer and loss training would use.

    cnnlab lr-find --epochs 4                  # runs/lr-find-smallcnn-fashion-mnist-<time>/
    cnnlab lr-find --name photos --data photos/ --pretrained   # runs/photos/lr_find.{png,json}
    cnnlab train --name photos --data photos/ --pretrained --lr auto

`find_lr(plan, prepared)` sweeps the module `engine.trainer.build_module` builds for the run
(engine/lr_finder.py: the sweep, the three rules, the bit-exact restore). `cnnlab lr-find`
(`run_lr_find`) prepares the data and model exactly as training does (`training.prepare`) and
writes lr_find.png/json into a run folder; `--lr auto` (`choose_lr`) runs the same sweep on the
prepared model inside `training.start_run`, before training, and writes the chosen rate into
config.yaml, so a resume and a rerun use it without sweeping again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab import config as C
from cnnlab import runs
from cnnlab.errors import ConfigError
from cnnlab.fsio import write_text

if TYPE_CHECKING:
    from cnnlab.engine.lr_finder import LRFindResult, LRFindSettings
    from cnnlab.plan import RunPlan
    from cnnlab.training import Prepared

Log = Callable[[str], None]
# the sweep scales every parameter group by its configured share of optim.lr; with lr auto
# (and no backbone_lr: config.validate) all groups share one rate, so any placeholder works
AUTO_PLACEHOLDER = 1.0


class NoClearValley(ConfigError):
    """`--lr auto` found no rate the rules agree on (exit code 2, like any config problem)."""


@dataclass
class LRFindRun:
    """What `cnnlab.lr_find` left: the folder holding lr_find.png/json, and the sweep."""

    folder: Path
    result: LRFindResult
    config: C.Config

    @property
    def suggestion(self) -> float | None:
        """optim.lr for the config's schedule, or None ("no clear valley")."""
        return self.result.suggestion

    @property
    def reason(self) -> str:
        return self.result.reason

    def to_dict(self) -> dict[str, Any]:
        """What lr_find.json holds, and the folder."""
        return {
            "folder": str(self.folder),
            **self.result.to_dict(),
            "config": self.config.to_dict(),
        }


def find_lr(
    plan: RunPlan, prepared: Prepared, *, settings: LRFindSettings | None = None
) -> LRFindResult:
    """The sweep on the module, optimizer and training loader a run of `plan` would use; the
    model and every RNG end bit-exactly as they were (engine/lr_finder.py)."""
    import torch

    from cnnlab.engine.lr_finder import LRFindSettings, lr_find
    from cnnlab.engine.trainer import BundleDataModule, build_module, flush_denormal

    cfg = plan.config
    if cfg.optim.lr == "auto":
        cfg = copy.deepcopy(cfg)
        cfg.optim.lr = AUTO_PLACEHOLDER
    module = build_module(cfg, prepared.bundle, prepared.model)
    loader = BundleDataModule(prepared.bundle, cfg).train_dataloader()
    steps = (settings or LRFindSettings()).num_steps
    held_out = None
    if steps > len(loader):  # the sweep would train on some images twice
        held_out = held_out_batch(prepared.bundle.val, cfg.data.batch_size, cfg.train.seed)
    accelerator = plan.device.accelerator
    device = torch.device(accelerator if accelerator in ("cuda", "mps") else "cpu")
    on_cpu = device.type == "cpu"
    module.to(device)
    try:
        with flush_denormal(on_cpu):  # as in training: denormals are slow on x86
            result = lr_find(
                module, loader, settings=settings, seed=cfg.train.seed, held_out=held_out
            )
    finally:
        module.to("cpu")  # where prepare left it: the trainer moves it for the fit
    if held_out is not None:
        result.loss_source = (
            f"losses on {len(held_out[1])} held-out validation images: {steps} steps are more "
            f"than the {len(loader)} batches of the {len(prepared.bundle.train):,} training "
            f"images, and a loss on an image trained on already measures memorisation"
        )
    return result


def held_out_batch(val: Any, size: int, seed: int) -> tuple[Any, Any] | None:
    """`size` validation images and their labels, drawn with `seed`: the fixed batch a sweep
    that revisits training images reads its losses on (a loss on an image trained on already
    measures memorisation). None without a validation split."""
    import torch
    from torch.utils.data import default_collate

    from cnnlab.engine.seeding import derive_seed

    if len(val) == 0:
        return None
    g = torch.Generator().manual_seed(derive_seed(seed, 0x4E1E))
    picked = torch.randperm(len(val), generator=g)[:size].tolist()
    # collated by hand: a DataLoader would draw its base seed from the global generator
    x, y = default_collate([val[i] for i in picked])[:2]
    return x, y


def write_artifacts(result: LRFindResult, folder: Path, cfg: C.Config, title: str) -> None:
    """lr_find.png and lr_find.json (with the config the sweep ran with) in `folder`."""
    from cnnlab.engine.lr_finder import write_lr_find

    write_lr_find(result, folder, title=title, extra={"config": cfg.to_dict()})


def summary_line(result: LRFindResult) -> str:
    if result.suggestion is None:
        return result.reason + source_note(result)  # starts with "no clear valley"
    lr, schedule = result.suggestion, result.schedule
    return (
        f"suggested lr {lr:.3g} for the {schedule} schedule ({result.reason}){source_note(result)}"
    )


def source_note(result: LRFindResult) -> str:
    """Where the losses the rules read came from, when not from the training batches."""
    return f"; {result.loss_source}" if result.loss_source else ""


# ---------------------------------------------------------------------------------------------
# cnnlab lr-find


def run_lr_find(
    plan: RunPlan, *, settings: LRFindSettings | None = None, log: Log = print
) -> LRFindRun:
    """Prepare the data and model as training would, sweep, write lr_find.png/json into
    plan.run_dir. Nothing else in the folder changes (it may be a run's folder); a folder this
    call created is removed again when the set-up fails."""
    from cnnlab.training import prepare

    folder = plan.run_dir
    existed = folder.exists()
    with runs.owned(folder, log):
        try:
            prepared = prepare(plan, log)
            log(f"lr-find: {_sweep_line(settings)}")
            result = find_lr(plan, prepared, settings=settings)
            write_artifacts(result, folder, plan.config, plan.name)
        except BaseException:
            if not existed:
                runs.release_lock(folder)
                _remove_if_empty(folder)
            raise
    log(summary_line(result))
    log(f"lr-find: {folder / 'lr_find.png'}, {folder / 'lr_find.json'}")
    return LRFindRun(folder, result, plan.config)


def _sweep_line(settings: LRFindSettings | None) -> str:
    from cnnlab.engine.lr_finder import LRFindSettings

    s = settings or LRFindSettings()
    return (
        f"{s.num_steps} mini-batches, lr {s.start_lr:g} to {s.end_lr:g} (stops when the "
        f"smoothed loss exceeds {s.diverge_factor:g}x its best); model and RNG restored after"
    )


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


# ---------------------------------------------------------------------------------------------
# --lr auto


def choose_lr(plan: RunPlan, prepared: Prepared, *, log: Log = print) -> float:
    """`--lr auto`: sweep on the prepared model, write lr_find.png/json into the run folder,
    set plan.config.optim.lr to the suggestion (3 significant digits: what a person would
    type, and exactly what a rerun with `--lr` gets) and record it in config.yaml. No clear
    valley is a one-line NoClearValley error that names the plot and the option to give."""
    log(f"--lr auto: {_sweep_line(None)}")
    result = find_lr(plan, prepared)
    write_artifacts(result, plan.run_dir, plan.config, plan.name)
    png = plan.run_dir / "lr_find.png"
    if result.suggestion is None:
        raise NoClearValley(
            f"--lr auto: {result.reason}; look at {png} and give a rate, e.g. "
            f"`--lr {_example(result)}`"
        )
    lr = float(f"{result.suggestion:.3g}")
    plan.config.optim.lr = lr
    write_text(
        plan.run_dir / "config.yaml",
        f"# optim.lr {lr:g} was chosen by the lr finder (--lr auto, {result.schedule} "
        f"schedule); the sweep is in lr_find.json and lr_find.png\n" + C.to_yaml(plan.config),
    )
    log(
        f"--lr auto: lr {lr:g} for the {result.schedule} schedule ({result.reason})"
        f"{source_note(result)}; plot: {png}"
    )
    return lr


def _example(result: LRFindResult) -> str:
    """A starting point to type when the rules disagree: the classic minimum/10 rule, scaled
    for the schedule as the suggestion would be; 0.01 when the curve has no minimum either."""
    from cnnlab.engine.lr_finder import schedule_lr

    if result.rules.min_div10 is None:
        return "0.01"
    lr = schedule_lr(result.rules.min_div10, result.schedule, result.optimizer.lower())
    return f"{lr:.1g}"
