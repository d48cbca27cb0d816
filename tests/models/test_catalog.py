"""The `cnnlab models` table: rows from meta-device builds, Markdown formatting."""

from __future__ import annotations

import dataclasses

import pytest

from cnnlab.errors import ConfigError
from cnnlab.models import catalog, get_model_info
from cnnlab.models.spec import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec, WeightsSpec


def test_rows_at_224() -> None:
    rows = catalog.model_table(names=["resnet18", "vgg16", "alexnet_paper"])
    by_name = {r["name"]: r for r in rows}
    assert set(rows[0]) == set(catalog.COLUMNS)
    assert by_name["resnet18"]["params"] == 11_689_512
    assert by_name["resnet18"]["gflops"] == pytest.approx(3.63, abs=0.01)  # 1.81 GMACs
    assert by_name["vgg16"]["params"] == 138_357_544 and by_name["vgg16"]["family"] == "vgg"
    assert by_name["vgg16"]["gflops"] == pytest.approx(30.94, abs=0.01)
    assert by_name["resnet18"]["variant"] == "" and by_name["vgg16"]["variant"] == ""
    assert "6,400" in by_name["alexnet_paper"]["variant"]  # 227 px is its native size
    # the column follows the weights' own availability check (both states: the test below)
    available = get_model_info("resnet18").weights.available()
    assert by_name["resnet18"]["pretrained"] == ("yes" if available else "not downloaded")
    assert by_name["alexnet_paper"]["pretrained"] == "no"  # no weights exist for it


def test_rows_at_32_show_variants() -> None:
    rows = catalog.model_table(32, 10, names=["smallcnn", "resnet18", "mobilenet_v3_small"])
    by_name = {r["name"]: r for r in rows}
    assert by_name["smallcnn"]["variant"] == ""
    assert "CIFAR-style" in by_name["resnet18"]["variant"]
    assert "stride 1" in by_name["mobilenet_v3_small"]["variant"]
    assert by_name["resnet18"]["params"] == 11_173_962  # 3×3 stem, 10 classes


def test_unbuildable_size_is_reported_not_raised() -> None:
    (row,) = catalog.model_table(8, 10, names=["resnet18"])
    assert row["params"] is None and row["variant"].startswith("not available: ")


def test_unknown_name_raises() -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        catalog.model_table(names=["resnet81"])


def test_pretrained_and_top1_from_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = WeightsSpec(
        tag="imagenet",
        source="test",
        preprocess=PreprocessSpec((3, 224, 224), IMAGENET_MEAN, IMAGENET_STD),
        num_classes=1000,
        top1=69.758,
        available=lambda: True,
    )
    info = dataclasses.replace(get_model_info("resnet18"), weights=spec)
    monkeypatch.setattr(catalog, "get_model_info", lambda name: info)
    (row,) = catalog.model_table(names=["resnet18"])
    assert row["pretrained"] == "yes" and row["top1"] == 69.758
    spec_missing = dataclasses.replace(spec, available=lambda: False)
    monkeypatch.setattr(
        catalog, "get_model_info", lambda name: dataclasses.replace(info, weights=spec_missing)
    )
    (row,) = catalog.model_table(names=["resnet18"])
    assert row["pretrained"] == "not downloaded"
    assert "69.8%" in catalog.format_model_table([row])


def test_markdown_table_is_aligned() -> None:
    rows = catalog.model_table(32, 10, names=["smallcnn", "resnet18"])
    lines = catalog.format_model_table(rows).splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("| Model") and set(lines[1]) <= set("|-: ")
    assert len({len(line) for line in lines}) == 1  # every row padded to the same width
    assert "| smallcnn" in lines[2] and "11.2M" in lines[3]
