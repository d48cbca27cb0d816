"""The API names that are also subpackages stay callable after the subpackage is imported."""

import importlib
import types

import pytest

import cnnlab
from cnnlab import api


@pytest.mark.parametrize("name", ["audit", "doctor", "explain", "models", "report"])
def test_the_package_answers_the_call_with_the_api_function(monkeypatch, name):
    package = importlib.import_module(f"cnnlab.{name}")
    assert isinstance(package, types.ModuleType)
    seen = []
    monkeypatch.setattr(api, name, lambda *a, **k: seen.append((a, k)) or "called")
    # the import made the package the attribute; calling it reaches cnnlab.api.<name>
    assert getattr(cnnlab, name) is package
    assert getattr(cnnlab, name)("runs/x", flag=True) == "called"
    assert seen == [(("runs/x",), {"flag": True})]


def test_only_that_module_changes():
    import cnnlab.data

    assert type(cnnlab.data) is types.ModuleType and not callable(cnnlab.data)
    assert not callable(importlib.import_module("cnnlab.models.small"))


def test_the_models_table_through_the_package():
    import cnnlab.models

    rows = cnnlab.models(input_size=28, num_classes=10, names=["smallcnn"])
    assert [r["name"] for r in rows] == ["smallcnn"] and rows[0]["params"] == 32_522
