"""The Python API; the CLI is a thin layer over these functions, with the same parameter names.

>>> import cnnlab
>>> result = cnnlab.train(epochs=3, name="quick")          # Fashion-MNIST, smallcnn
>>> result.history                                          # metrics per epoch
>>> cnnlab.evaluate("quick")["accuracy"]
>>> cnnlab.predict("quick", ["shoe.png"], topk=3)

Your own model and data get the same engine (checkpoints, resume, early stopping, schedules,
the run folder) through `cnnlab.fit(model, train_data, val_data)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab import config as C
from cnnlab import runs
from cnnlab.errors import ConfigError, RunError
from cnnlab.runs import RunStatus
from cnnlab.runtime import tune_process
from cnnlab.training import RunResult

if TYPE_CHECKING:
    from cnnlab.evaluation.predict import PredictionSet
    from cnnlab.export import ExportResult
    from cnnlab.lr_search import LRFindRun

Log = Callable[[str], None]
# what may change when a run is resumed: speed, not results (and --epochs, to extend it)
RESUME_KEYS = {
    "epochs", "train.epochs", "threads", "train.threads", "workers", "data.workers",
    "allow_changed_data", "data.allow_changed_data",
}  # fmt: skip


def resolve_config(
    config: C.Config | dict | str | Path | None = None, overrides: dict[str, Any] | None = None
) -> C.Config:
    """A Config from a Config, a dict, a YAML path or nothing, plus `key=value` overrides, with
    the recipe defaults (cnnlab.recipes) filled in for the keys left unset."""
    import copy

    from cnnlab.recipes import apply_recipes

    if config is None:
        cfg = C.Config()
    elif isinstance(config, C.Config):
        cfg = copy.deepcopy(config)  # keeps which keys were set
    elif isinstance(config, dict):
        cfg = C.from_dict(config)
    else:
        cfg = C.load_yaml(config)
    for key, value in (overrides or {}).items():
        if value is not None:
            cfg.set(key, value)
    if cfg.data.path and cfg.data.dataset == "fashion-mnist":
        cfg.data.dataset = "csv" if str(cfg.data.path).lower().endswith(".csv") else "folder"
    cfg.notes = apply_recipes(cfg)
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
    callbacks: Sequence[Any] = (),
    **overrides: Any,
) -> RunResult:
    """Train (or resume, or re-evaluate a finished run). Overrides are config keys, e.g.
    `train(epochs=5, lr=0.1)` or `train(**{"optim.lr": 0.1})`; `callbacks` are Keras-style
    `cnnlab.Callback`s or Lightning callbacks."""
    from cnnlab.plan import make_plan
    from cnnlab.training import start_run

    tune_process()
    if resume is not None:
        if config is not None or name is not None or force:
            raise ConfigError(
                "--resume continues a run with its own config and name: drop --config, --name "
                "and --force (only --epochs, --threads and --workers may change)"
            )
        return _resume(resume, runs_dir=runs_dir, log=log, overrides=overrides,
                       callbacks=callbacks)  # fmt: skip
    if name is not None:
        runs.check_run_name(name)  # `--name ""` (an unset shell variable) is a mistake, not "any"
    cfg = resolve_config(config, {**overrides, "name": name} if name else overrides)
    run_name = cfg.name or runs.new_run_name(cfg.model.name, _dataset_tag(cfg))
    run_dir = runs.run_folder(run_name, runs_dir)
    cfg.name = run_dir.name
    plan = make_plan(cfg, run_dir)  # every cheap check, before the folder exists
    with runs.owned(run_dir, log):
        state = runs.status_of(run_dir)
        if state is RunStatus.FINISHED and not force:
            log(f"run '{cfg.name}' already finished; evaluating its best model (use --force to "
                f"retrain)")  # fmt: skip
            report = evaluate(run_dir, log=log)
            record = runs.read_status(run_dir)
            return RunResult(run_dir, record["status"], record, report)
        if state is not None and state is not RunStatus.PREPARING and not force:
            raise RunError(_taken_message(run_dir, state))
        if state is not None:  # --force, or a set-up killed before it could clean up
            runs.clear_run(run_dir)
        return start_run(plan, log=log, callbacks=callbacks)


def _taken_message(run_dir: Path, state: RunStatus) -> str:
    has_ckpt = any((run_dir / n).exists() for n in ("last.ckpt", "last.prev.ckpt"))
    how = {
        RunStatus.RUNNING: "stopped without finishing (its process ended)",
        RunStatus.INTERRUPTED: "was interrupted",
        RunStatus.DIVERGED: "diverged",
        RunStatus.FAILED: "failed",
    }[state]
    resume = f"resume it with `cnnlab train --resume {run_dir}`, or " if has_ckpt else ""
    return f"run '{run_dir.name}' exists and {how}; {resume}retrain it with --force"


def _dataset_tag(cfg: C.Config) -> str:
    return cfg.data.dataset if cfg.data.dataset == "fashion-mnist" else Path(cfg.data.path).stem


def _resume(
    run: str | Path, *, runs_dir, log: Log, overrides: dict[str, Any], callbacks: Sequence[Any]
) -> RunResult:
    from cnnlab.engine.checkpoint import resume_checkpoint
    from cnnlab.plan import make_plan
    from cnnlab.training import continue_run

    run_dir = runs.resolve_run(run, runs_dir)
    with runs.owned(run_dir, log):
        cfg = runs.read_config(run_dir)
        given = {k: v for k, v in overrides.items() if v is not None}
        for key, value in given.items():
            if key not in RESUME_KEYS:
                raise ConfigError(
                    f"--{key.split('.')[-1].replace('_', '-')} cannot change on resume (the "
                    f"run's config is fixed); only --epochs, --threads, --workers and "
                    f"--allow-changed-data can; start a new run to change it"
                )
            cfg.set(key, value)
        C.validate(cfg)
        trained = (runs.try_read_status(run_dir).get("build") or {}).get("name")
        if trained and trained != cfg.model.name:  # named before the epochs, whatever is asked
            raise RunError(
                f"{run_dir / 'config.yaml'} names model '{cfg.model.name}' but the run trained "
                f"'{trained}': config.yaml was changed after training: restore it, or train a "
                f"new run"
            )
        done = len(runs.read_history(run_dir))
        finished = runs.status_of(run_dir) is RunStatus.FINISHED
        if cfg.train.epochs < done or (finished and cfg.train.epochs == done):
            raise RunError(
                f"run '{run_dir.name}' has trained {done} epochs"
                + (f" and finished; extend it with `cnnlab train --resume {run_dir} --epochs N` "
                   f"(N > {done})" if finished else f"; --epochs must be at least {done}")
            )  # fmt: skip
        ckpt = resume_checkpoint(run_dir, log=log)
        plan = make_plan(cfg, run_dir, resume_from=ckpt)
        return continue_run(plan, log=log, callbacks=callbacks, config_changed=bool(given))


# ---------------------------------------------------------------------------------------------
# lr-find


def lr_find(
    config: C.Config | dict | str | Path | None = None,
    *,
    name: str | None = None,
    runs_dir: str | Path | None = None,
    steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    log: Log = print,
    **overrides: Any,
) -> LRFindRun:
    """The learning-rate range test on the model, data, optimizer and loss that `train` would
    use with the same arguments. Writes lr_find.png and lr_find.json into runs/<name>/
    (default name lr-find-<model>-<data>-<time>; the name of a run puts them next to its
    files, changing nothing else) and returns them with the suggested `optim.lr` for the
    config's schedule, or None and the reason ("no clear valley: ...").

    >>> found = cnnlab.lr_find(subset=6000, name="sweep")
    >>> found.suggestion, found.reason
    >>> cnnlab.train(subset=6000, name="sweep", lr=found.suggestion)   # or lr="auto"
    """
    from cnnlab.engine.lr_finder import LRFindSettings
    from cnnlab.lr_search import run_lr_find
    from cnnlab.plan import make_plan

    tune_process()
    settings = LRFindSettings(start_lr=float(start_lr), end_lr=float(end_lr), num_steps=steps)
    settings.check()
    cfg = resolve_config(config, {**overrides, "name": name} if name else overrides)
    run_name = cfg.name or "lr-find-" + runs.new_run_name(cfg.model.name, _dataset_tag(cfg))
    run_dir = runs.run_folder(run_name, runs_dir)
    cfg.name = run_dir.name
    plan = make_plan(cfg, run_dir)  # every cheap check, before the folder exists
    return run_lr_find(plan, settings=settings, log=log)


# ---------------------------------------------------------------------------------------------
# your own model and data


def fit(
    model: Any,
    train_data: Any,
    val_data: Any = None,
    *,
    test_data: Any = None,
    classes: Sequence[str] | None = None,
    name: str | None = None,
    runs_dir: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    log: Log = print,
    **config: Any,
) -> RunResult:
    """Train any `nn.Module` classifier (images -> logits) on any map-style Dataset or
    DataLoader of (x, y) with the whole engine: checkpoints, early stopping, schedules, the run
    folder, resume. Without `val_data`, a stratified `val_fraction` of `train_data` is held out.
    `config` takes the same keys as `train` (`epochs=5`, `lr=0.01`, `optimizer="adam"`, ...).
    Returns a RunResult whose `model` is your module with its best epoch's weights.

    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ...                           torch.nn.Linear(8, 2))
    >>> result = cnnlab.fit(net, TensorDataset(x, y), epochs=3, optimizer="adam", lr=1e-3)
    >>> result.history, result.test["accuracy"], result.model
    """
    from cnnlab.data.user import user_bundle
    from cnnlab.models.user import UserClassifier
    from cnnlab.plan import make_user_plan
    from cnnlab.training import Prepared, start_run

    tune_process()
    cfg = resolve_config(None, config)
    bundle = user_bundle(train_data, val_data, test_data, classes=classes, cfg=cfg)
    wrapped = UserClassifier(model, num_classes=len(bundle.classes))
    wrapped.preprocess = bundle.preprocess
    run_dir = runs.run_folder(name or runs.new_run_name(type(model).__name__, "data"), runs_dir)
    cfg.name = run_dir.name
    plan = make_user_plan(cfg, run_dir, bundle.preprocess)
    with runs.owned(run_dir, log):
        if runs.status_of(run_dir) is not None:
            raise RunError(f"run '{run_dir.name}' exists; give another name or delete it")
        result = start_run(plan, log=log, callbacks=callbacks,
                           prepare_fn=lambda plan, log: Prepared(bundle, wrapped, None))  # fmt: skip
    result.model = model
    return result


@dataclass
class LoadedRun:
    """A run's model ready for inference, with what it needs to be fed."""

    model: Any
    classes: list[str]
    preprocess: Any  # PreprocessSpec
    meta: dict[str, Any]  # model.json


