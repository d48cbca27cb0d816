"""Evaluate a run's best model on one of its splits, or on other data with the same classes.

A run's own split writes `<split>.json`, the confusion matrix and summary.md into the run
folder. Other data is evaluated whole (its test/ split when it has one) and reported apart,
under `evaluations/<name>/`, so the run's own report is never overwritten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab import config as C
from cnnlab import runs
from cnnlab.errors import ConfigError, DataChangedError, RunError, message_of
from cnnlab.evaluation.tta import Tta, describe
from cnnlab.fsio import write_json

Log = Callable[[str], None]


def evaluate_run(
    run_dir: Path,
    *,
    split: str = "test",
    data: str | Path | None = None,
    bundle: Any = None,
    model: Any = None,
    batch_size: int = 256,
    tta: Tta = Tta.NONE,
    log: Log = print,
) -> dict[str, Any]:
    from cnnlab.evaluation.inference import predict_logits
    from cnnlab.evaluation.metrics import classification_report
    from cnnlab.evaluation.plots import plot_confusion
    from cnnlab.evaluation.report import write_summary

    if split not in ("test", "val"):
        raise ConfigError(f"unknown split '{split}'; use test or val")
    if model is None:
        model, meta = load_best(run_dir)
        epoch = meta.get("epoch")
    else:  # a user's own module from `cnnlab.fit`, trained in this process
        epoch = runs.read_status(run_dir).get("best_epoch")
    cfg = runs.read_config(run_dir)
    classes = runs.read_classes(run_dir)
    if classes is None:
        raise RunError(f"{run_dir / 'classes.json'} is missing; the run folder is damaged")
    if data is not None:
        dataset, data_classes, batch_transform, source = _other_data(cfg, model, data)
        split, out_dir = "test", run_dir / "evaluations" / _slug(data)
    else:
        if bundle is None:
            try:
                bundle = run_bundle(cfg, run_dir, model.preprocess)
            except DataChangedError as e:
                raise DataChangedError(
                    f"{message_of(e)}; evaluating the run's own split needs them, or evaluate "
                    f"other data with --data"
                ) from None
        dataset = bundle.test if split == "test" else bundle.val
        if dataset is None and bundle.val is not None:
            log("no test split in this data set: evaluating on the validation split")
            split, dataset = "val", bundle.val
        if dataset is None:
            raise ConfigError(
                f"run '{run_dir.name}' has no {split} split to evaluate; evaluate other data "
                f"with --data"
            )
        data_classes, batch_transform = bundle.classes, bundle.batch_transform
        source, out_dir = bundle.source.get("path"), run_dir
    if data_classes != classes:
        raise RunError(
            f"the data's classes {data_classes[:5]}… differ from the run's {classes[:5]}…; "
            f"evaluate on data with the classes the run was trained on"
        )
    device = "cuda" if _cuda() else "cpu"
    start = time.perf_counter()
    logits, targets = predict_logits(
        model, dataset, batch_size=batch_size, device=device, batch_transform=batch_transform,
        tta=tta,
    )  # fmt: skip
    report = classification_report(logits, targets, classes)
    report.update(split=split, data=str(source) if source else None, best_epoch=epoch,
                  tta=tta.value, seconds=round(time.perf_counter() - start, 2))  # fmt: skip
    write_json(out_dir / f"{split}.json", report)
    plot_confusion(
        report["confusion_matrix"], classes, out_dir / "confusion_matrix.png",
        title=f"{run_dir.name}: {split} accuracy {report['accuracy']:.2%}",
    )  # fmt: skip
    if data is None:
        write_summary(
            run_dir, name=run_dir.name, config=cfg.to_dict(), status=runs.read_status(run_dir),
            history=runs.read_history(run_dir), test=report, classes=classes,
            data_lines=bundle.summary,
        )  # fmt: skip
    where = f" on {source}" if data is not None else ""
    where += f"; {describe(tta)}" if tta is not Tta.NONE else ""
    log(
        f"{split} accuracy {report['accuracy']:.4f} ({report['samples']:,} images{where}), "
        f"loss {report['loss']:.4f}, macro F1 {report['macro']['f1']:.4f}"
        + (f"; report in {out_dir}" if data is not None else "")
    )
    return report


def load_best(run_dir: Path, *, attempts: int = 5) -> tuple[Any, dict[str, Any]]:
    """The run's best model (model.safetensors + model.json). A run still training is read as
    it stands (its best epoch so far), with a note on stderr (stdout may be JSON); it may
    replace the two files between our reads of them, so a mismatch is read again."""
    import sys

    from cnnlab.export import load_exported

    holder = runs.lock_holder(run_dir)
    training = holder is not None and runs.status_of(run_dir) is runs.RunStatus.RUNNING
    if training:
        print(f"note: run '{run_dir.name}' is still training (process {holder.get('pid')}); "
              f"using its best model so far", file=sys.stderr)  # fmt: skip
    for attempt in range(attempts):
        try:
            return load_exported(run_dir)
        except RunError:
            if not training or attempt == attempts - 1:
                raise
            time.sleep(0.2)  # the exporter is between model.safetensors and model.json
    raise AssertionError("unreachable")


def run_bundle(cfg: C.Config, run_dir: Path, preprocess: Any) -> Any:
    """The run's own data, split exactly as it was (split_manifest.csv), with the preprocessing
    of its saved model."""
    from cnnlab.data.build import build_data
    from cnnlab.plan import InputPlan

    manifest = run_dir / "split_manifest.csv"
    inputs = InputPlan(preprocess, preprocess.input_size[1], preprocess.input_size[0])
    return build_data(cfg, inputs, manifest=manifest if manifest.exists() else None,
                      log=lambda s: None)  # fmt: skip


def _other_data(cfg: C.Config, model: Any, data: str | Path) -> tuple[Any, list[str], Any, str]:
    """All of another folder/CSV (or its test split), evaluated with the model's preprocessing."""
    from torch.utils.data import ConcatDataset

    from cnnlab.data.folder import build_folder_data

    path = Path(data)
    if not path.exists():
        raise ConfigError(f"--data {path} does not exist; pass an image folder or a CSV")
    spec = model.preprocess
    folder = build_folder_data(
        path, image_size=spec.input_size[1], in_chans=spec.input_size[0], preprocess=spec,
        augment="none", val_fraction=0.0, test_fraction=0.0, seed=cfg.train.seed,
        cache=cfg.data.cache, log=lambda s: None, output="uint8",
    )  # fmt: skip
    if folder.test is not None:
        dataset = folder.test
    else:
        dataset = ConcatDataset([d for d in (folder.train, folder.val) if d is not None])
    return dataset, folder.classes, folder.batch_transform(), str(path)


def _slug(data: str | Path) -> str:
    import re

    path = Path(data).resolve()
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{path.parent.name}_{path.name}").strip("._") or "data"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
