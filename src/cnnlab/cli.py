"""`cnnlab` command line: a thin layer over `cnnlab.api`, one subcommand per function.

Exit codes: 0 ok, 1 internal error (a bug; --debug shows the traceback), 2 bad usage or config,
3 training diverged (NaN/Inf loss), 4 missing or corrupt data, 5 unusable run folder or
checkpoint, 130 interrupted (a checkpoint was written; resume with --resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import signal
import sys
import threading
import typing
from collections.abc import Sequence
from typing import Any

from cnnlab import config as C
from cnnlab.errors import (
    EXIT_DISK_FULL,
    EXIT_INTERRUPTED,
    CnnlabError,
    ConfigError,
    InterruptedRun,
    message_of,
)

# CLI spellings that differ from the config key
ALIASES = {"model.name": "--model", "data.path": "--data"}
# one line per key; choices and the default are added from the dataclasses
HELP = {
    "data.dataset": "set by --data (folder or csv); fashion-mnist without it",
    "data.path": "image folder (class per subfolder, or train/val/test) or CSV manifest",
    "data.data_dir": "folder holding the Fashion-MNIST .gz files (else the installed copy)",
    "data.val_fraction": "share of each class held out for validation when there is no val split",
    "data.test_fraction": "share of each class held out for testing (class-per-folder data)",
    "data.image_size": "input side in pixels (default: the weights' size, 28 for Fashion-MNIST, "
    "else the model's)",
    "data.channels": "1 (grayscale) or 3 (colour); default 1 for Fashion-MNIST, 3 for folders",
    "data.augment": "default (the data set's recipe), none, light (crop + flip), strong",
    "data.batch_size": "global batch (split over DDP processes)",
    "data.workers": "DataLoader worker processes (0 loads in the main process)",
    "data.balance": "class imbalance: weights (weighted loss) or sampler (balanced batches)",
    "data.cache": "decoded-pixel cache for image folders: memory, disk, off, or auto",
    "data.subset": "train on only N images (and at most N val/test): quick checks",
    "data.on_bad_image": "skip bad image files (listed in skipped.csv) or fail",
    "data.allow_changed_data": "resume although files of the run's split vanished (skipped)",
    "data.audit": "dataset audit of image folders/CSVs before training, into RUN/audit.json: "
    "fast (exact and near-duplicate copies, inside and across splits), full (also label "
    "issues, outliers, image properties; EfficientNet-Lite0 embeddings), off",
    "model.name": "model name (see `cnnlab models`)",
    "model.pretrained": "start from the model's ImageNet weights (and their preprocessing)",
    "model.weights": "start from a .safetensors/.pth file",
    "model.dropout": "head dropout (default: the model's)",
    "model.init": "weight init: default (library), paper (AlexNet/VGG papers), kaiming, xavier",
    "model.freeze_backbone": "train only the head (the backbone's BatchNorm frozen too)",
    "model.unfreeze_at": "train the head alone for N epochs, then everything",
    "model.bn_eval": "keep the backbone's BatchNorm in inference mode while it trains",
    "model.channels_last": "NHWC memory format (faster convolutions on CPU and tensor cores)",
    "optim.optimizer": "sgd (momentum, --nesterov), adam or adamw",
    "optim.lr": "learning rate (the head's when --backbone-lr is given), or auto: the lr "
    "finder picks it before training (see `cnnlab lr-find`)",
    "optim.momentum": "SGD momentum",
    "optim.nesterov": "Nesterov momentum for SGD",
    "optim.weight_decay": "L2 penalty on weights (not on norms and biases)",
    "optim.backbone_lr": "the backbone's own learning rate (fine-tuning: often lr/10)",
    "optim.schedule": "plateau (lr/10 when the monitored metric stalls), cosine, step, onecycle, "
    "none",
    "optim.plateau_patience": "epochs without improvement before the plateau schedule drops lr",
    "optim.plateau_factor": "plateau schedule: lr multiplier at each drop",
    "optim.step_size": "step schedule: epochs between drops",
    "optim.gamma": "step schedule: lr multiplier at each drop",
    "optim.warmup_epochs": "linear warm-up epochs before the schedule",
    "optim.label_smoothing": "cross-entropy label smoothing",
    "optim.grad_clip": "clip the gradient norm to this value",
    "train.epochs": "maximum epochs",
    "train.seed": "seed of the split, the order, the augmentation and the init",
    "train.device": "auto (CUDA, then MPS, then CPU), cpu, cuda, mps",
    "train.precision": "32, 16-mixed (GPU) or bf16-mixed",
    "train.deterministic": "deterministic kernels (with --threads: identical runs)",
    "train.early_stopping": "stop when the monitored metric stops improving",
    "train.monitor": "metric for early stopping, the best checkpoint and the plateau schedule",
    "train.patience": "early stopping: epochs without improvement",
    "train.min_delta": "early stopping: smallest change that counts as improvement",
    "train.checkpoint_every_n_steps": "also checkpoint inside long epochs",
    "train.devices": "processes/GPUs on this machine (DDP)",
    "train.num_nodes": "machines (DDP; start cnnlab on each with torchrun or srun)",
    "train.sync_batchnorm": "synchronise BatchNorm statistics across GPUs",
    "train.threads": "CPU threads for torch (default: torch's; at most the CPUs this process "
    "may run on)",
    "train.logger": "csv (metrics.csv, always written) or tensorboard (also event files under "
    "RUN/tensorboard/; needs the tensorboard extra)",
}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per config key, generated from the dataclasses so they cannot drift."""
    for section, cls in C.SECTIONS.items():
        group = parser.add_argument_group(f"{section} options")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            flag = ALIASES.get(key, "--" + f.name.replace("_", "-"))
            help_text = f"{HELP.get(key, key)} (default: {f.default})"
            if hints[f.name] is bool:
                group.add_argument(
                    flag,
                    dest=key,
                    action=argparse.BooleanOptionalAction,
                    default=None,
                    help=help_text,
                )
                continue
            allowed = C.choices(hints[f.name])
            metavar = "{" + ",".join(allowed) + "}" if allowed else f.name.upper()
            group.add_argument(flag, dest=key, default=None, metavar=metavar, help=help_text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cnnlab", description="Train and understand CNN image classifiers."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"cnnlab {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model (Fashion-MNIST by default)")
    t.add_argument("--config", help="YAML config file (sections data, model, optim, train)")
    t.add_argument("--name", help="run name (folder under --runs-dir); generated when absent")
    t.add_argument("--runs-dir", help="where run folders go (default: runs, or $CNNLAB_RUNS_DIR)")
    t.add_argument("--force", action="store_true", help="retrain a finished run from scratch")
    t.add_argument(
        "--resume",
        metavar="RUN",
        help="continue an interrupted run, or extend a finished one with --epochs",
    )
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, e.g. optim.lr=0.1",
    )
    _add_config_options(t)

    lf = sub.add_parser(
        "lr-find", help="learning-rate range test with train's options: lr_find.png, a --lr"
    )
    lf.add_argument("--config", help="YAML config file (sections data, model, optim, train)")
    lf.add_argument(
        "--name",
        help="folder under --runs-dir for lr_find.png/json (default: lr-find-<model>-<data>-"
        "<time>); a run's name puts them next to its files and changes nothing else",
    )
    lf.add_argument("--runs-dir", help="where the folder goes (default: runs, or $CNNLAB_RUNS_DIR)")
    lf.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="any config key, e.g. optim.optimizer=adamw",
    )  # fmt: skip
    lf.add_argument("--steps", type=int, default=100, help="mini-batches swept (default 100)")
    lf.add_argument("--start-lr", type=float, default=1e-7, help="first lr (default 1e-7)")
    lf.add_argument("--end-lr", type=float, default=10.0, help="last lr (default 10)")
    lf.add_argument("--json", action="store_true", help="print lr_find.json's content as JSON")
    _add_config_options(lf)

    e = sub.add_parser("evaluate", help="evaluate a run's best model")
    e.add_argument("run", help="run folder or name")
    e.add_argument(
        "--split", default="test", choices=["test", "val"],
        help="the run's split to evaluate (default: test)",
    )  # fmt: skip
    e.add_argument(
        "--data",
        help="other data with the same classes: all of it (its test/ split when it has one), "
        "reported under RUN/evaluations/",
    )
    e.add_argument("--runs-dir", help="where run names are looked up (default: runs)")
    e.add_argument("--json", action="store_true", help="print the full report as JSON")
    e.add_argument(
        "--tta", default="none", choices=["none", "flip"],
        help="test-time augmentation: flip averages each image's prediction with its mirror "
        "image's (for classes a left-right mirror does not change: not digits or text)",
    )  # fmt: skip

    pr = sub.add_parser("predict", help="top-k classes for image files, folders or globs")
    pr.add_argument(
        "run",
        metavar="RUN|MODEL",
        help="run folder or name, or an exported model.onnx/model.torchscript.pt",
    )
    pr.add_argument(
        "images",
        nargs="+",
        metavar="IMAGES",
        help="image files, folders (recursively) or globs ('photos/*.jpg')",
    )
    pr.add_argument("--topk", type=int, default=5, help="classes per image (default: 5)")
    pr.add_argument("--batch-size", type=int, default=32,
                    help="images per forward pass (default: 32)")  # fmt: skip
    pr.add_argument(
        "--tta", default="none", choices=["none", "flip"],
        help="test-time augmentation: flip averages each image's prediction with its mirror "
        "image's (for classes a left-right mirror does not change: not digits or text)",
    )  # fmt: skip
    pr.add_argument(
        "--csv",
        metavar="PATH",
        help="write a row per file (path, pred, prob, ..., error); print a summary",
    )
    pr.add_argument("--runs-dir", help="where run names are looked up (default: runs)")
    pr.add_argument("--json", action="store_true", help="print the results as JSON")

    xp = sub.add_parser("export", help="the run's best model as ONNX or TorchScript, checked "
                        "against PyTorch on its validation images")  # fmt: skip
    xp.add_argument("run", help="run folder or name")
    xp.add_argument(
        "--format",
        default="onnx",
        choices=["onnx", "torchscript"],
        help="onnx (RUN/model.onnx, default) or torchscript (model.torchscript.pt)",
    )
    xp.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's, 18 or later)")
    batch = xp.add_mutually_exclusive_group()
    batch.add_argument("--dynamic-batch", dest="dynamic_batch", action="store_true", default=True,
                       help="any batch size (default)")  # fmt: skip
    batch.add_argument("--fixed-batch", dest="dynamic_batch", action="store_false",
                       help="batch size 1, for runtimes that need static shapes")  # fmt: skip
    xp.add_argument("--images", type=int, default=64,
                    help="validation images of the parity check (default: 64)")  # fmt: skip
    xp.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="parity: |Δlogit| allowed besides --rtol·|logit| (default: 1e-4)",
    )
    xp.add_argument("--rtol", type=float, default=1e-3,
                    help="parity: the relative part (default: 1e-3)")  # fmt: skip
    xp.add_argument("--runs-dir", help="where run names are looked up (default: runs)")
    xp.add_argument("--json", action="store_true", help="print the export record as JSON")

    r = sub.add_parser("report", help="write RUN/report.html, one self-contained page")
    r.add_argument("run", help="run folder or name")
    r.add_argument("--mistakes", type=int, default=12, help="confident mistakes shown (default 12)")
    r.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++"],
                   help="heatmap beside each mistake (default gradcam)")  # fmt: skip
    r.add_argument("--runs-dir", help="where run names are looked up (default: runs)")

    ex = sub.add_parser("explain", help="Grad-CAM heatmaps: what in an image drove the prediction")
    ex.add_argument("run", help="run folder or name")
    ex.add_argument("images", nargs="+", help="image files")
    ex.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++"],
                    help="gradcam (default) or gradcam++")  # fmt: skip
    ex.add_argument("--class", dest="class_name", metavar="NAME",
                    help="explain this class instead of the predicted one")  # fmt: skip
    ex.add_argument("--out", help="folder for the overlay PNGs (default: RUN/explain)")
    ex.add_argument("--runs-dir", help="where run names are looked up (default: runs)")

    dr = sub.add_parser("doctor", help="why a run does not learn: findings with evidence and fix")
    dr.add_argument("run", help="run folder or name")
    dr.add_argument("--json", action="store_true", help="print doctor.json's object, nothing else")
    dr.add_argument("--no-probe", dest="probe", action="store_false",
                    help="the run's files only: no probes on its model and data")  # fmt: skip
    dr.add_argument("--runs-dir", help="where run names are looked up (default: runs)")

    s = sub.add_parser("summary", help="layer table: output shapes, parameters, FLOPs, formulas")
    s.add_argument("model", help="model name (see `cnnlab models`)")
    s.add_argument("--input", help="CxHxW or a side, e.g. 3x224x224 or 32 (default: native)")
    s.add_argument(
        "--classes", type=int, default=None,
        help="classes of the head (default: 1000 for ImageNet-sized models, 10 for smallcnn)",
    )  # fmt: skip
    s.add_argument("--json", action="store_true", help="print the table as JSON")

    m = sub.add_parser("models", help="table of registered models: params, FLOPs, weights")
    m.add_argument("--input", type=int, default=224, help="input side for the FLOPs column")
    m.add_argument("--classes", type=int, default=1000)
    m.add_argument("--json", action="store_true")

    c = sub.add_parser("conv", help="show a convolution or pooling step by step on a small matrix")
    c.add_argument(
        "--input",
        default="9x9",
        help="HxW (random ints), HxW:arange, a matrix 'a,b;c,d' or an image file",
    )
    c.add_argument("--filter", help="matrix like '3,0,3;2,0,2;1,0,1' (conv)")
    c.add_argument("--op", default="conv", choices=["conv", "max", "avg"])
    c.add_argument("--kernel", default="3", help="pooling window: N or V,H")
    c.add_argument(
        "--stride",
        default=None,
        help="N or V,H (vertical, horizontal); default 1 for conv, the window for pooling",
    )
    c.add_argument("--padding", default="0", help="N or V,H")
    c.add_argument("--dilation", default="1", help="N or V,H")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--element", default="0,0", help="output element worked out term by term: ROW,COL"
    )

    x = sub.add_parser(
        "experiment", help="a grid of runs over config keys and seeds, with one comparison table"
    )
    x.add_argument("file", help="experiment YAML: name, base, grid and/or runs, seeds")
    x.add_argument("--runs-dir", help="where the experiment folder goes (default: runs)")
    x.add_argument(
        "--parallel", type=int, default=1, metavar="N",
        help="train N runs at a time as subprocesses, CPU threads split between them",
    )  # fmt: skip
    x.add_argument("--dry-run", action="store_true", help="print the plan; train nothing")
    x.add_argument(
        "--rerun-failed", action="store_true",
        help="retrain failed and diverged runs (default: keep them in the table as failed)",
    )  # fmt: skip

    a = sub.add_parser(
        "audit", help="check a data set for copies across splits, label errors, bad images"
    )
    a.add_argument(
        "data", nargs="?", default=None, metavar="DATA",
        help="what `train --data` takes: an image folder or a CSV manifest; without it (or "
        "'fashion-mnist') the built-in Fashion-MNIST",
    )  # fmt: skip
    a.add_argument("--json", action="store_true", help="print audit.json's object, nothing else")
    a.add_argument(
        "--embeddings", action=argparse.BooleanOptionalAction, default=True,
        help="pretrained EfficientNet-Lite0 embeddings: near copies by content, label issues, "
        "outliers (default: on; --no-embeddings skips those)",
    )  # fmt: skip
    a.add_argument(
        "--mode", default="full", choices=["full", "fast"],
        help="full (default) or fast: exact and perceptual-hash duplicates only, as "
        "`cnnlab train` runs before training",
    )  # fmt: skip
    a.add_argument(
        "--out", metavar="DIR",
        help="folder for audit.json and audit.png (default: ./audit-NAME, NAME the data's)",
    )  # fmt: skip
    a.add_argument("--val-fraction", type=float, default=None,
                   help="as in train: the split audited is the run's (default: train's)")  # fmt: skip
    a.add_argument("--test-fraction", type=float, default=None, help="as in train")
    a.add_argument("--seed", type=int, default=None, help="as in train (the split's seed)")
    a.add_argument("--data-dir", help="as in train: where Fashion-MNIST's .gz files are")
    a.add_argument("--manifest", metavar="CSV",
                   help="a run's split_manifest.csv: audit exactly that run's split")  # fmt: skip
    a.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")

    d = sub.add_parser("data", help="data set tools")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("download", help="download a data set (verified, atomic)")
    dl.add_argument("dataset", choices=["fashion-mnist"])
    dl.add_argument("--dest", help="target folder (default: ~/.cache/cnnlab/fashion-mnist)")
    return p


