"""Conv arithmetic as small pure functions: output sizes, parameters, MACs/FLOPs, receptive fields.

No torch here: these functions are the derivation a summary table prints next to its numbers, and
the tests check them against hand-computed values and against PyTorch.

    >>> conv_output_size(227, 11, s=4)  # AlexNet conv1
    55
    >>> formula_conv_output(28, 3, 1, 1)
    'floor((28 + 2·1 − 3) / 1) + 1 = 28'
    >>> formula_conv_params(64, 128, 3)
    '(3·3·64 + 1)·128 = 73,856'

Conventions (stated once, because counters in the wild disagree by 2x):
- 1 MAC (multiply-accumulate) = 2 FLOPs. `conv_flops` = 2·`conv_macs`, the same count as
  `torch.utils.flop_counter.FlopCounterMode` for conv and linear; the bias add is not counted.
- Sizes follow PyTorch: the effective kernel of a dilated conv is d·(f−1)+1, padding is p zeros on
  each side, and the division rounds down (pooling may round up with `ceil_mode`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# '·' and '−' are the only non-ASCII characters in formula strings: they read better than '*'
# and '-' in a table, and every terminal font has them.
DOT = "·"
MINUS = "−"


def _check_int(name: str, value: object, minimum: int) -> int:
    # bool is an int subclass; True as a kernel size is always a caller bug.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, Sequence) and len(value) == 2:
        return value[0], value[1]
    raise ValueError(f"{name} must be an int or a (vertical, horizontal) pair, got {value!r}")


def _ceil_div(a: int, b: int) -> int:
    # Integer ceil: math.ceil(a / b) goes through a float and can round wrongly for huge a.
    return -(-a // b)


def effective_kernel(f: int, d: int = 1) -> int:
    """Span of a dilated kernel: d·(f−1)+1 (a 3-tap kernel with d=2 covers 5 pixels)."""
    return d * (f - 1) + 1


def conv_output_size(n: int, f: int, p: int = 0, s: int = 1, d: int = 1) -> int:
    """Output length along one axis: floor((n + 2p − d·(f−1) − 1) / s) + 1.

    With d=1 this is the textbook floor((n + 2p − f) / s) + 1. Raises ValueError when the
    (effective) kernel does not fit in the padded input.
    """
    _check_int("input size n", n, 1)
    _check_int("kernel size f", f, 1)
    _check_int("padding p", p, 0)
    _check_int("stride s", s, 1)
    _check_int("dilation d", d, 1)
    f_eff = effective_kernel(f, d)
    if n + 2 * p < f_eff:
        dilated = f" (effective {f_eff} with dilation {d})" if d > 1 else ""
        raise ValueError(
            f"kernel {f}{dilated} is larger than the padded input {n + 2 * p} "
            f"(n + 2p = {n} + 2{DOT}{p}); use a smaller kernel or more padding"
        )
    return (n + 2 * p - f_eff) // s + 1


def conv_output_shape(
    hw: tuple[int, int],
    kernel: tuple[int, int],
    padding: tuple[int, int] = (0, 0),
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
) -> tuple[int, int]:
    """(H_out, W_out): `conv_output_size` per axis, with separate vertical/horizontal values."""
    h, w = _pair("hw", hw)
    (fh, fw), (ph, pw) = _pair("kernel", kernel), _pair("padding", padding)
    (sh, sw), (dh, dw) = _pair("stride", stride), _pair("dilation", dilation)
    return conv_output_size(h, fh, ph, sh, dh), conv_output_size(w, fw, pw, sw, dw)


def pool_output_size(
    n: int, f: int, p: int = 0, s: int | None = None, d: int = 1, ceil_mode: bool = False
) -> int:
    """Output length of max/avg pooling along one axis, exactly as PyTorch computes it.

    The stride defaults to the kernel size (non-overlapping windows). PyTorch allows at most
    p = f // 2 padding, so that no window lies entirely in padding. With `ceil_mode` the division
    rounds up, but a last window that would start in the right padding is dropped: it must start
    inside the input or the left padding.
    """
    s = f if s is None else s
    out = conv_output_size(n, f, p, s, d)  # validates the arguments and floor mode
    if p > f // 2:
        raise ValueError(f"pooling padding {p} is more than half the kernel {f} (PyTorch rule)")
    if ceil_mode:
        out = _ceil_div(n + 2 * p - effective_kernel(f, d), s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
    return out


def _kernel_hw(kernel: tuple[int, int] | int) -> tuple[int, int]:
    fh, fw = _pair("kernel", kernel)
    return _check_int("kernel height", fh, 1), _check_int("kernel width", fw, 1)


def _check_groups(c_in: int, c_out: int, groups: int) -> None:
    _check_int("c_in", c_in, 1)
    _check_int("c_out", c_out, 1)
    _check_int("groups", groups, 1)
    # PyTorch requires both: each group maps c_in/groups inputs to c_out/groups outputs.
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"groups={groups} must divide both c_in={c_in} and c_out={c_out} "
            f"(depthwise conv: groups = c_in)"
        )


def conv_params(
    c_in: int, c_out: int, kernel: tuple[int, int] | int, groups: int = 1, bias: bool = True
) -> int:
    """Learnable parameters of a conv layer: (f_h·f_w·c_in/groups + bias)·c_out."""
    fh, fw = _kernel_hw(kernel)
    _check_groups(c_in, c_out, groups)
    return (fh * fw * (c_in // groups) + int(bias)) * c_out


def linear_params(n_in: int, n_out: int, bias: bool = True) -> int:
    """Learnable parameters of a fully connected layer: (n_in + bias)·n_out."""
    _check_int("n_in", n_in, 1)
    _check_int("n_out", n_out, 1)
    return (n_in + int(bias)) * n_out


def batchnorm_params(c: int) -> int:
    """Learnable BatchNorm parameters: 2c (gamma and beta).

    The running mean and variance are buffers, not parameters: they are saved in checkpoints but
    not trained, and PyTorch's `parameters()` does not list them.
    """
    return 2 * _check_int("channels c", c, 1)


def conv_macs(
    c_in: int,
    c_out: int,
    kernel: tuple[int, int] | int,
    out_hw: tuple[int, int],
    groups: int = 1,
) -> int:
    """Multiply-accumulates of one conv on one sample: f_h·f_w·(c_in/groups)·c_out·H_out·W_out.

    Each output value is a dot product over an f_h·f_w·(c_in/groups) window; the bias is ignored.
    """
    fh, fw = _kernel_hw(kernel)
    _check_groups(c_in, c_out, groups)
    h_out, w_out = _pair("out_hw", out_hw)
    _check_int("H_out", h_out, 1)
    _check_int("W_out", w_out, 1)
    return fh * fw * (c_in // groups) * c_out * h_out * w_out


def conv_flops(
    c_in: int,
    c_out: int,
    kernel: tuple[int, int] | int,
    out_hw: tuple[int, int],
    groups: int = 1,
) -> int:
    """FLOPs of one conv on one sample = 2·`conv_macs` (a multiply and an add per MAC).

    This is the convention of `torch.utils.flop_counter` (bias not counted). Papers that quote
    "FLOPs" for ResNet-50 as 4.1 G are counting MACs; this function would say 8.2 G.
    """
    return 2 * conv_macs(c_in, c_out, kernel, out_hw, groups)


@dataclass(frozen=True)
class RFInfo:
    """Receptive field of one unit after a layer, in input pixels.

    rf: side of the input region that one unit sees.
    jump: distance in input pixels between two adjacent units (product of the strides so far).
    start: input coordinate of the centre of the first unit's region; pixel i is centred at i,
        so a negative start means the first window is centred in the padding.
    """

    rf: int
    jump: int
    start: float


def receptive_field(
    layers: Sequence[tuple[int, int] | tuple[int, int, int]],
    paddings: Sequence[int] | None = None,
) -> list[RFInfo]:
    """Receptive field after each layer of a stack of (kernel, stride[, dilation]) layers.

    Recurrences (Dumoulin & Visin; Araujo et al., "Computing Receptive Fields of CNNs"), with the
    input as r=1, j=1, start=0:
        r_out = r_in + (k − 1)·d·j_in
        j_out = j_in·s
        start_out = start_in + ((k − 1)·d / 2 − p)·j_in
    `paddings` (one per layer, default 0) only move `start`; the size of the field does not
    depend on padding. Pooling layers count as layers too. Returns one RFInfo per layer.
    """
    if paddings is not None and len(paddings) != len(layers):
        raise ValueError(f"got {len(paddings)} paddings for {len(layers)} layers")
    r, j, start = 1, 1, 0.0
    out = []
    for i, layer in enumerate(layers):
        if len(layer) not in (2, 3):
            raise ValueError(f"layer {i} must be (kernel, stride[, dilation]), got {layer!r}")
        k = _check_int(f"layer {i} kernel", layer[0], 1)
        s = _check_int(f"layer {i} stride", layer[1], 1)
        d = _check_int(f"layer {i} dilation", layer[2] if len(layer) == 3 else 1, 1)
        p = _check_int(f"layer {i} padding", paddings[i] if paddings is not None else 0, 0)
        start += ((k - 1) * d / 2 - p) * j
        r += (k - 1) * d * j
        j *= s
        out.append(RFInfo(rf=r, jump=j, start=start))
    return out


def formula_conv_output(n: int, f: int, p: int, s: int, d: int = 1) -> str:
    """The output-size formula with the numbers filled in.

    'floor((28 + 2·1 − 3) / 1) + 1 = 28'; with dilation the effective kernel replaces f and its
    derivation follows: 'floor((28 + 2·2 − 5) / 1) + 1 = 28, f_eff = 2·(3−1)+1 = 5'.
    """
    out = conv_output_size(n, f, p, s, d)
    f_eff = effective_kernel(f, d)
    text = f"floor(({n} + 2{DOT}{p} {MINUS} {f_eff}) / {s}) + 1 = {out}"
    if d > 1:
        text += f", f_eff = {d}{DOT}({f}{MINUS}1)+1 = {f_eff}"
    return text


def formula_pool_output(
    n: int, f: int, p: int = 0, s: int | None = None, d: int = 1, ceil_mode: bool = False
) -> str:
    """Like `formula_conv_output` for pooling, showing 'ceil' and the dropped last window."""
    s = f if s is None else s
    out = pool_output_size(n, f, p, s, d, ceil_mode)
    f_eff = effective_kernel(f, d)
    rounding = "ceil" if ceil_mode else "floor"
    text = f"{rounding}(({n} + 2{DOT}{p} {MINUS} {f_eff}) / {s}) + 1"
    if ceil_mode and _ceil_div(n + 2 * p - f_eff, s) + 1 != out:
        text += f" {MINUS} 1 (last window would start in the padding)"
    text += f" = {out}"
    if d > 1:
        text += f", f_eff = {d}{DOT}({f}{MINUS}1)+1 = {f_eff}"
    return text


def formula_conv_params(
    c_in: int, c_out: int, kernel: tuple[int, int] | int, groups: int = 1, bias: bool = True
) -> str:
    """'(3·3·64 + 1)·128 = 73,856'; grouped '(3·3·32/32 + 1)·32 = 320'; no bias '(3·3·64)·128'."""
    total = conv_params(c_in, c_out, kernel, groups, bias)
    fh, fw = _kernel_hw(kernel)
    per_out = f"{fh}{DOT}{fw}{DOT}{c_in}" + (f"/{groups}" if groups > 1 else "")
    if bias:
        per_out += " + 1"
    return f"({per_out}){DOT}{c_out} = {total:,}"


def formula_linear_params(n_in: int, n_out: int, bias: bool = True) -> str:
    """'(4096 + 1)·1000 = 4,097,000'."""
    total = linear_params(n_in, n_out, bias)
    return f"({n_in}{' + 1' if bias else ''}){DOT}{n_out} = {total:,}"


__all__ = [
    "RFInfo",
    "batchnorm_params",
    "conv_flops",
    "conv_macs",
    "conv_output_shape",
    "conv_output_size",
    "effective_kernel",
    "formula_conv_output",
    "formula_conv_params",
    "formula_linear_params",
    "formula_pool_output",
    "linear_params",
    "pool_output_size",
    "receptive_field",
]
