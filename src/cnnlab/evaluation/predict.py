"""Predict many images: files, folders (recursively), globs; with a run or an exported model.

    predictor = open_predictor("runs/photos")            # or "runs/photos/model.onnx"
    result = predict_images(predictor, ["new_photos/", "extra/*.jpg"], topk=3, batch_size=32)
    result.write_csv("out.csv")                           # path,pred,prob,pred_2,prob_2,...,error
    for s in result.skipped:
        print(s.path, s.reason, s.detail)

Good files are predicted in batches; files that cannot be used are listed with the reason codes
of cnnlab.data.imaging (truncated, not_image, ...) and never stop the others. A run predicts with
its best model.safetensors in PyTorch; a model.onnx runs on ONNX Runtime through cnnlab.deploy
(no torch needed); a model.torchscript.pt through torch.jit. All three preprocess exactly as
`evaluate` does.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cnnlab import deploy, fsio
from cnnlab.data import imaging
from cnnlab.data.scan import Skipped  # (path, reason, detail), as in skipped.csv
from cnnlab.errors import ConfigError, DataError
from cnnlab.evaluation.tta import Tta, with_tta


class Predictor(Protocol):
    """What predict_images needs from a model."""

    @property
    def classes(self) -> list[str]: ...

    def preprocess(self, path: str | os.PathLike) -> np.ndarray:
        """(C, H, W) float32; raises imaging.ImageError for a file it cannot use."""
        ...

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 -> (N, classes) logits."""
        ...


@dataclass
class PredictionSet:
    classes: list[str]
    predictions: list[deploy.Prediction] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def summary(self) -> str:
        line = f"predicted {len(self.predictions)} images"
        if self.skipped:
            reasons: dict[str, int] = {}
            for s in self.skipped:
                reasons[s.reason] = reasons.get(s.reason, 0) + 1
            parts = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
            line += f"; skipped {len(self.skipped)} ({parts})"
        return line

    @property
    def bad(self) -> list[Skipped]:
        """The skipped files that were meant as images: given by name, or with an image
        extension but unreadable. A non-image file met in a folder (notes.txt) is listed in
        `skipped` but is not a failure."""
        return [s for s in self.skipped if s.reason in imaging.BAD_IMAGE_REASONS]

    def records(self) -> list[dict[str, Any]]:
        """Plain data for JSON: {"image", "top": [{"class", "prob"}]} per predicted image, then
        {"image", "skipped": {"reason", "detail"}} per skipped file."""
        good = [
            {"image": p.path, "top": [{"class": c, "prob": q} for c, q in p.top]}
            for p in self.predictions
        ]
        skipped = [
            {"image": s.path, "skipped": {"reason": s.reason, "detail": s.detail}}
            for s in self.skipped
        ]
        return good + skipped

    # A sequence of records(), as predict() returned before it grew folders and skipped files:
    # `cnnlab.predict(run, ["a.png"])[0]["top"]` keeps working.
    def __len__(self) -> int:
        return len(self.predictions) + len(self.skipped)

    def __getitem__(self, i: Any) -> Any:
        return self.records()[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records())

    def write_csv(self, path: str | os.PathLike) -> Path:
        """One row per input file: path, pred, prob, pred_2, prob_2, ..., error (skipped files
        have an empty prediction and the reason in `error`), in input order."""
        k = max((len(p.top) for p in self.predictions), default=1)
        header = ["path", "pred", "prob"]
        for i in range(2, k + 1):
            header += [f"pred_{i}", f"prob_{i}"]
        rows = [_row(p, k) for p in self.predictions]
        rows += [[s.path, *[""] * (2 * k), f"{s.reason}: {s.detail}"] for s in self.skipped]
        with fsio.atomic_open(path, "w") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow([*header, "error"])
            w.writerows(rows)
        return Path(path)


def _row(p: deploy.Prediction, k: int) -> list[str]:
    cells = [p.path]
    for name, prob in p.top:
        cells += [name, f"{prob:.6f}"]
    return cells + [""] * (2 * (k - len(p.top))) + [""]


# ---------------------------------------------------------------------------------------------
# inputs


def collect_images(inputs: Sequence[str | os.PathLike]) -> tuple[list[str], list[Skipped]]:
    """Files to predict, in a stable order, and what was passed over with why.

    A file is taken as given (a bad one fails later, in decoding, with its reason); a folder is
    walked recursively, sorted, skipping hidden entries silently and listing non-image files; a
    string with *, ? or [ that is not an existing path is a glob (** recurses). Nothing found
    at all is an error that names the inputs.
    """
    files: list[str] = []
    skipped: list[Skipped] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            _walk(path, files, skipped)
        elif path.exists() or path.is_symlink():
            files.append(str(path))
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(glob.glob(str(item), recursive=True))
            files += [m for m in matches if not Path(m).is_dir()]
        else:
            skipped.append(Skipped(str(path), "missing", "no such file or folder"))
    if not files and not any(s.reason != "missing" for s in skipped):
        shown = ", ".join(str(i) for i in list(inputs)[:3])
        raise DataError(f"no image files found in {shown}; pass image files, folders or globs")
    seen: set[str] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]
    return unique, skipped