def load_run(
    run: str | Path, *, model: Any = None, runs_dir: str | Path | None = None
) -> LoadedRun:
    """The best model of a run, in eval mode. Registry models are rebuilt from model.json; a
    model trained with `cnnlab.fit` needs an instance of its class (`model=MyNet()`)."""
    from cnnlab.export import load_exported, load_weights, read_model_json

    run_dir = runs.resolve_run(run, runs_dir)
    if model is not None:
        meta = read_model_json(run_dir)
        net = load_weights(model, run_dir)
    else:
        net, meta = load_exported(run_dir)
    return LoadedRun(net, list(meta["classes"]), net.preprocess, meta)


# ---------------------------------------------------------------------------------------------
# evaluate / predict


def evaluate(
    run: str | Path,
    *,
    split: str = "test",
    data: str | Path | None = None,
    runs_dir: str | Path | None = None,
    batch_size: int = 256,
    tta: str = "none",
    log: Log = print,
) -> dict[str, Any]:
    """Evaluate the run's best model on its test (or val) split, rewriting `<split>.json`, the
    confusion matrix and summary.md; or on other data with the same classes (`data=`), all of
    it (its test/ split when it has one), reported under `evaluations/` in the run folder.
    `tta="flip"` averages each image's prediction with its mirror image's."""
    from cnnlab.evaluation.evaluate import evaluate_run
    from cnnlab.evaluation.tta import parse_tta

    tune_process()
    mode = parse_tta(tta)
    run_dir = runs.resolve_run(run, runs_dir)
    return evaluate_run(run_dir, split=split, data=data, batch_size=batch_size, tta=mode, log=log)