def _version() -> str:
    import cnnlab

    return cnnlab.__version__


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {k: v for k, v in vars(args).items() if "." in k and v is not None}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set needs KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _parse_input(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        raise ConfigError(f"--input must look like 3x224x224 or 224, got '{text}'") from None
    if len(parts) == 1:
        return None if parts[0] <= 0 else (-1, parts[0], parts[0])
    if len(parts) == 2:
        return (-1, parts[0], parts[1])
    if len(parts) == 3:
        return (parts[0], parts[1], parts[2])
    raise ConfigError(f"--input must look like 3x224x224 or 224, got '{text}'")


def cmd_train(args: argparse.Namespace) -> int:
    from cnnlab import api

    api.train(
        args.config, name=args.name, runs_dir=args.runs_dir, force=args.force, resume=args.resume,
        **_overrides(args),
    )  # fmt: skip
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from cnnlab import api

    found = api.lr_find(
        args.config, name=args.name, runs_dir=args.runs_dir, steps=args.steps,
        start_lr=args.start_lr, end_lr=args.end_lr,
        log=(lambda s: None) if args.json else print, **_overrides(args),
    )  # fmt: skip
    if args.json:
        print(json.dumps(found.to_dict(), indent=2))
    elif found.suggestion is not None:
        print(f"use it: add --lr {found.suggestion:.3g} to the train command (or --lr auto)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cnnlab import api

    report = api.evaluate(args.run, split=args.split, data=args.data, runs_dir=args.runs_dir,
                          tta=args.tta, log=(lambda s: None) if args.json else print)  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cnnlab import api
    from cnnlab.errors import DataError

    result = api.predict(args.run, args.images, topk=args.topk, batch_size=args.batch_size,
                         csv=args.csv, runs_dir=args.runs_dir, tta=args.tta)  # fmt: skip
    if args.json:
        print(json.dumps(result.records(), indent=2))
    elif args.csv:
        print(f"{result.summary()}; wrote {args.csv}")
    else:
        for p in result.predictions:
            print(p.path)
            for name, prob in p.top:
                print(f"  {prob:7.2%}  {name}")
        for s in result.skipped:
            print(f"{s.path}\n  skipped: {s.reason} ({s.detail})")
    bad = result.bad
    if bad:  # after the good ones are out: the exit code says some files were not predicted
        names = ", ".join(f"{b.path} ({b.reason})" for b in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        where = f" (rows in {args.csv})" if args.csv else ""
        raise DataError(
            f"{len(bad)} of {len(bad) + len(result.predictions)} files could not be predicted"
            f": {names}{more}{where}; the others were predicted"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cnnlab import api

    result = api.export_run(
        args.run, format=args.format, opset=args.opset, dynamic_batch=args.dynamic_batch,
        images=args.images, atol=args.atol, rtol=args.rtol, runs_dir=args.runs_dir,
        log=(lambda s: None) if args.json else print,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cnnlab import api

    path = api.report(args.run, mistakes=args.mistakes, method=args.method, runs_dir=args.runs_dir)
    print(f"report: {path}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from cnnlab import api
    from cnnlab.explain.images import caption

    results = api.explain(args.run, args.images, method=args.method, class_name=args.class_name,
                          out_dir=args.out, runs_dir=args.runs_dir)  # fmt: skip
    for r in results:
        text = caption(r.method, r.predicted, r.predicted_prob, r.target, r.target_prob)
        print(f"{r.image}: {text} -> {r.output}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from cnnlab import api

    report = api.doctor(args.run, probe=args.probe, runs_dir=args.runs_dir)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnlab import api
    from cnnlab.models import get_model_info

    shape = _parse_input(args.input)
    if shape is not None and shape[0] == -1:
        info = get_model_info(args.model)
        shape = (info.in_chans, shape[1], shape[2])
    result = api.summary(args.model, input_shape=shape, num_classes=args.classes)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.to_text())
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from cnnlab import api
    from cnnlab.models.catalog import format_model_table

    rows = api.models(input_size=args.input, num_classes=args.classes)
    print(json.dumps(rows, indent=2, default=str) if args.json else format_model_table(rows))
    return 0


def cmd_conv(args: argparse.Namespace) -> int:
    from cnnlab.convdemo import run_conv_demo

    try:
        text = run_conv_demo(
            args.input, args.filter, stride=args.stride, padding=args.padding,
            dilation=args.dilation, op=args.op, kernel=args.kernel, seed=args.seed,
            element=args.element,
        )  # fmt: skip
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    print(text)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from cnnlab.data.fashion_mnist import download_fashion_mnist

    folder = download_fashion_mnist(args.dest)
    print(f"Fashion-MNIST is in {folder}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from cnnlab import api

    report = api.audit(
        args.data, mode=args.mode, embeddings=args.embeddings,
        out_dir=args.out if args.out is not None else api.default_audit_dir(args.data),
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed,
        data_dir=args.data_dir, manifest=args.manifest, threads=args.threads,
        log=(lambda s: None) if args.json else print,
    )  # fmt: skip
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))  # audit.json, byte for byte
        return 0
    print(report.format())
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from cnnlab.experiment import load_experiment, run_experiment

    if args.dry_run:
        from cnnlab.experiment import describe_plan

        exp = load_experiment(args.file)
        print(describe_plan(exp, args.runs_dir, rerun_failed=args.rerun_failed))
        return 0
    result = run_experiment(
        args.file, runs_dir=args.runs_dir, parallel=args.parallel, rerun_failed=args.rerun_failed
    )
    # 0 even when some runs failed: the experiment completed and its table says which
    print(result.summary())
    return 0


COMMANDS = {
    "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "summary": cmd_summary,
    "models": cmd_models, "conv": cmd_conv, "data": cmd_data, "experiment": cmd_experiment,
    "report": cmd_report, "explain": cmd_explain, "audit": cmd_audit, "doctor": cmd_doctor,
    "lr-find": cmd_lr_find, "export": cmd_export,
}  # fmt: skip


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    from cnnlab.runtime import tune_process

    tune_process()  # before any tensor exists; children (workers, DDP ranks) inherit it
    parser = _parser()
    args = parser.parse_args(argv)
    previous = None
    if args.command != "train" and threading.current_thread() is threading.main_thread():
        # training turns SIGTERM into a checkpoint and `interrupted`; every other command has
        # nothing to save, so it stops like Ctrl-C: one line, exit 130, not a silent kill
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except InterruptedRun as e:  # asked for by the user: said plainly, on its own line
        if args.debug:
            raise
        print(f"\n{_first_line(e) or 'interrupted'}", file=sys.stderr)
        return e.exit_code
    except CnnlabError as e:
        if args.debug:
            raise
        print(f"error: {_first_line(e) or type(e).__name__}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `cnnlab predict ... | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    except OSError as e:
        if args.debug:
            raise
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"error: no space left on the device ({e.filename or e}); free space and "
                  f"run the command again", file=sys.stderr)  # fmt: skip
            return EXIT_DISK_FULL
        print(f"error: internal error ({type(e).__name__}: {e}); rerun with --debug and report it",
              file=sys.stderr)  # fmt: skip
        return 1
    except Exception as e:  # a bug: say so, keep the traceback behind --debug
        if args.debug:
            raise
        print(f"error: internal error ({type(e).__name__}: {e}); rerun with --debug and report it",
              file=sys.stderr)  # fmt: skip
        return 1


def _first_line(e: BaseException) -> str:
    return message_of(e)  # also for an error a DataLoader worker re-raised


def _silence_stdout() -> None:
    # Python flushes stdout at exit; with the pipe closed that flush would fail again
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
