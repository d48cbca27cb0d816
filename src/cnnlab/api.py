"""The Python API; the CLI is a thin layer over these functions, with the same parameter names.

>>> import cnnlab
>>> result = cnnlab.train(epochs=3, name="quick")          # Fashion-MNIST, smallcnn
>>> cnnlab.evaluate("quick")["accuracy"]
>>> cnnlab.predict("quick", ["shoe.png"], topk=3)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab import config as C
from cnnlab import runs
from cnnlab.errors import ConfigError, DivergedError, InterruptedRun, RunError
from cnnlab.fsio import read_json, write_json, write_text

Log = Callable[[str], None]
ARTIFACTS = (
    "metrics.csv", "signals.jsonl", "curves.png", "val.json", "best.ckpt", "last.ckpt", "last.prev.ckpt",
    "model.safetensors", "model.json", "test.json", "confusion_matrix.png", "summary.md",
    "divergence.json", "skipped.csv", "split_manifest.csv", "split_manifest.json",
    "class_counts.json", "run.json", "config.yaml", "classes.json", "environment.json",
)  # fmt: skip


@dataclass
class RunResult:
    run_dir: Path
    status: dict[str, Any]
    test: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.run_dir.name


def resolve_config(
    config: C.Config | dict | str | Path | None = None, overrides: dict[str, Any] | None = None
) -> C.Config:
    """A Config from a Config, a dict, a YAML path or nothing, plus `key=value` overrides."""
    if config is None:
        cfg = C.Config()
    elif isinstance(config, C.Config):
        cfg = C.from_dict(config.to_dict())
    elif isinstance(config, dict):
        cfg = C.from_dict(config)
    else:
        cfg = C.load_yaml(config)
    for key, value in (overrides or {}).items():
        if value is not None:
            cfg.set(key, value)
    if cfg.data.path and cfg.data.dataset == "fashion-mnist":
        cfg.data.dataset = "csv" if str(cfg.data.path).lower().endswith(".csv") else "folder"
    return C.validate(cfg)


# ---------------------------------------------------------------------------------------------
# train


def train(
    config: C.Config | dict | str | Path | None = None,
    *,
    name: str | None = None,
    runs_dir: str | Path | None = None,
    force: bool = False,
    resume: str | Path | None = None,
    log: Log = print,
    **overrides: Any,
) -> RunResult:
    """Train (or resume, or re-evaluate a finished run). Overrides are config keys, e.g.
    `train(epochs=5, lr=0.1)` or `train(**{"optim.lr": 0.1})`."""
    if resume is not None:
        return _resume(resume, runs_dir=runs_dir, log=log, overrides=overrides)
    cfg = resolve_config(config, {**overrides, "name": name} if name else overrides)
    run_dir = runs.runs_root(runs_dir) / (
        cfg.name or runs.new_run_name(cfg.model.name, _dataset_tag(cfg))
    )
    cfg.name = run_dir.name
    if (run_dir / "run.json").exists() and not force:
        status = runs.read_status(run_dir)
        if status.get("status") == "finished":
            log(
                f"run '{cfg.name}' already finished; evaluating its best model (use --force to retrain)"
            )
            report = evaluate(run_dir, log=log)
            return RunResult(run_dir, runs.read_status(run_dir), report)
        raise RunError(
            f"run '{cfg.name}' exists with status '{status.get('status')}'; resume it with "
            f"`cnnlab train --resume {run_dir}` or retrain with --force"
        )
    if force:
        _clear_run(run_dir)
    return _train_new(cfg, run_dir, log)


def _dataset_tag(cfg: C.Config) -> str:
    return cfg.data.dataset if cfg.data.dataset == "fashion-mnist" else Path(cfg.data.path).stem


def _clear_run(run_dir: Path) -> None:
    for name in ARTIFACTS:
        (run_dir / name).unlink(missing_ok=True)


def _prepare(cfg: C.Config, log: Log, manifest: Path | None = None):
    """Everything before fit: determinism, device, model info, data, model."""
    from cnnlab.data.build import build_data
    from cnnlab.engine.seeding import configure_determinism, seed_all
    from cnnlab.engine.trainer import check_accelerator_settings, choose_device
    from cnnlab.models.registry import create_model, get_model_info

    configure_determinism(cfg.train.deterministic, cfg.train.threads)
    seed_all(cfg.train.seed)
    info = get_model_info(cfg.model.name)
    accelerator, why = choose_device(cfg.train.device)
    for note in [*C.lint(cfg), *check_accelerator_settings(cfg, accelerator)]:
        log(f"warning: {note}")
    log(f"device: {accelerator} ({why})")
    preprocess, image_size, in_chans = _input_plan(cfg, info)
    bundle = build_data(
        cfg,
        preprocess=preprocess,
        image_size=image_size,
        in_chans=in_chans,
        manifest=manifest,
        log=log,
    )
    for line in bundle.summary:
        log(line)
    model = create_model(
        cfg.model.name,
        num_classes=len(bundle.classes),
        pretrained=cfg.model.pretrained,
        in_chans=in_chans,
        input_size=image_size,
        dropout=cfg.model.dropout,
        init=cfg.model.init,
        weights_file=cfg.model.weights,
    )
    model.preprocess = bundle.preprocess
    build = {
        "name": cfg.model.name,
        "num_classes": len(bundle.classes),
        "in_chans": in_chans,
        "input_size": image_size,
        "dropout": model.head[0].p,
    }
    return bundle, model, build, accelerator, why


def _input_plan(cfg: C.Config, info) -> tuple[Any, int, int]:
    """(preprocess or None to measure, image size, channels) for this model and data.

    Pretrained weights bring their own preprocessing; models from scratch get the data's own
    statistics. Fashion-MNIST trains at its native 28 px unless asked otherwise: the classic
    architectures have small-input variants (see `cnnlab summary`)."""
    import dataclasses

    if cfg.model.pretrained:
        spec = info.weights.preprocess
        size = cfg.data.image_size or spec.input_size[1]
        spec = dataclasses.replace(spec, input_size=(spec.input_size[0], size, size))
        return spec, size, spec.input_size[0]
    if cfg.data.dataset == "fashion-mnist":
        return None, cfg.data.image_size or 28, info.in_chans if info.in_chans == 1 else 1
    return None, cfg.data.image_size or info.default_input, info.in_chans


def _train_new(cfg: C.Config, run_dir: Path, log: Log) -> RunResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_status(run_dir, status="preparing", name=cfg.name, started=runs.now())
    write_text(run_dir / "config.yaml", C.to_yaml(cfg))
    try:
        bundle, model, build, accelerator, why = _prepare(cfg, log)
    except BaseException as e:
        runs.write_status(run_dir, status="failed", error=str(e))
        raise
    write_json(run_dir / "classes.json", bundle.classes)
    write_json(run_dir / "environment.json", runs.environment(accelerator, why))
    bundle.write_artifacts(run_dir)
    runs.write_status(
        run_dir, status="running", device=accelerator, device_reason=why, build=build,
        params=sum(p.numel() for p in model.parameters()), variant=model.variant,
    )  # fmt: skip
    log(f"run folder: {run_dir}")
    return _fit_and_report(cfg, run_dir, bundle, model, build, accelerator, None, log)


def _fit_and_report(cfg, run_dir, bundle, model, build, accelerator, resume_from, log) -> RunResult:
    from cnnlab.engine.trainer import fit
    from cnnlab.export import export_model

    def export_best(module, epoch: int) -> None:
        export_model(
            module.model, run_dir, classes=bundle.classes, preprocess=bundle.preprocess,
            build=build, extra={"epoch": epoch, "run": cfg.name},
        )  # fmt: skip

    try:
        result = fit(
            cfg, bundle, model, run_dir, export_best=export_best, resume_from=resume_from,
            accelerator=accelerator, log=log,
        )  # fmt: skip
    except DivergedError as e:
        write_json(run_dir / "divergence.json", {"message": str(e), "time": runs.now()})
        runs.write_status(run_dir, status="diverged", stop_reason=str(e))
        _plots(run_dir, runs.read_history(run_dir), cfg)
        raise
    except (InterruptedRun, KeyboardInterrupt) as e:
        runs.write_status(run_dir, status="interrupted", stop_reason=str(e) or "interrupted")
        raise InterruptedRun(
            f"run '{cfg.name}' interrupted; checkpoint saved: resume with "
            f"`cnnlab train --resume {run_dir}`"
        ) from None
    except BaseException as e:
        runs.write_status(run_dir, status="failed", error=f"{type(e).__name__}: {e}")
        raise
    history = result.history or runs.read_history(run_dir)
    # a resumed run's wall time is the sum over its sessions
    previous = runs.read_status(run_dir).get("wall_time_s", 0.0) if resume_from else 0.0
    best_val = max((h["val_acc"] for h in history), default=None)
    best_epoch = result.best_epoch
    if best_epoch is None and history:
        best_epoch = max(history, key=lambda h: h["val_acc"])["epoch"]
    runs.write_status(
        run_dir, status="finished", stop_reason=result.stop_reason, best_epoch=best_epoch,
        best_val_acc=best_val, epochs_run=len(history),
        wall_time_s=round(previous + result.wall_time_s, 1),
        finished=runs.now(),
    )  # fmt: skip
    log(f"stopped: {result.stop_reason}")
    _plots(run_dir, history, cfg)
    test = evaluate(run_dir, log=log, bundle=bundle)
    log(f"report: {run_dir / 'summary.md'}")
    return RunResult(run_dir, runs.read_status(run_dir), test)


def _plots(run_dir: Path, history: list[dict[str, Any]], cfg: C.Config) -> None:
    from cnnlab.evaluation.plots import plot_curves

    if history:
        stepwise = cfg.optim.schedule in ("plateau", "step")
        plot_curves(history, run_dir / "curves.png", title=cfg.name, mark_lr_drops=stepwise)


def _resume(run: str | Path, *, runs_dir, log: Log, overrides: dict[str, Any]) -> RunResult:
    from cnnlab.engine.checkpoint import resume_checkpoint

    run_dir = runs.resolve_run(run, runs_dir)
    cfg = C.load_yaml(run_dir / "config.yaml")
    allowed = {"epochs", "train.epochs", "threads", "train.threads", "workers", "data.workers"}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in allowed:
            raise ConfigError(
                f"--{key} cannot change on resume (the run's config is fixed); only --epochs, "
                f"--threads and --workers can; start a new run to change it"
            )
        cfg.set(key, value)
    C.validate(cfg)
    ckpt = resume_checkpoint(run_dir, log=log)
    status = runs.read_status(run_dir)
    done = len(runs.read_history(run_dir))
    if status.get("status") == "finished" and cfg.train.epochs <= done:
        raise RunError(
            f"run '{run_dir.name}' already finished {done} epochs; extend it with "
            f"`cnnlab train --resume {run_dir} --epochs N` (N > {done})"
        )
    write_text(run_dir / "config.yaml", C.to_yaml(cfg))
    manifest = run_dir / "split_manifest.csv"
    bundle, model, build, accelerator, why = _prepare(
        cfg, log, manifest if manifest.exists() else None
    )
    _check_same_classes(run_dir, bundle.classes)
    runs.write_status(run_dir, status="running", resumed_from=ckpt.name, device=accelerator)
    log(f"resuming {run_dir} from {ckpt.name}")
    return _fit_and_report(cfg, run_dir, bundle, model, build, accelerator, ckpt, log)


def _check_same_classes(run_dir: Path, classes: list[str]) -> None:
    saved = read_json(run_dir / "classes.json") if (run_dir / "classes.json").exists() else None
    if saved is not None and saved != classes:
        raise RunError(
            f"the data's classes {classes[:5]}… differ from the run's {saved[:5]}…; "
            f"use the data the run was trained on"
        )


# ---------------------------------------------------------------------------------------------
# evaluate / predict


def evaluate(
    run: str | Path,
    *,
    split: str = "test",
    data: str | Path | None = None,
    runs_dir: str | Path | None = None,
    batch_size: int = 256,
    log: Log = print,
    bundle: Any = None,
) -> dict[str, Any]:
    """Evaluate the run's best model on a split (test/val) or on another data set with the same
    classes; rewrites test.json (or <split>.json), the confusion matrix and summary.md."""
    from cnnlab.evaluation.inference import predict_logits
    from cnnlab.evaluation.metrics import classification_report
    from cnnlab.evaluation.plots import plot_confusion
    from cnnlab.evaluation.report import write_summary
    from cnnlab.export import load_exported

    if split not in ("test", "val"):
        raise ConfigError(f"unknown split '{split}'; use test or val")
    run_dir = runs.resolve_run(run, runs_dir)
    model, meta = load_exported(run_dir)
    cfg = C.load_yaml(run_dir / "config.yaml")
    if bundle is None or data is not None:
        bundle = _eval_bundle(cfg, run_dir, model, data, log)
    _check_same_classes(run_dir, bundle.classes)
    dataset = bundle.test if split == "test" else bundle.val
    if dataset is None:
        log("no test split in this data set: evaluating on the validation split")
        split, dataset = "val", bundle.val
    device = "cuda" if _cuda() else "cpu"
    start = time.perf_counter()
    logits, targets = predict_logits(
        model, dataset, batch_size=batch_size, device=device, batch_transform=bundle.batch_transform
    )
    report = classification_report(logits, targets, bundle.classes)
    report.update(
        split=split, data=str(data) if data else bundle.source.get("path"),
        best_epoch=meta.get("epoch"), seconds=round(time.perf_counter() - start, 2),
    )  # fmt: skip
    write_json(run_dir / f"{split}.json", report)
    plot_confusion(
        report["confusion_matrix"], bundle.classes, run_dir / "confusion_matrix.png",
        title=f"{run_dir.name}: {split} accuracy {report['accuracy']:.2%}",
    )  # fmt: skip
    status = runs.read_status(run_dir)
    write_summary(
        run_dir, name=run_dir.name, config=cfg.to_dict(), status=status,
        history=runs.read_history(run_dir), test=report, classes=bundle.classes, data_lines=bundle.summary,
    )  # fmt: skip
    log(
        f"{split} accuracy {report['accuracy']:.4f} ({report['samples']:,} images), "
        f"loss {report['loss']:.4f}, macro F1 {report['macro']['f1']:.4f}"
    )
    return report


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _eval_bundle(cfg: C.Config, run_dir: Path, model, data, log: Log):
    from cnnlab.data.build import build_data

    if data is not None:
        cfg.data.path = str(data)
        cfg.data.dataset = "csv" if str(data).lower().endswith(".csv") else "folder"
    manifest = run_dir / "split_manifest.csv"
    spec = model.preprocess
    return build_data(
        cfg, preprocess=spec, image_size=spec.input_size[1], in_chans=spec.input_size[0],
        manifest=manifest if (manifest.exists() and data is None) else None, log=lambda s: None,
    )  # fmt: skip


def predict(
    run: str | Path,
    images: Sequence[str | Path],
    *,
    topk: int = 5,
    runs_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Top-k classes with probabilities per image, with exactly the training preprocessing."""
    import torch

    from cnnlab.evaluation.inference import softmax
    from cnnlab.export import load_exported

    if topk < 1:
        raise ConfigError(f"topk must be at least 1, got {topk}")
    run_dir = runs.resolve_run(run, runs_dir)
    from cnnlab.data.folder import load_for_predict

    model, meta = load_exported(run_dir)
    classes = meta["classes"]
    out = []
    for path in images:
        x = load_for_predict(path, model.preprocess)
        with torch.inference_mode():
            probs = softmax(model(x).float().numpy())[0]
        order = probs.argsort()[::-1][: min(topk, len(classes))]
        out.append(
            {
                "image": str(path),
                "top": [{"class": classes[i], "prob": float(probs[i])} for i in order],
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# models / summary


def summary(
    model: str, *, input_shape: tuple[int, int, int] | None = None, num_classes: int = 1000,
    pretrained: bool = False,
):  # fmt: skip
    """A Keras-style layer table (output shapes, parameters, FLOPs, formulas)."""
    from cnnlab.models.registry import create_model, get_model_info
    from cnnlab.models.summary import summarize

    info = get_model_info(model)
    if input_shape is None:
        input_shape = (info.in_chans, info.default_input, info.default_input)
    net = create_model(
        model, num_classes=num_classes, in_chans=input_shape[0], input_size=input_shape[1],
        pretrained=pretrained,
    )  # fmt: skip
    return summarize(net, input_shape)


def models(
    input_size: int = 224, num_classes: int = 1000, names: list[str] | None = None
) -> list[dict]:
    from cnnlab.models.catalog import model_table

    return model_table(input_size=input_size, num_classes=num_classes, names=names)


__all__ = ["train", "evaluate", "predict", "summary", "models", "RunResult", "resolve_config"]
