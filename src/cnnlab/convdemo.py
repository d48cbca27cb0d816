"""Conv demo: one convolution or pooling on a small matrix, worked out as text for a terminal.

It prints the input, the filter, the padded input, the output, the output-size formula per axis
with the numbers filled in, and one output element computed term by term, so that a reader can
check every number by hand.

    cnnlab conv --input 9x9 --filter "3,0,3;2,0,2;1,0,1" --stride 2,1
    cnnlab conv --input 9x9:arange --op max --kernel 2
    cnnlab conv --input photo.png --filter "1,0,-1;2,0,-2;1,0,-1" --padding 1

    >>> print(run_conv_demo("9x9", "3,0,3;2,0,2;1,0,1", stride="2,1"))  # doctest: +SKIP

Shapes are written rows x cols (H x W); pairs such as stride 2,1 are (vertical, horizontal).
"""

from __future__ import annotations

import re
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cnnlab import arithmetic, reference
from cnnlab.arithmetic import DOT, MINUS

OPS = ("conv", "max", "avg")
INPUT_MODES = ("random", "arange", "ones")
MAX_SIDE = 32  # wider generated inputs no longer fit a terminal line
WRAP = 96  # prose lines fit a 100-column terminal
IMAGE_SIDE = 16  # images are shrunk to fit 16x16 so that every pixel prints as one number
# Decoders we let Pillow try; others (e.g. FITS) have had decompression-bomb bugs.
IMAGE_FORMATS = ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"]
_EXPLAIN = {
    "conv": "Each output is the sum of a window of the input times the filter, element by element"
    " (cross-correlation, as in deep learning: the filter is not flipped).",
    "max": "Each output is the largest value in its window (padding is -inf: it never wins).",
    "avg": "Each output is the mean of its window; padded zeros count (divide by {k}, PyTorch's"
    " default count_include_pad=True).",
}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_SIZE = re.compile(r"(\d+)\s*[xX]\s*(\d+)(?:\s*:\s*(\w+))?")


# ---------------------------------------------------------------------------- parsing inputs


def parse_matrix(text: str) -> np.ndarray:
    """'3,0,3;2,0,2;1,0,1' -> 3x3 array. Rows split on ';' or newlines, values on ',' or spaces.

    All-integer text gives an int64 array, anything else float64.
    """
    body = text.strip().strip("[]").strip().rstrip(";")  # '[...]' and a trailing ';' are harmless
    if not body:
        raise ValueError("empty matrix: write rows separated by ';', e.g. '1,2;3,4'")
    rows = re.split(r"[;\n]", body)
    values: list[list[int | float]] = []
    for i, row in enumerate(rows, start=1):
        tokens = [t for t in re.split(r"[,\s]+", row.strip().strip("[]")) if t]
        if not tokens:
            raise ValueError(f"matrix row {i} is empty in {text!r}")
        parsed = []
        for j, token in enumerate(tokens, start=1):
            if not _NUMBER.fullmatch(token):
                raise ValueError(f"matrix row {i}, value {j}: {token!r} is not a number")
            is_int = token.lstrip("+-").isdigit()
            parsed.append(int(token) if is_int else float(token))
        if values and len(parsed) != len(values[0]):
            raise ValueError(
                f"matrix row {i} has {len(parsed)} values but row 1 has {len(values[0])}"
            )
        values.append(parsed)
    is_int = all(isinstance(v, int) for row in values for v in row)
    try:
        m = np.array(values, dtype=np.int64 if is_int else np.float64)
    except OverflowError:
        raise ValueError(f"matrix {text!r} has a value too large for int64") from None
    if not np.all(np.isfinite(m)):
        raise ValueError(f"matrix {text!r} has a value too large for float64")
    return m


def make_input(spec: str, seed: int = 0) -> np.ndarray:
    """A 2-D input matrix from a spec.

    '9x9' (random integers 0..9, seeded), '9x9:arange' (0, 1, 2, ... row by row), '9x9:ones',
    a matrix literal '1,2;3,4', or the path of an image file (grayscale, shrunk to fit 16x16).
    """
    return _load_input(spec, seed)[0]