def predict(
    run: str | Path,
    images: Sequence[str | Path],
    *,
    topk: int = 5,
    batch_size: int = 32,
    csv: str | Path | None = None,
    runs_dir: str | Path | None = None,
    tta: str = "none",
) -> PredictionSet:
    """Top-k classes with probabilities for image files, folders (searched recursively) and
    globs, with exactly the training preprocessing, `batch_size` images per forward pass.
    `run` is a run (folder or name) or an exported model.onnx / model.torchscript.pt.
    `tta="flip"` averages each image's probabilities with its mirror image's.
    Files that cannot be used are listed in `.skipped` with their reason and never stop the
    others; `csv` also writes one row per file (path, pred, prob, ..., error).

    >>> result = cnnlab.predict("quick", ["shoe.png", "photos/"], topk=3)
    >>> result.predictions[0].top   # (("Sneaker", 0.93), ("Sandal", 0.05), ...)
    >>> result.skipped              # Skipped(path, reason, detail) per file not predicted
    """
    from cnnlab.evaluation.predict import open_predictor, predict_images
    from cnnlab.evaluation.tta import parse_tta

    tune_process()
    mode = parse_tta(tta)
    predictor = open_predictor(run, runs_dir=runs_dir)
    result = predict_images(predictor, images, topk=topk, batch_size=batch_size, tta=mode)
    if csv is not None:
        result.write_csv(csv)
    return result