def _walk(root: Path, files: list[str], skipped: list[Skipped]) -> None:
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not imaging.is_hidden(d))
        for name in sorted(names):
            if imaging.is_hidden(name):
                continue  # .DS_Store, ._x.jpg: never a user's image
            path = os.path.join(folder, name)
            reason = imaging.extension_reason(name)
            if reason is None:
                files.append(path)
            else:
                skipped.append(Skipped(path, reason, imaging.REASONS[reason]))


# ---------------------------------------------------------------------------------------------
# prediction


def predict_images(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike],
    *,
    topk: int = 5,
    batch_size: int = 32,
    workers: int = 4,
    tta: Tta = Tta.NONE,
) -> PredictionSet:
    """Top-k classes for every image under `inputs`, `batch_size` images per model call.

    Decoding runs in `workers` threads (Pillow and NumPy release the GIL); the model sees
    batches in input order, so results do not depend on `workers` or `batch_size`.
    """
    if topk < 1:
        raise ConfigError(f"topk must be at least 1, got {topk}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    files, skipped = collect_images(inputs)
    result = PredictionSet(classes=list(predictor.classes), skipped=skipped)
    forward = with_tta(predictor.logits, tta)  # every kind: a run, ONNX Runtime, TorchScript
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for chunk in _chunks(files, batch_size):
            arrays = list(pool.map(lambda p: _try_preprocess(predictor, p), chunk))
            good = [(p, a) for p, a in zip(chunk, arrays, strict=True) if isinstance(a, np.ndarray)]
            result.skipped += [a for a in arrays if isinstance(a, Skipped)]
            if good:
                batch = np.stack([a for _, a in good])
                logits = forward(batch)
                paths = [p for p, _ in good]
                result.predictions += deploy.top_predictions(paths, logits, result.classes, topk)
    return result


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _try_preprocess(predictor: Predictor, path: str) -> np.ndarray | Skipped:
    try:
        return predictor.preprocess(path)
    except imaging.ImageError as e:
        return Skipped(path, e.reason, e.detail)


# ---------------------------------------------------------------------------------------------
# models


def open_predictor(
    model: str | os.PathLike, *, runs_dir: str | os.PathLike | None = None
) -> Predictor:
    """A Predictor for a run (folder or name), a model.onnx or a model.torchscript.pt."""
    path = Path(model)
    if path.suffix == ".onnx":
        return deploy.OnnxClassifier(path)
    if path.is_file() and path.suffix == ".pt":
        return TorchScriptPredictor(path)
    return RunPredictor(model, runs_dir=runs_dir)


class RunPredictor:
    """A run's best model (model.safetensors) in PyTorch on the CPU, as `evaluate` runs it: the
    inference copy with BatchNorm folded, channels_last (evaluation/inference.py)."""

    def __init__(
        self, run: str | os.PathLike, *, runs_dir: str | os.PathLike | None = None
    ) -> None:
        from cnnlab import runs
        from cnnlab.evaluation.evaluate import load_best

        self.run_dir = runs.resolve_run(run, runs_dir)
        self.model, card = load_best(self.run_dir)  # notes a run still training on stderr
        self._classes = list(card["classes"])
        self._fast: Any = None  # built on the first batch, which it is checked against

    @property
    def classes(self) -> list[str]:
        return self._classes

    def preprocess(self, path: str | os.PathLike) -> np.ndarray:
        from cnnlab.data.transforms import load_for_predict

        try:
            return load_for_predict(path, self.model.preprocess)[0].numpy()
        except DataError as e:  # load_for_predict wraps the ImageError; keep its reason
            if isinstance(e.__cause__, imaging.ImageError):
                raise e.__cause__ from None
            raise

    def logits(self, batch: np.ndarray) -> np.ndarray:
        import torch

        from cnnlab.evaluation.inference import inference_model

        x = torch.from_numpy(batch)
        if self._fast is None:
            self._fast = inference_model(self.model.cpu().eval(), x)
        return self._fast(x).float().numpy()


class TorchScriptPredictor:
    """A model.torchscript.pt written by `cnnlab export --format torchscript`."""

    def __init__(self, path: str | os.PathLike) -> None:
        from cnnlab.export.torchscript import load_torchscript

        self.module, self.meta = load_torchscript(Path(path))

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    def preprocess(self, path: str | os.PathLike) -> np.ndarray:
        return deploy.preprocess_image(path, self.meta)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(batch)).float().numpy()