def _load_input(spec: str, seed: int) -> tuple[np.ndarray, list[str]]:
    """The matrix and notes for the reader (e.g. that an image was shrunk)."""
    text = spec.strip()
    size = _SIZE.fullmatch(text)
    if size:
        return _generate(int(size[1]), int(size[2]), size[3] or "random", seed), []
    if text and Path(text).is_file():
        return _read_image(Path(text))
    if text and re.fullmatch(r"[\d\s,;.eE+\-\[\]]+", text):
        return parse_matrix(text), []
    raise ValueError(
        f"input {spec!r} is not a size like 9x9[:{'|'.join(INPUT_MODES)}], "
        f"a matrix like '1,2;3,4', or an existing image file"
    )


def _generate(h: int, w: int, mode: str, seed: int) -> np.ndarray:
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise ValueError(f"input size {h}x{w}: each side must be 1..{MAX_SIDE} to fit a terminal")
    if mode == "random":
        # Digits 0..9 keep every product in the worked element short enough to read.
        return np.random.default_rng(seed).integers(0, 10, size=(h, w), dtype=np.int64)
    if mode == "arange":
        return np.arange(h * w, dtype=np.int64).reshape(h, w)
    if mode == "ones":
        return np.ones((h, w), dtype=np.int64)
    raise ValueError(f"unknown input mode {mode!r}; choose one of: {', '.join(INPUT_MODES)}")


def _read_image(path: Path) -> tuple[np.ndarray, list[str]]:
    from PIL import Image, ImageOps  # only image inputs need Pillow

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=IMAGE_FORMATS) as im:
                im.load()  # a full decode, so that a truncated file fails here with its name
                gray = ImageOps.exif_transpose(im).convert("L")
                mode = im.mode
    except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None
    w, h = gray.size
    note = f"image {path.name!r} ({h}x{w}, mode {mode}) converted to grayscale 0..255"
    if max(h, w) > IMAGE_SIDE:
        scale = IMAGE_SIDE / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        gray = gray.resize((nw, nh), Image.Resampling.BOX)  # BOX averages: no aliasing
        note += f" and downsized to {nh}x{nw} to fit {IMAGE_SIDE}x{IMAGE_SIDE}"
    return np.asarray(gray, dtype=np.int64), [note]


def _parse_pair(name: str, text: str | int | Sequence[int], minimum: int) -> tuple[int, int]:
    """'2' or '2,1' (vertical, horizontal) -> (2, 2) or (2, 1); ints and pairs pass through."""
    if not isinstance(text, str):
        pair = reference.as_pair(name, text)
    else:
        parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
        if not (1 <= len(parts) <= 2 and all(re.fullmatch(r"[+-]?\d+", p) for p in parts)):
            raise ValueError(f"{name} {text!r}: expected N or V,H (vertical,horizontal) integers")
        pair = (int(parts[0]), int(parts[-1]))
    if min(pair) < minimum:
        raise ValueError(f"{name} {text!r}: values must be >= {minimum}")
    return pair


# ---------------------------------------------------------------------------- rendering


def _formatter(a: np.ndarray) -> Callable[[float], str]:
    """Integers print as integers, anything else with 2 decimals; one rule per matrix."""
    finite = a[np.isfinite(a)] if np.issubdtype(a.dtype, np.floating) else a
    if np.issubdtype(a.dtype, np.integer) or np.all(finite == np.round(finite)):
        return lambda v: "-inf" if np.isneginf(v) else str(int(v))
    return lambda v: "-inf" if np.isneginf(v) else f"{v:.2f}"


