"""The parity criterion as a pure function, the batching, and the adapter to a run's images."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from cnnlab.data.transforms import load_for_predict
from cnnlab.export import load_exported
from cnnlab.export.parity import compare_logits, run_batched, validation_images

NAMES = ["a.jpg", "b.jpg", "c.jpg"]
REF = np.array([[1.0, 2.0, 3.0], [10.0, -10.0, 0.0], [0.5, 0.25, 0.0]])


def test_within_tolerance_passes_and_reports_the_largest_difference() -> None:
    p = compare_logits(REF, REF + [[5e-5, 0, 0], [0, 0, 0], [0, 0, 0]], NAMES, runtime="rt")
    assert p.passed and p.images == 3 and p.top1_agree == 3
    assert p.max_abs_diff == pytest.approx(5e-5) and p.worst_image == "a.jpg"
    assert p.max_abs_logit == 10.0  # |-10| and 10 in image b: the scale the rtol part uses
    # |Δ| 9e-3 on a logit of 0 in image b: allowed 1e-4 + 1e-3·0, so it fails there.
    out = REF + np.array([[5e-5, 0, 0], [0, 0, 9e-3], [0, 0, 0]])
    q = compare_logits(REF, out, NAMES, runtime="rt")
    assert not q.passed and q.within_tolerance is False and q.top1_agree == 3
    assert q.worst_image == "b.jpg" and q.worst_abs_diff == pytest.approx(9e-3)


def test_the_tolerance_grows_with_the_logit() -> None:
    # 9e-3 on the logit 10 of image b: allowed 1e-4 + 1e-3·10 = 1.01e-2.
    out = REF + np.array([[0, 0, 0], [9e-3, 0, 0], [0, 0, 0]])
    assert compare_logits(REF, out, NAMES, runtime="rt").passed


def test_a_changed_top1_fails_even_within_tolerance() -> None:
    ref = np.array([[1.0, 1.00001], [0.0, 1.0]])
    out = np.array([[1.00002, 1.00001], [0.0, 1.0]])
    p = compare_logits(ref, out, ["x", "y"], runtime="rt")
    assert p.within_tolerance and p.top1_agree == 1 and not p.passed
    assert "top-1 agreement 1/2 (50%)" in p.line()


def test_nan_is_the_worst_disagreement() -> None:
    out = REF.copy()
    out[2, 1] = np.nan
    p = compare_logits(REF, out, NAMES, runtime="rt")
    assert not p.passed and p.worst_image == "c.jpg" and math.isinf(p.max_abs_diff)


def test_line_reads_as_documented() -> None:
    p = compare_logits(REF, REF + 2.1e-6, NAMES, runtime="onnxruntime 1.32.0", split="val")
    assert p.line() == (
        "parity with PyTorch on 3 val images (onnxruntime 1.32.0): max |Δlogit| 2.1e-06 "
        "(allowed 0.0001 + 0.001·|logit|), top-1 agreement 3/3 (100%)"
    )


def test_run_batched_uses_one_image_then_full_batches() -> None:
    x = np.arange(70, dtype=np.float32).reshape(70, 1)
    seen: list[int] = []

    def fn(b: np.ndarray) -> np.ndarray:
        seen.append(len(b))
        return b * 2

    out, sizes = run_batched(fn, x, dynamic_batch=True, batch=32)
    assert seen == [1, 32, 32, 5] and sizes == (1, 5, 32)
    np.testing.assert_array_equal(out, x * 2)
    seen.clear()
    out, sizes = run_batched(fn, x[:3], dynamic_batch=False)
    assert seen == [1, 1, 1] and sizes == (1,)


def test_validation_images_are_the_runs_val_files_as_evaluate_sees_them(run_of) -> None:
    run_dir = run_of("resnet18", 32)
    model, _ = load_exported(run_dir)
    images = validation_images(run_dir, model, limit=5)
    files = sorted(p for p in (run_dir.parents[1] / "data" / "val").rglob("*") if p.is_file())
    # 5 of 12, evenly spread: indices 0, 3, 6, 8, 11 (linspace rounded)
    index = [0, 3, 6, 8, 11]
    assert images.split == "val" and images.names == [str(files[i]) for i in index]
    expected = torch.cat([load_for_predict(files[i], model.preprocess) for i in index])
    assert torch.equal(images.x, expected)


def test_diagnosis_tells_float32_rounding_from_an_export_problem() -> None:
    failed = compare_logits(REF, REF + 1e-3, NAMES, runtime="rt")
    assert not failed.passed and failed.diagnosis() == ""  # before with_float64
    rounding = dataclasses.replace(failed, torch_fp32_error=4e-4, exported_error=2e-4)
    assert rounding.diagnosis() == (
        "against float64 arithmetic, PyTorch's float32 logits are off by up to 4.0e-04 and the "
        "export's by 2.0e-04: the export is as exact as PyTorch itself, the network amplifies "
        "float32 rounding beyond the tolerance; accept it with a larger --atol"
    )
    broken = dataclasses.replace(failed, torch_fp32_error=1e-6, exported_error=1e-3)
    assert broken.diagnosis().endswith("the export is less exact than PyTorch, an export problem")
