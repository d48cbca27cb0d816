"""NumPy reference for conv and pooling: the definitions, readable, and checked against PyTorch.

Every output value is "a window of the (padded) input, combined with the filter"; `windows` builds
all those windows at once as a strided view, and each operator is one reduction over them:

    conv2d      sum(window · filter) + bias    (per group of channels)
    max_pool2d  max(window)                    (padding is −inf, so it never wins)
    avg_pool2d  mean(window)                   (padding zeros counted, as PyTorch's default)

Shapes: x is (C, H, W) or (N, C, H, W); a conv filter w is (C_out, C_in/groups, kH, kW).
Clarity beats speed, but nothing loops over pixels: a 3x3 conv over 8x32x32 takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlab.arithmetic import conv_output_size

IntPair = int | tuple[int, int]
# int p, (p_vertical, p_horizontal), or ((top, bottom), (left, right)).
Padding = int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]]


def as_pair(name: str, value: IntPair) -> tuple[int, int]:
    """An int or (vertical, horizontal) pair as (vertical, horizontal) ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be an int or a (vertical, horizontal) pair, got {value!r}")


def as_padding(padding: Padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """Normalise padding to ((top, bottom), (left, right)); negative padding is an error."""
    if (
        isinstance(padding, Sequence)
        and len(padding) == 2
        and all(isinstance(p, Sequence) for p in padding)
    ):
        (top, bottom), (left, right) = (
            as_pair("padding", padding[0]),
            as_pair("padding", padding[1]),
        )
    else:
        (top, left) = as_pair("padding", padding)
        bottom, right = top, left
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return (top, bottom), (left, right)


def pad2d(x: np.ndarray, padding: Padding, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes (H, W) of x with a constant; any leading axes are left alone."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"pad2d needs at least 2 dimensions (H, W), got shape {x.shape}")
    (top, bottom), (left, right) = as_padding(padding)
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    return np.pad(x, widths, mode="constant", constant_values=value)


def windows(
    xp: np.ndarray, kernel: IntPair, stride: IntPair = 1, dilation: IntPair = 1
) -> np.ndarray:
    """All kernel windows of an already padded xp (..., H, W) as a view (..., H_out, W_out, kH, kW).

    Window (i, j) starts at row i·s_h, column j·s_w and takes every d-th pixel, so
    view[..., i, j, a, b] = xp[..., i·s_h + a·d_h, j·s_w + b·d_w]. No copy is made.
    """
    (kh, kw), (sh, sw), (dh, dw) = (
        as_pair("kernel", kernel),
        as_pair("stride", stride),
        as_pair("dilation", dilation),
    )
    h_out = conv_output_size(xp.shape[-2], kh, 0, sh, dh)  # raises when the kernel does not fit
    w_out = conv_output_size(xp.shape[-1], kw, 0, sw, dw)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    view = sliding_window_view(xp, (span_h, span_w), axis=(-2, -1))
    # Every s-th window start, every d-th pixel inside the window.
    return view[..., : (h_out - 1) * sh + 1 : sh, : (w_out - 1) * sw + 1 : sw, ::dh, ::dw]


def _batched(x: np.ndarray) -> tuple[np.ndarray, bool]:
    x = np.asarray(x)
    if x.ndim == 3:
        return x[None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"x must be (C, H, W) or (N, C, H, W), got shape {x.shape}")


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: IntPair = (1, 1),
    padding: Padding = (0, 0),
    dilation: IntPair = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """2-D convolution as deep-learning frameworks define it: a cross-correlation.

        out[n, o, i, j] = b[o] + sum over (c, u, v) of
            w[o, c, u, v] · xp[n, g·C_in/groups + c, i·s_h + u·d_h, j·s_w + v·d_w]
    where g is the group of output channel o and xp is x zero-padded. The kernel is NOT flipped
    (the mathematical convolution would flip it); this matches torch.nn.functional.conv2d.
    Returns (C_out, H_out, W_out) or (N, C_out, H_out, W_out) following the shape of x. Integer
    inputs give integer outputs.
    """
    xb, unbatched = _batched(x)
    w = np.asarray(w)
    if w.ndim != 4:
        raise ValueError(f"w must be (C_out, C_in/groups, kH, kW), got shape {w.shape}")
    n, c_in = xb.shape[:2]
    c_out, c_per_group, kh, kw = w.shape
    if groups < 1 or c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide C_in={c_in} and C_out={c_out}")
    if c_per_group * groups != c_in:
        raise ValueError(
            f"w expects {c_per_group}·{groups} = {c_per_group * groups} input channels "
            f"(C_in/groups · groups), x has {c_in}"
        )
    win = windows(pad2d(xb, padding), (kh, kw), stride, dilation)  # (N, C_in, Ho, Wo, kH, kW)
    h_out, w_out = win.shape[2:4]
    # Split channels into groups: input (N, G, C_in/G, ...), filters (G, C_out/G, C_in/G, kH, kW).
    win = win.reshape(n, groups, c_per_group, h_out, w_out, kh, kw)
    wg = w.reshape(groups, c_out // groups, c_per_group, kh, kw)
    out = np.einsum("ngchwab,gocab->ngohw", win, wg, optimize=True)
    out = out.reshape(n, c_out, h_out, w_out)
    if b is not None:
        b = np.asarray(b)
        if b.shape != (c_out,):
            raise ValueError(f"bias must have shape ({c_out},), got {b.shape}")
        out = out + b[None, :, None, None]
    return out[0] if unbatched else out


def max_pool2d(
    x: np.ndarray,
    kernel: IntPair,
    stride: IntPair | None = None,
    padding: Padding = (0, 0),
    dilation: IntPair = (1, 1),
) -> np.ndarray:
    """Max over each window, per channel; the stride defaults to the kernel size (PyTorch).

    Padding uses the smallest value of the dtype (−inf for floats), so a padded cell never wins,
    as in PyTorch. x is (C, H, W) or (N, C, H, W), or any (..., H, W).
    """
    x = np.asarray(x)
    stride = kernel if stride is None else stride
    fill = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
    win = windows(pad2d(x, padding, fill), kernel, stride, dilation)
    return win.max(axis=(-2, -1))


def avg_pool2d(
    x: np.ndarray,
    kernel: IntPair,
    stride: IntPair | None = None,
    padding: Padding = (0, 0),
    count_include_pad: bool = True,
) -> np.ndarray:
    """Mean over each window, per channel; the stride defaults to the kernel size (PyTorch).

    Padding is zeros. With count_include_pad=True (PyTorch's default) a window always divides by
    kH·kW, so windows that overlap the padding are pulled towards 0; with False it divides by the
    number of real pixels in the window. Always returns floats.
    """
    x = np.asarray(x, dtype=np.result_type(np.asarray(x).dtype, np.float32))
    stride = kernel if stride is None else stride
    total = windows(pad2d(x, padding), kernel, stride).sum(axis=(-2, -1))
    if count_include_pad:
        kh, kw = as_pair("kernel", kernel)
        return total / (kh * kw)
    # Count the real pixels in each window: the same windows over a padded mask of ones.
    ones = np.ones(x.shape[-2:], dtype=x.dtype)
    count = windows(pad2d(ones, padding), kernel, stride).sum(axis=(-2, -1))
    return total / count


__all__ = [
    "as_padding",
    "as_pair",
    "avg_pool2d",
    "conv2d",
    "max_pool2d",
    "pad2d",
    "windows",
]