def _matrix_lines(a: np.ndarray, pad_mask: np.ndarray | None = None, index: bool = True) -> list:
    """Right-aligned columns; with `index`, row and column numbers frame the values.

    Cells under `pad_mask` print as '.', so the padding stands out from the data.
    """
    fmt = _formatter(a)
    cells = [
        ["." if pad_mask is not None and pad_mask[i, j] else fmt(v) for j, v in enumerate(row)]
        for i, row in enumerate(a)
    ]
    width = max(len(c) for row in cells for c in row)
    if not index:
        return ["  " + " ".join(c.rjust(width) for c in row) for row in cells]
    width = max(width, len(str(a.shape[1] - 1)))
    label = len(str(a.shape[0] - 1)) + 1
    header = " " * label + " | " + " ".join(str(j).rjust(width) for j in range(a.shape[1]))
    lines = [header, "-" * (label + 1) + "+" + "-" * (len(header) - label - 2)]
    for i, row in enumerate(cells):
        lines.append(str(i).rjust(label) + " | " + " ".join(c.rjust(width) for c in row))
    return lines


def _span(start: int, step: int, count: int) -> str:
    """Rows or columns a window covers: '0-2', or '0,2,4' when dilation skips pixels."""
    if step == 1:
        return f"{start}-{start + count - 1}" if count > 1 else str(start)
    return ",".join(str(start + k * step) for k in range(count))


def _factor(fmt: Callable[[float], str], v: float) -> str:
    # "2·(-1)" rather than "2·-1": a product reads unambiguously with negatives in parentheses.
    s = fmt(v)
    return f"({s})" if s.startswith("-") else s


def _worked_element(
    op: str,
    xp: np.ndarray,
    w: np.ndarray | None,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    element: tuple[int, int],
    value: float,
    out_fmt: Callable[[float], str],
    padded: bool,
) -> list[str]:
    """out[i,j] written out term by term, one filter row per line, terms aligned in columns."""
    (i, j), (kh, kw), (sh, sw), (dh, dw) = element, kernel, stride, dilation
    window = reference.windows(xp, kernel, stride, dilation)[i, j]  # (kH, kW)
    x_fmt = _formatter(xp)
    if op == "conv":
        w_fmt = _formatter(w)
        terms = [
            [f"{_factor(w_fmt, w[a, b])}{DOT}{_factor(x_fmt, window[a, b])}" for b in range(kw)]
            for a in range(kh)
        ]
    else:
        terms = [[x_fmt(window[a, b]) for b in range(kw)] for a in range(kh)]
    width = max(len(t) for row in terms for t in row)
    rows = [[t.rjust(width) for t in row] for row in terms]
    lead = f"  out[{i},{j}] = "
    if op == "max":
        # max(a, b, c,
        #     d, e, f) = 9   -- one window row per line, continued after a comma
        body = [", ".join(r) for r in rows]
        lines = [lead + "max(" + body[0]] + [" " * (len(lead) + 4) + r for r in body[1:]]
        lines = [line + "," for line in lines[:-1]] + [lines[-1] + ")"]
    else:
        # conv: w·x + w·x          avg: (x + x
        #     + w·x + w·x = 42             + x + x) / 4 = 2.50
        opener = "(" if op == "avg" else ""
        body = [" + ".join(r) for r in rows]
        indent = " " * (len(lead) + len(opener) - 2)
        lines = [lead + opener + body[0]] + [indent + "+ " + r for r in body[1:]]
        if op == "avg":
            lines[-1] += f") / {kh * kw}"
    lines[-1] += f" = {out_fmt(value)}"
    where = "padded input" if padded else "input"
    head = (
        f"worked element out[{i},{j}]: window = {where} rows {_span(i * sh, dh, kh)}, "
        f"cols {_span(j * sw, dw, kw)}"
    )
    return [head, *lines]


# ---------------------------------------------------------------------------- the demo


