"""The conv demo: the canonical 9x9 example, its numbers against the reference, inputs, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnlab.convdemo import conv_demo, make_input, parse_matrix, run_conv_demo
from cnnlab.reference import avg_pool2d, conv2d, max_pool2d

FILTER = "3,0,3;2,0,2;1,0,1"


def section(text: str, title: str) -> np.ndarray:
    """The numbers of an indexed matrix section ('output (4x7)') back as an array."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 3 :]:  # title, column header, rule
        if " | " not in line:
            break
        rows.append([float(v) for v in line.split(" | ")[1].split()])
    return np.array(rows)


def test_canonical_example_stride_1() -> None:
    x = make_input("9x9")
    text = run_conv_demo("9x9", FILTER)
    assert "-> output 7x7" in text
    expected = conv2d(x[None], parse_matrix(FILTER)[None, None])[0]
    np.testing.assert_array_equal(section(text, "output (7x7)"), expected)
    np.testing.assert_array_equal(section(text, "input x (9x9)"), x)
    assert "  vertical:   floor((9 + 2·0 − 3) / 1) + 1 = 7" in text
    assert "  horizontal: floor((9 + 2·0 − 3) / 1) + 1 = 7" in text
    assert "padded input" not in text  # no padding, no padded section


def test_canonical_example_vertical_stride_2() -> None:
    x, w = make_input("9x9"), parse_matrix(FILTER)
    text = run_conv_demo("9x9", FILTER, stride="2,1")
    expected = conv2d(x[None], w[None, None], stride=(2, 1))[0]
    assert expected.shape == (4, 7)
    np.testing.assert_array_equal(section(text, "output (4x7)"), expected)
    assert "  vertical:   floor((9 + 2·0 − 3) / 2) + 1 = 4" in text
    assert "  horizontal: floor((9 + 2·0 − 3) / 1) + 1 = 7" in text
    # The filter rows, exactly as given.
    assert "  3 0 3\n  2 0 2\n  1 0 1" in text


def test_worked_element_has_the_real_products() -> None:
    x, w = make_input("9x9"), parse_matrix(FILTER)
    text = run_conv_demo("9x9", FILTER, stride="2,1", element="1,0")
    out = conv2d(x[None], w[None, None], stride=(2, 1))[0]
    assert "worked element out[1,0]: window = input rows 2-4, cols 0-2" in text
    worked = text[text.index("  out[1,0] = ") :]
    pairs = [(int(a), int(b)) for a, b in re.findall(r"\(?(-?\d+)\)?·\(?(-?\d+)\)?", worked)]
    window = x[2:5, 0:3]
    assert pairs == list(zip(w.flatten().tolist(), window.flatten().tolist(), strict=True))
    assert worked.rstrip().endswith(f"= {out[1, 0]}")


def test_padding_shows_padded_input_and_dilation_formula() -> None:
    text = run_conv_demo("5x6:arange", "1,-1;2,0.5", padding="1,2", dilation="2")
    assert "padded input (7x10; '.' is padding = 0)" in text
    assert " 0 | " + " ".join(["."] * 10) in text.replace("  ", " ")
    x = make_input("5x6:arange")
    out = conv2d(x[None], parse_matrix("1,-1;2,0.5")[None, None], padding=(1, 2), dilation=2)[0]
    np.testing.assert_allclose(section(text, "output (5x8)"), out)
    assert "f_eff = 2·(2−1)+1 = 3" in text
    assert "(-1.00)·" in text  # negative factors in parentheses
    assert re.search(r"\d+\.\d\d", text)  # floats print with 2 decimals


@pytest.mark.parametrize("op", ["max", "avg"])
def test_pooling_matches_reference(op: str) -> None:
    x = make_input("6x7", seed=3)
    text = run_conv_demo("6x7", None, op=op, kernel="2", seed=3)
    # Pooling's stride defaults to the kernel, as in PyTorch.
    ref = max_pool2d(x, 2) if op == "max" else avg_pool2d(x, 2)
    assert ref.shape == (3, 3)
    np.testing.assert_allclose(section(text, "output (3x3)"), ref, atol=0.005)
    assert "  vertical:   floor((6 + 2·0 − 2) / 2) + 1 = 3" in text
    assert ("max(" if op == "max" else ") / 4 = ") in text


def test_max_pool_padding_is_minus_inf() -> None:
    text = conv_demo(-np.ones((3, 3), dtype=int), None, op="max", kernel=2, padding=1)
    assert "'.' is padding = -inf" in text
    assert "out[0,0] = max(-inf, -inf,\n" in text
    assert text.rstrip().endswith(") = -1")


