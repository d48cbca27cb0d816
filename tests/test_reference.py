"""The NumPy reference against PyTorch over random shapes, plus its edge cases and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.arithmetic import conv_output_shape, pool_output_size
from cnnlab.reference import (
    as_padding,
    avg_pool2d,
    conv2d,
    max_pool2d,
    pad2d,
    windows,
)

ATOL = 1e-4  # float64 on both sides; sums of at most a few hundred products


@st.composite
def conv_cases(draw: st.DrawFn) -> dict:
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    # Inputs at least as large as the padded effective kernel, so the output is never empty.
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 12))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 12))
    return {
        "batch": draw(st.sampled_from([None, 1, 2])),  # None: unbatched (C, H, W)
        "x": (c_in, h, w),
        "w": (c_out, c_in // groups, kh, kw),
        "bias": draw(st.booleans()),
        "stride": (sh, sw),
        "padding": (ph, pw),
        "dilation": (dh, dw),
        "groups": groups,
        "seed": draw(st.integers(0, 2**16)),
    }


@given(conv_cases())
@settings(max_examples=80, deadline=None)
def test_conv2d_matches_torch(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    shape = case["x"] if case["batch"] is None else (case["batch"], *case["x"])
    x, w = rng.standard_normal(shape), rng.standard_normal(case["w"])
    b = rng.standard_normal(case["w"][0]) if case["bias"] else None
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}

    ours = conv2d(x, w, b, **kw)
    theirs = F.conv2d(
        torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b), **kw
    ).numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=ATOL)
    hw = conv_output_shape(
        case["x"][1:], case["w"][2:], case["padding"], case["stride"], case["dilation"]
    )
    assert ours.shape[-2:] == hw


@st.composite
def pool_cases(draw: st.DrawFn) -> dict:
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    # PyTorch allows at most half the kernel as padding.
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    return {
        "x": (
            draw(st.integers(1, 2)),
            draw(st.integers(1, 3)),
            draw(st.integers(max(1, kh - 2 * ph), 11)),
            draw(st.integers(max(1, kw - 2 * pw), 11)),
        ),
        "kernel": (kh, kw),
        "stride": stride,
        "padding": (ph, pw),
        "seed": draw(st.integers(0, 2**16)),
    }


@given(pool_cases(), st.tuples(st.integers(1, 2), st.integers(1, 2)))
@settings(max_examples=60, deadline=None)
def test_max_pool2d_matches_torch(case: dict, dilation: tuple[int, int]) -> None:
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x"])
    span = [d * (k - 1) + 1 for d, k in zip(dilation, case["kernel"], strict=True)]
    if any(n + 2 * p < s for n, p, s in zip(x.shape[2:], case["padding"], span, strict=True)):
        return  # the dilated window does not fit: covered by the error tests
    ours = max_pool2d(x, case["kernel"], case["stride"], case["padding"], dilation)
    theirs = F.max_pool2d(
        torch.from_numpy(x), case["kernel"], case["stride"], case["padding"], dilation
    ).numpy()
    np.testing.assert_allclose(ours, theirs, atol=ATOL)
    stride = case["stride"] or case["kernel"]
    assert ours.shape[2:] == tuple(
        pool_output_size(n, k, p, s, d)
        for n, k, p, s, d in zip(
            x.shape[2:], case["kernel"], case["padding"], stride, dilation, strict=True
        )
    )


@given(pool_cases(), st.booleans())
@settings(max_examples=60, deadline=None)
def test_avg_pool2d_matches_torch(case: dict, count_include_pad: bool) -> None:
    x = np.random.default_rng(case["seed"]).standard_normal(case["x"]).astype(np.float32)
    ours = avg_pool2d(x, case["kernel"], case["stride"], case["padding"], count_include_pad)
    theirs = F.avg_pool2d(
        torch.from_numpy(x),
        case["kernel"],
        case["stride"],
        case["padding"],
        count_include_pad=count_include_pad,
    ).numpy()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=ATOL)


def test_conv2d_is_cross_correlation_not_flipped() -> None:
    x = np.arange(9).reshape(1, 3, 3)
    w = np.array([[[[1, 0], [0, 0]]]])  # picks the window's top-left pixel
    np.testing.assert_array_equal(conv2d(x, w), [[[0, 1], [3, 4]]])


def test_conv2d_keeps_integers_and_handles_asymmetric_padding() -> None:
    x = np.arange(2 * 5 * 6).reshape(2, 5, 6)
    w = np.ones((4, 1, 2, 3), dtype=np.int64)
    out = conv2d(x, w, padding=((1, 0), (2, 1)), groups=2, stride=(2, 1))
    assert out.dtype == np.int64
    theirs = F.conv2d(
        F.pad(torch.from_numpy(x)[None], (2, 1, 1, 0)), torch.from_numpy(w), stride=(2, 1), groups=2
    )[0].numpy()
    np.testing.assert_array_equal(out, theirs)


def test_windows_are_views_so_conv2d_is_one_vectorised_einsum() -> None:
    # Speed comes from the sliding windows being a strided view of the padded input (no
    # per-pixel copy or Python loop); a wall-clock bound would only measure the machine.
    from cnnlab.reference import pad2d, windows

    xp = pad2d(np.random.default_rng(0).standard_normal((1, 8, 32, 32)), (1, 1))
    win = windows(xp, (3, 3), (1, 1), (1, 1))
    assert win.shape == (1, 8, 32, 32, 3, 3) and np.shares_memory(win, xp)
    assert win.nbytes == 9 * xp[..., 1:-1, 1:-1].nbytes  # a 9x larger view over the same buffer


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "match"),
    [
        ((3, 5, 5), (4, 2, 3, 3), {}, "input channels"),
        ((4, 5, 5), (6, 2, 3, 3), {"groups": 4}, "groups=4 must divide"),
        ((3, 2, 2), (4, 3, 3, 3), {}, "larger than the padded input"),
        ((5, 5), (1, 1, 3, 3), {}, r"\(C, H, W\) or \(N, C, H, W\)"),
        ((1, 5, 5), (3, 3), {}, "C_out, C_in/groups"),
        ((1, 5, 5), (2, 1, 3, 3), {"b": np.zeros(3)}, r"bias must have shape \(2,\)"),
        ((1, 5, 5), (1, 1, 3, 3), {"padding": -1}, "padding must be >= 0"),
        ((1, 5, 5), (1, 1, 3, 3), {"stride": 0}, "stride s must be >= 1"),
    ],
)
def test_conv2d_errors(x_shape, w_shape, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        conv2d(np.zeros(x_shape), np.zeros(w_shape), **kwargs)


def test_pad2d_and_padding_forms() -> None:
    x = np.ones((2, 2), dtype=np.int64)
    assert as_padding(1) == ((1, 1), (1, 1))
    assert as_padding((1, 2)) == ((1, 1), (2, 2))
    assert as_padding(((0, 1), (2, 3))) == ((0, 1), (2, 3))
    out = pad2d(x, ((0, 1), (2, 0)))
    np.testing.assert_array_equal(out, [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
    assert pad2d(np.ones((3, 1, 2, 2)), 1).shape == (3, 1, 4, 4)  # leading axes untouched
    assert pad2d(x, 1, value=-7)[0, 0] == -7
    with pytest.raises(ValueError, match="pair"):
        as_padding((1, 2, 3))  # type: ignore[arg-type]


def test_windows_view_indexing() -> None:
    xp = np.arange(7 * 8).reshape(7, 8)
    view = windows(xp, (2, 3), stride=(2, 1), dilation=(3, 2))
    assert view.shape == (2, 4, 2, 3)
    i, j, a, b = 1, 2, 1, 2
    assert view[i, j, a, b] == xp[i * 2 + a * 3, j * 1 + b * 2]


def test_max_pool_integer_padding_never_wins() -> None:
    x = -np.ones((1, 2, 2), dtype=np.int64)
    out = max_pool2d(x, 2, stride=1, padding=1)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, -np.ones((1, 3, 3)))
