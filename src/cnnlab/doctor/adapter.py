"""The one place where the doctor rebuilds a run's data and models the way training did.

`load_probe_inputs` takes the run's data the way evaluation does
(`cnnlab.evaluation.evaluate.run_bundle`: the split manifest, the saved preprocessing) and the
model arguments training recorded (`cnnlab.training.prepare`'s `build`). If those change, only
this module changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from cnnlab.config import Config
from cnnlab.models.base import CnnClassifier
from cnnlab.models.spec import PreprocessSpec


@dataclass
class ProbeInputs:
    cfg: Config
    classes: list[str]
    train: Dataset  # items (x, y) without augmentation
    val: Dataset | None
    test: Dataset | None
    to_input: Callable[[torch.Tensor], torch.Tensor]  # a batch as the model receives it
    spec: PreprocessSpec
    build: dict[str, Any]  # create_model arguments of the run's architecture
    saved: CnnClassifier | None  # the best exported model, None before the first export

    def fresh_model(self) -> CnnClassifier:
        """A new model with the run's configuration (init scheme, pretrained backbone)."""
        from cnnlab.models import create_model

        m = self.cfg.model
        b = self.build
        return create_model(
            b["name"], num_classes=b["num_classes"], pretrained=m.pretrained,
            in_chans=b["in_chans"], input_size=b["input_size"], dropout=b.get("dropout"),
            init=m.init, weights_file=m.weights,
        )  # fmt: skip


def load_probe_inputs(run_dir: Path, status: dict[str, Any]) -> ProbeInputs:
    """The run's config, its data (same files and splits, no augmentation) and its models."""
    from cnnlab import runs
    from cnnlab.evaluation.evaluate import load_best, run_bundle
    from cnnlab.export import SIDECAR, WEIGHTS

    run_dir = Path(run_dir)
    cfg = runs.read_config(run_dir)
    cfg.data.augment = "none"  # the probes look at training images as evaluation sees them
    saved = None
    if (run_dir / WEIGHTS).is_file() and (run_dir / SIDECAR).is_file():
        saved, meta = load_best(run_dir)
        build = dict(meta["architecture"])
        bundle = run_bundle(cfg, run_dir, saved.preprocess)
    else:  # diverged or stopped before the first export: rebuild from run.json
        from cnnlab.data.build import build_data
        from cnnlab.plan import InputPlan

        build = dict(status.get("build") or {})
        if not build:
            raise KeyError("run.json has no model description ('build')")
        spec = _pretrained_spec(cfg, build) if cfg.model.pretrained else None
        manifest = run_dir / "split_manifest.csv"
        # spec None: measure mean/std on the training split, as the run itself did
        inputs = InputPlan(spec, build["input_size"], build["in_chans"])
        bundle = build_data(cfg, inputs, manifest=manifest if manifest.exists() else None,
                            log=lambda s: None)  # fmt: skip
    transform = bundle.batch_transform if bundle.batch_transform is not None else nn.Identity()
    return ProbeInputs(
        cfg=cfg, classes=list(bundle.classes), train=bundle.train, val=bundle.val,
        test=bundle.test, to_input=transform, spec=bundle.preprocess, build=build, saved=saved,
    )  # fmt: skip


def _pretrained_spec(cfg: Config, build: dict[str, Any]) -> PreprocessSpec:
    from cnnlab.models import get_model_info

    spec = get_model_info(build["name"]).weights.preprocess
    size = build["input_size"]
    return dataclasses.replace(spec, input_size=(spec.input_size[0], size, size))


def training_modes(model: CnnClassifier, cfg: Config) -> CnnClassifier:
    """model.train() with the engine's exceptions: a frozen backbone (and --bn-eval's
    BatchNorm) stays in inference mode, as in `ClassifierModule.train`."""
    model.train()
    if cfg.model.freeze_backbone:
        model.backbone.eval()
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    elif cfg.model.bn_eval:
        for m in model.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return model


def make_optimizer(model: CnnClassifier, cfg: Config) -> torch.optim.Optimizer:
    """The run's optimizer at its peak (configured) learning rate, without the schedule."""
    from cnnlab.engine.module import make_optimizer as engine_optimizer
    from cnnlab.engine.module import param_groups

    o = cfg.optim
    groups = [
        {**g, "params": [p for p in g["params"] if p.requires_grad]} for g in param_groups(model, o)
    ]
    return engine_optimizer([g for g in groups if g["params"]], o)
