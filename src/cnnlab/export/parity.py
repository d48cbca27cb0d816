"""Does the exported file compute what the PyTorch model computes, on the run's own images?

    images = validation_images(run_dir, model)              # real validation images, as evaluate sees them
    report = compare_logits(torch_logits, ort_logits, images.names)
    print(report.line())   # parity on 64 val images: max |Δlogit| 2.1e-06, top-1 agreement 64/64

The criterion is numpy's allclose on every logit, |exported - torch| <= atol + rtol * |torch|
(atol 1e-4, rtol 1e-3), and the same top-1 class on every image. The worst image is the one
that uses up the largest share of its tolerance, so a failure names the file to look at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ATOL, RTOL = 1e-4, 1e-3
DEFAULT_IMAGES = 64  # enough to cover every class of a small data set; seconds even for VGG


@dataclass(frozen=True)
class ParityImages:
    x: torch.Tensor  # (N, C, H, W) float32: exactly what `evaluate` feeds the model
    names: list[str]  # a file path, or where the image sits in a built-in data set
    split: str


@dataclass(frozen=True)
class Parity:
    runtime: str  # what ran the exported file, e.g. "onnxruntime 1.32.0 (CPUExecutionProvider)"
    split: str
    images: int
    max_abs_diff: float
    top1_agree: int
    worst_image: str
    worst_abs_diff: float  # the worst image's largest |Δlogit|
    batch_sizes: tuple[int, ...]  # the batch sizes the exported file was run with
    atol: float = ATOL
    rtol: float = RTOL
    within_tolerance: bool = True
    # After a failure: max |PyTorch float32 - float64| and max |exported - float64| on the
    # same images. A deep network can amplify float32 rounding beyond the tolerance; if the
    # export is as close to exact arithmetic as PyTorch itself, the export is not at fault.
    torch_fp32_error: float | None = None
    exported_error: float | None = None
    # The largest |logit| PyTorch gives on these images: the scale `rtol` is relative to (an
    # untrained network in eval mode can reach 1e5 and pass on a large absolute difference).
    max_abs_logit: float | None = None

    @property
    def passed(self) -> bool:
        return self.within_tolerance and self.top1_agree == self.images

    def line(self) -> str:
        agree = f"{self.top1_agree}/{self.images} ({self.top1_agree / self.images:.0%})"
        return (
            f"parity with PyTorch on {self.images} {self.split} images ({self.runtime}): "
            f"max |Δlogit| {self.max_abs_diff:.1e} (allowed {self.atol:g} + {self.rtol:g}·|logit|), "
            f"top-1 agreement {agree}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def diagnosis(self) -> str:
        """Why it failed, for the error message (after `with_float64`)."""
        if self.torch_fp32_error is None or self.exported_error is None:
            return ""
        numbers = (
            f"against float64 arithmetic, PyTorch's float32 logits are off by up to "
            f"{self.torch_fp32_error:.1e} and the export's by {self.exported_error:.1e}"
        )
        if self.exported_error <= self.torch_fp32_error:
            return (
                f"{numbers}: the export is as exact as PyTorch itself, the network amplifies "
                f"float32 rounding beyond the tolerance; accept it with a larger --atol"
            )
        return f"{numbers}: the export is less exact than PyTorch, an export problem"


def compare_logits(
    reference: np.ndarray,
    exported: np.ndarray,
    names: Sequence[str],
    *,
    runtime: str,
    split: str = "val",
    batch_sizes: Sequence[int] = (),
    atol: float = ATOL,
    rtol: float = RTOL,
) -> Parity:
    """Parity of (N, K) logits from the exported file against PyTorch's, image by image."""
    ref = np.asarray(reference, np.float64)
    out = np.asarray(exported, np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"logits of shape {out.shape} against {ref.shape}")
    diff = np.abs(out - ref)
    diff[np.isnan(diff)] = np.inf  # a NaN on one side is the worst disagreement there is
    # Share of the tolerance used, per logit; > 1 fails. The worst image has the largest share.
    share = diff / (atol + rtol * np.abs(ref))
    worst = int(np.argmax(share.max(axis=1)))
    return Parity(
        runtime=runtime,
        split=split,
        images=len(ref),
        max_abs_diff=float(diff.max()),
        top1_agree=int((ref.argmax(axis=1) == out.argmax(axis=1)).sum()),
        worst_image=str(names[worst]),
        worst_abs_diff=float(diff[worst].max()),
        batch_sizes=tuple(batch_sizes),
        atol=atol,
        rtol=rtol,
        within_tolerance=bool((share <= 1).all()),
        max_abs_logit=float(np.abs(ref).max()),
    )