# ---------------------------------------------------------------------------------------------
# export


def export_run(
    run: str | Path,
    *,
    format: str = "onnx",
    opset: int | None = None,
    dynamic_batch: bool = True,
    images: int = 64,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    runs_dir: str | Path | None = None,
    log: Log = print,
) -> ExportResult:
    """The run's best model as RUN/model.onnx (or model.torchscript.pt), with its classes and
    preprocessing inside, kept only when ONNX Runtime (or torch.jit) reproduces PyTorch on
    `images` of the run's validation images: every logit within atol + rtol·|logit| and the
    same top-1 class. The figures go to RUN/export.json; a failure is a ParityError naming
    the worst image. (Named export_run: `cnnlab.export` is the package.)"""
    from cnnlab.export import export_run as export

    tune_process()
    return export(run, format=format, opset=opset, dynamic_batch=dynamic_batch, images=images,
                  atol=atol, rtol=rtol, runs_dir=runs_dir, log=log)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# look at a run


def report(
    run: str | Path, *, mistakes: int = 12, method: str = "gradcam",
    runs_dir: str | Path | None = None,
) -> Path:  # fmt: skip
    """RUN/report.html: one self-contained page (status, data, model, config, curves, test
    metrics, confusion matrix, the most confident mistakes with Grad-CAM, findings,
    environment). Written at the end of every training run too."""
    from cnnlab.report import write_report

    tune_process()
    if mistakes < 0:
        raise ConfigError(f"--mistakes must be 0 or more, got {mistakes}")
    return write_report(runs.resolve_run(run, runs_dir), mistakes=mistakes, method=method)


def explain(
    run: str | Path,
    images: Sequence[str | Path],
    *,
    method: str = "gradcam",
    class_name: str | None = None,
    out_dir: str | Path | None = None,
    runs_dir: str | Path | None = None,
) -> list[Any]:
    """Grad-CAM (or Grad-CAM++) heatmaps over images, with the run's exact preprocessing:
    one overlay PNG per image in `out_dir` (default RUN/explain/), for the predicted class or
    `class_name`."""
    from cnnlab.explain import explain as explain_images

    tune_process()
    return explain_images(runs.resolve_run(run, runs_dir), images, method=method,
                          class_name=class_name, out_dir=out_dir)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# audit the data