def test_conv_demo_accepts_arrays_and_notes() -> None:
    text = conv_demo(np.eye(4), np.ones((2, 2)), stride=2, notes=["hello"])
    assert text.startswith("hello\nconv: input 4x4, filter 2x2, stride 2,2")
    np.testing.assert_array_equal(section(text, "output (2x2)"), [[2, 0], [0, 2]])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3,0,3;2,0,2;1,0,1", [[3, 0, 3], [2, 0, 2], [1, 0, 1]]),
        ("1 2 3; 4 5 6", [[1, 2, 3], [4, 5, 6]]),
        ("1, -2\n3 4", [[1, -2], [3, 4]]),
        ("[[0.5, 1e-1]]", [[0.5, 0.1]]),
        ("7", [[7]]),
        ("1,2;3,4;", [[1, 2], [3, 4]]),  # a trailing ';' is harmless
    ],
)
def test_parse_matrix(text: str, expected: list) -> None:
    m = parse_matrix(text)
    np.testing.assert_array_equal(m, expected)
    assert m.dtype == (np.float64 if "." in text else np.int64)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty matrix"),
        ("1,2;;3,4", "row 2 is empty"),
        ("1,2;3,x", r"row 2, value 2: 'x' is not a number"),
        ("1,2,3;4,5", "row 2 has 2 values but row 1 has 3"),
        ("1,nan", "'nan' is not a number"),
        ("1e999", "too large for float64"),
        ("99999999999999999999", "too large for int64"),
        (" ; ", "empty matrix"),
        (";1", "row 1 is empty"),
    ],
)
def test_parse_matrix_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_matrix(text)


def test_make_input_modes() -> None:
    a = make_input("4x3")
    assert a.shape == (4, 3) and a.min() >= 0 and a.max() <= 9
    np.testing.assert_array_equal(a, make_input("4x3", seed=0))  # deterministic
    assert not np.array_equal(make_input("9x9", seed=0), make_input("9x9", seed=1))
    np.testing.assert_array_equal(make_input("2x3:arange"), [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(make_input("2x2:ones"), np.ones((2, 2)))
    np.testing.assert_array_equal(make_input("1,2;3,4"), [[1, 2], [3, 4]])


def test_make_input_image_is_grayscale_and_downsized(tmp_path) -> None:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (40, 20), (255, 0, 0)).save(path)
    x = make_input(str(path))
    assert x.shape == (8, 16)  # the long side shrinks to 16, the aspect ratio is kept
    assert np.all(x == 76)  # ITU-R 601 luma of pure red: 0.299·255
    text = run_conv_demo(str(path), "1", op="conv")
    assert "'photo.png' (20x40, mode RGB) converted to grayscale 0..255" in text
    assert "downsized to 8x16 to fit 16x16" in text


def test_small_image_is_not_resized(tmp_path) -> None:
    from PIL import Image

    path = tmp_path / "tiny.png"
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(path)
    np.testing.assert_array_equal(make_input(str(path)), np.arange(12).reshape(3, 4))
    assert "downsized" not in run_conv_demo(str(path), "1")


def test_broken_image_names_the_file(tmp_path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        make_input(str(path))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_spec": "nope.png"}, "is not a size like 9x9"),
        ({"input_spec": "9x9:zigzag"}, "unknown input mode 'zigzag'"),
        ({"input_spec": "64x64"}, "each side must be 1..32"),
        ({"input_spec": "9x9", "stride": "2,1,3"}, "stride '2,1,3': expected N or V,H"),
        ({"input_spec": "9x9", "stride": "0"}, "stride '0': values must be >= 1"),
        ({"input_spec": "9x9", "padding": "-1"}, "padding '-1': values must be >= 0"),
        ({"input_spec": "9x9", "op": "sum"}, "unknown op 'sum'"),
        ({"input_spec": "2x2", "filter_spec": FILTER}, "vertical axis: kernel 3 is larger"),
        ({"input_spec": "9x9", "filter_spec": FILTER, "op": "max"}, "applies to op 'conv' only"),
        ({"input_spec": "9x9", "op": "max", "padding": "2", "kernel": "2"}, "half the kernel"),
        ({"input_spec": "9x9", "op": "avg", "dilation": "2"}, "avg pooling has no dilation"),
        ({"input_spec": "9x9", "filter_spec": "1,2;3"}, "row 2 has 1 values"),
        ({"input_spec": "3x3", "filter_spec": "1", "element": "5,0"}, "outside the 3x3 output"),
    ],
)
def test_run_conv_demo_errors_are_one_line(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        run_conv_demo(**{"filter_spec": None, **kwargs})
    assert "\n" not in str(info.value)


def test_no_filter_draws_a_seeded_random_one() -> None:
    text = run_conv_demo("5x5", None, kernel="2")
    assert "no filter given: a random 2x2 filter (seed 0)" in text
    assert text == run_conv_demo("5x5", None, kernel="2")


def test_output_is_ascii_except_dot_and_minus() -> None:
    text = run_conv_demo("9x9", FILTER, padding=1, dilation="1,2", stride="2,1")
    assert set(text) - set(map(chr, range(128))) <= {"·", "−"}
    assert max(len(line) for line in text.splitlines()) <= 100