def run_batched(
    fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, dynamic_batch: bool, batch: int = 32
) -> tuple[np.ndarray, tuple[int, ...]]:
    """fn over x in batches: the first image alone, then batches of `batch` (a fixed-batch
    export, traced at 1, runs image by image). Returns the logits and the batch sizes used."""
    if not dynamic_batch:
        sizes = [1] * len(x)
    else:
        sizes = [1] + [min(batch, len(x) - i) for i in range(1, len(x), batch)]
    outs, start = [], 0
    for n in sizes:
        outs.append(fn(x[start : start + n]))
        start += n
    return np.concatenate(outs), tuple(sorted(set(sizes)))


def with_float64(
    parity: Parity, model: torch.nn.Module, x: torch.Tensor, exported: np.ndarray
) -> Parity:
    """`parity` with the float64 errors of PyTorch float32 and of the exported logits."""
    import copy
    import dataclasses

    exact = torch_logits(copy.deepcopy(model).double(), x.double())
    fp32 = torch_logits(model, x)
    return dataclasses.replace(
        parity,
        torch_fp32_error=float(np.abs(fp32 - exact).max()),
        exported_error=float(np.abs(np.asarray(exported, np.float64) - exact).max()),
    )


@torch.inference_mode()
def torch_logits(model: torch.nn.Module, x: torch.Tensor, batch: int = 32) -> np.ndarray:
    """The reference: the eager model in float32 on the CPU, in eval mode."""
    model = model.eval().cpu()
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


# ---------------------------------------------------------------------------------------------
# The one adapter to the run's data: `evaluate`'s own `run_bundle` (config.yaml, the split
# manifest and the saved model's preprocessing), so parity is checked on exactly the pixels
# `evaluate` feeds the model.


def validation_images(
    run_dir: Path, model: torch.nn.Module, *, limit: int = DEFAULT_IMAGES
) -> ParityImages:
    """Up to `limit` of the run's validation images (test if it has no validation split),
    evenly spread over the split, preprocessed exactly as `evaluate` preprocesses them."""
    from cnnlab import runs
    from cnnlab.errors import RunError
    from cnnlab.evaluation.evaluate import run_bundle

    bundle = run_bundle(runs.read_config(run_dir), run_dir, model.preprocess)
    split, dataset = ("val", bundle.val) if bundle.val is not None else ("test", bundle.test)
    if dataset is None or len(dataset) == 0:
        raise RunError(f"{run_dir} has no validation or test images to check the export on")
    index = np.unique(np.linspace(0, len(dataset) - 1, min(limit, len(dataset))).round())
    index = [int(i) for i in index]
    x = torch.stack([torch.as_tensor(dataset[i][0]) for i in index])
    if bundle.batch_transform is not None:  # uint8 items are normalised per batch
        x = bundle.batch_transform(x)
    return ParityImages(x.float().contiguous(), _image_names(run_dir, dataset, index, split), split)


def _image_names(run_dir: Path, dataset: Any, index: list[int], split: str) -> list[str]:
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        return [str(paths[i]) for i in index]
    manifest = run_dir / "split_manifest.csv"  # Fashion-MNIST: rows name IDX-file images
    if manifest.exists():
        from cnnlab.data.split import read_manifest

        rows = [r.path for r in read_manifest(manifest) if r.split == split]
        if len(rows) == len(dataset) and all(r.split("#")[0] in IDX_FILES for r in rows):
            return [f"Fashion-MNIST {_idx_name(rows[i])} ({split} #{i})" for i in index]
    return [f"{split} image #{i}" for i in index]


IDX_FILES = {"train-images": "train", "t10k-images": "test"}  # Fashion-MNIST's two image files


def _idx_name(row: str) -> str:
    """'train-images#12345' (a manifest row) -> 'train image #12345'."""
    source, number = row.split("#")
    return f"{IDX_FILES[source]} image #{number}"