def audit(
    data: str | Path | None = None,
    *,
    mode: str = "full",
    embeddings: bool = True,
    out_dir: str | Path | None = None,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    seed: int | None = None,
    data_dir: str | Path | None = None,
    manifest: str | Path | None = None,
    threads: int | None = None,
    log: Log = print,
) -> Any:
    """Check what `cnnlab train --data DATA` would train on, split as it would be (the same
    options and defaults; `manifest=` a run's split_manifest.csv for exactly that run's split):
    copies inside and across splits, label issues, outliers, placeholders, image and file
    properties, skipped files, class imbalance. `data` None or "fashion-mnist": the built-in
    set. Returns a cnnlab.audit.AuditReport; with `out_dir`, writes audit.json (the report's
    `to_dict()`) and the contact sheet audit.png there. `mode="fast"`: only the duplicate
    checks `cnnlab train` runs before training; `embeddings=False`: no pretrained model."""
    from cnnlab.audit import audit as run_audit
    from cnnlab.audit.source import BUILTIN_NAMES

    tune_process()
    builtin = data is None or (str(data).lower() in BUILTIN_NAMES and not Path(data).exists())
    given = {"data.val_fraction": val_fraction, "data.test_fraction": test_fraction,
             "train.seed": seed, "data.data_dir": data_dir}  # fmt: skip
    cfg = resolve_config(None, {**given, "data.path": None if builtin else str(data)})
    if out_dir is not None and not builtin:
        _outside_data(Path(out_dir), Path(data))
    return run_audit(
        None if builtin else data, mode=mode, embeddings=embeddings, out_dir=out_dir,
        val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction,
        seed=cfg.train.seed, manifest=manifest, data_dir=cfg.data.data_dir, threads=threads,
        log=log,
    )  # fmt: skip


def default_audit_dir(data: str | Path | None) -> Path:
    """./audit-NAME, NAME the data folder's or CSV's name (fashion-mnist for the built-in)."""
    name = Path(str(data)).resolve().stem if data is not None else "fashion-mnist"
    return Path(f"audit-{name or 'data'}")


def _outside_data(out_dir: Path, data: Path) -> None:
    # inside an image folder, audit.png would be scanned as an image (or a class) next time
    root = (data.parent if data.suffix.lower() == ".csv" else data).resolve()
    out = out_dir.resolve()
    if out == root or root in out.parents:
        raise ConfigError(
            f"the audit's output folder {out_dir} is inside the data folder {root}; "
            f"write it elsewhere (--out DIR)"
        )


# ---------------------------------------------------------------------------------------------
# models / summary


def summary(
    model: str, *, input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None, pretrained: bool = False,
):  # fmt: skip
    """A Keras-style layer table (output shapes, parameters, FLOPs, formulas). Without
    `num_classes`, the head has the classes of the model's home data set: 1000 (ImageNet) for
    the classic models, 10 for the small ones made for Fashion-MNIST."""
    from cnnlab.models import create_model, get_model_info
    from cnnlab.models.catalog import build_for_counting
    from cnnlab.models.summary import summarize

    info = get_model_info(model)
    if input_shape is None:
        input_shape = (info.in_chans, info.default_input, info.default_input)
    if num_classes is None:
        num_classes = 1000 if info.default_input >= 64 else 10
    c, size = input_shape[0], input_shape[1]
    if pretrained:  # the real weights (frozen layers show as non-trainable)
        net = create_model(model, num_classes=num_classes, in_chans=c, input_size=size,
                           pretrained=True)  # fmt: skip
    else:
        net = build_for_counting(model, num_classes, size, c)
    return summarize(net, input_shape)


def models(
    input_size: int = 224, num_classes: int = 1000, names: list[str] | None = None
) -> list[dict]:
    from cnnlab.models.catalog import model_table

    return model_table(input_size=input_size, num_classes=num_classes, names=names)


__all__ = [
    "train", "lr_find", "fit", "load_run", "evaluate", "predict", "report", "explain", "summary",
    "models", "RunResult", "LoadedRun", "resolve_config", "audit", "export_run",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# doctor


def doctor(run: str | Path, *, probe: bool = True, runs_dir: str | Path | None = None) -> Any:
    """Why a run failed, or that it did not: reads the run folder and (unless `probe=False`)
    runs seconds-long probes on its saved model and data, then writes RUN/doctor.json. Returns
    a `cnnlab.doctor.DoctorReport`: `.findings` root cause first (symptoms grouped under it),
    each with code, severity, title, evidence and the option to change (`fix`); `.to_dict()` is
    what doctor.json holds. The codes are listed in the README ("When a run does not learn")."""
    from cnnlab.doctor import diagnose

    tune_process()
    return diagnose(runs.resolve_run(run, runs_dir), probe=probe)