def conv_demo(
    x: np.ndarray,
    w: np.ndarray | None = None,
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = (0, 0),
    dilation: int | tuple[int, int] = (1, 1),
    op: str = "conv",
    *,
    kernel: int | tuple[int, int] | None = None,
    element: tuple[int, int] = (0, 0),
    notes: Sequence[str] = (),
) -> str:
    """The demo text for one conv ('conv', filter `w`) or pooling ('max'/'avg', window `kernel`).

    x and w are 2-D (rows x cols). `stride` defaults to 1 for conv and to the kernel size for
    pooling, as in PyTorch; `padding` is zeros for conv and avg pooling, −inf for max pooling;
    `element` picks the output element worked out term by term; `notes` are printed first.
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; choose one of: {', '.join(OPS)}")
    x = _as_matrix("input", x)
    if op == "conv":
        if w is None:
            raise ValueError("op 'conv' needs a filter w")
        w = _as_matrix("filter", w)
        if kernel is not None and _parse_pair("kernel", kernel, 1) != w.shape:
            raise ValueError(f"kernel {kernel} does not match the {w.shape[0]}x{w.shape[1]} filter")
        kernel_hw = (w.shape[0], w.shape[1])
    else:
        if w is not None:
            raise ValueError(f"op {op!r} pools: it has no filter, give its window as kernel=")
        if kernel is None:
            raise ValueError(f"op {op!r} needs kernel= (window size)")
        kernel_hw = _parse_pair("kernel", kernel, 1)
    if stride is None:
        stride = 1 if op == "conv" else kernel_hw  # PyTorch's defaults
    stride_hw = _parse_pair("stride", stride, 1)
    pad_hw = _parse_pair("padding", padding, 0)
    dil_hw = _parse_pair("dilation", dilation, 1)
    if op == "avg" and dil_hw != (1, 1):
        raise ValueError("avg pooling has no dilation (PyTorch's avg_pool2d neither)")

    formulas = []
    for axis, n, f, p, s, d in zip(
        ("vertical", "horizontal"), x.shape, kernel_hw, pad_hw, stride_hw, dil_hw, strict=True
    ):
        try:
            if op == "conv":
                formulas.append(arithmetic.formula_conv_output(n, f, p, s, d))
            else:
                formulas.append(arithmetic.formula_pool_output(n, f, p, s, d))
        except ValueError as e:
            raise ValueError(f"{axis} axis: {e}") from None

    # The padded input as the reader should see it: −inf around a max pool (floats, so that
    # '-inf' prints instead of the int64 minimum the reference uses), zeros otherwise.
    if op == "max" and any(pad_hw):
        xp = reference.pad2d(x.astype(np.float64), pad_hw, -np.inf)
    else:
        xp = reference.pad2d(x, pad_hw)
    if op == "conv":
        out = reference.conv2d(
            x[None], w[None, None], stride=stride_hw, padding=pad_hw, dilation=dil_hw
        )[0]
    elif op == "max":
        out = reference.max_pool2d(x, kernel_hw, stride_hw, pad_hw, dil_hw)
    else:
        out = reference.avg_pool2d(x, kernel_hw, stride_hw, pad_hw)
    if not (0 <= element[0] < out.shape[0] and 0 <= element[1] < out.shape[1]):
        raise ValueError(f"element {element} is outside the {out.shape[0]}x{out.shape[1]} output")

    return "\n".join(
        _report(op, x, w, xp, out, kernel_hw, stride_hw, pad_hw, dil_hw, formulas, element, notes)
    )


def _as_matrix(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D matrix, got shape {a.shape}")
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.complexfloating) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must hold finite real numbers")
    return a


def _report(
    op: str,
    x: np.ndarray,
    w: np.ndarray | None,
    xp: np.ndarray,
    out: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    dil: tuple[int, int],
    formulas: list[str],
    element: tuple[int, int],
    notes: Sequence[str],
) -> list[str]:
    def pair(p: tuple[int, int]) -> str:
        return f"{p[0]},{p[1]}"

    kh, kw = kernel
    title = {"conv": "conv", "max": "max pool", "avg": "avg pool"}[op]
    what = f"filter {kh}x{kw}" if op == "conv" else f"kernel {kh}x{kw}"
    dilated = f", dilation {pair(dil)}" if op != "avg" else ""
    lines = [*notes] + [
        f"{title}: input {x.shape[0]}x{x.shape[1]}, {what}, stride {pair(stride)}, "
        f"padding {pair(pad)}{dilated} -> output {out.shape[0]}x{out.shape[1]}",
        "(pairs are vertical,horizontal; shapes are rows x cols)",
        *textwrap.wrap(_EXPLAIN[op].format(k=f"{kh}{DOT}{kw}"), WRAP, break_on_hyphens=False),
        "",
        f"input x ({x.shape[0]}x{x.shape[1]})",
        *_matrix_lines(x),
    ]
    if op == "conv":
        lines += ["", f"filter w ({kh}x{kw})", *_matrix_lines(w, index=False)]
    if any(pad):
        mask = np.ones(xp.shape, dtype=bool)
        mask[pad[0] : pad[0] + x.shape[0], pad[1] : pad[1] + x.shape[1]] = False
        pad_value = "-inf" if op == "max" else "0"
        lines += [
            "",
            f"padded input ({xp.shape[0]}x{xp.shape[1]}; '.' is padding = {pad_value})",
            *_matrix_lines(xp, pad_mask=mask),
        ]
    lines += ["", f"output ({out.shape[0]}x{out.shape[1]})", *_matrix_lines(out)]
    general = f"floor((n + 2p {MINUS} f) / s) + 1"
    if any(d > 1 for d in dil):
        general += f"; dilation d spreads f to f_eff = d{DOT}(f{MINUS}1)+1"
    lines += [
        "",
        f"output size per axis: {general}",
        f"  vertical:   {formulas[0]}",
        f"  horizontal: {formulas[1]}",
        "",
    ]
    lines += _worked_element(
        op, xp, w, kernel, stride, dil, element, out[element], _formatter(out), any(pad)
    )
    return lines


def run_conv_demo(
    input_spec: str,
    filter_spec: str | None = None,
    stride: str | None = None,
    padding: str = "0",
    dilation: str = "1",
    op: str = "conv",
    kernel: str = "3",
    seed: int = 0,
    element: str = "0,0",
) -> str:
    """The string-level entry `cnnlab conv` calls; raises ValueError with one line on bad input.

    Pairs are "N" or "V,H". `stride` None means 1 for conv and the kernel for pooling. For conv,
    `filter_spec` is a matrix literal ('3,0,3;2,0,2;1,0,1'); without one a random {-1,0,1} filter
    of size `kernel` is drawn from `seed`. For pooling `kernel` is the window and there is no
    filter.
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; choose one of: {', '.join(OPS)}")
    x, notes = _load_input(input_spec, seed)
    kernel_hw = _parse_pair("kernel", kernel, 1)
    if op == "conv":
        if filter_spec is None:
            rng = np.random.default_rng(seed + 1)  # not the input's stream: x and w differ
            w = rng.integers(-1, 2, size=kernel_hw, dtype=np.int64)
            notes = [
                *notes,
                f"no filter given: a random {kernel_hw[0]}x{kernel_hw[1]} filter "
                f"(seed {seed}); give one like '3,0,3;2,0,2;1,0,1'",
            ]
        else:
            w = parse_matrix(filter_spec)
        kernel_arg = None
    else:
        if filter_spec is not None:
            raise ValueError(f"a filter applies to op 'conv' only; {op} pooling uses kernel")
        w, kernel_arg = None, kernel_hw
    return conv_demo(
        x,
        w,
        stride=None if stride is None else _parse_pair("stride", stride, 1),
        padding=_parse_pair("padding", padding, 0),
        dilation=_parse_pair("dilation", dilation, 1),
        op=op,
        kernel=kernel_arg,
        element=_parse_pair("element", element, 0),
        notes=notes,
    )
