"""to_onnx: the dynamo exporter with a dynamic batch, metadata in metadata_props, and the two
documented uses of the legacy exporter (an opset below 18, a dynamo failure)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cnnlab.export import onnx as onnx_export
from cnnlab.export.onnx import ExportError, to_onnx
from cnnlab.models import create_model

PROPS = {"cnnlab": "1", "classes": '["a", "b", "c"]', "resize": "32"}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("smallcnn", num_classes=3, in_chans=1, input_size=28).eval()


def run(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x.numpy()})[0]


def test_dynamo_export_has_a_dynamic_batch_and_the_metadata(model, tmp_path) -> None:
    info = to_onnx(model, torch.zeros(2, 1, 28, 28), tmp_path / "m.onnx", metadata=PROPS)
    assert info.exporter == "dynamo" and info.notes == () and info.opset >= 18
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert {p.key: p.value for p in proto.metadata_props} == PROPS
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"  # symbolic, not a number
    x = torch.randn(5, 1, 28, 28)
    with torch.inference_mode():
        ref = model(x).numpy()
    np.testing.assert_allclose(run(tmp_path / "m.onnx", x[:1]), ref[:1], atol=1e-5)
    np.testing.assert_allclose(run(tmp_path / "m.onnx", x), ref, atol=1e-5)


def test_an_opset_below_18_uses_the_legacy_exporter_and_says_so(model, tmp_path) -> None:
    info = to_onnx(model, torch.zeros(2, 1, 28, 28), tmp_path / "m.onnx", opset=17, metadata=PROPS)
    assert info.exporter == "legacy" and info.opset == 17
    assert "opset 17 is below 18" in info.notes[0]
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert {p.key: p.value for p in proto.metadata_props} == PROPS
    x = torch.randn(3, 1, 28, 28)
    with torch.inference_mode():
        np.testing.assert_allclose(run(tmp_path / "m.onnx", x), model(x).numpy(), atol=1e-5)


def test_a_dynamo_failure_falls_back_to_the_legacy_exporter(model, tmp_path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::frobnicate\nmore detail")

    monkeypatch.setattr(onnx_export, "_dynamo_export", fail)
    info = to_onnx(model, torch.zeros(2, 1, 28, 28), tmp_path / "m.onnx", metadata=PROPS)
    assert info.exporter == "legacy"
    assert (
        "dynamo exporter failed (RuntimeError: unsupported operator aten::frobnicate)"
        in (info.notes[0])
    )
    x = torch.randn(4, 1, 28, 28)  # still a dynamic batch
    with torch.inference_mode():
        np.testing.assert_allclose(run(tmp_path / "m.onnx", x), model(x).numpy(), atol=1e-5)


def test_an_opset_the_exporter_did_not_write_is_an_error(model, tmp_path, monkeypatch) -> None:
    # The dynamo exporter writes the opset it was asked for; pretend it wrote another.
    real = onnx_export._dynamo_export
    monkeypatch.setattr(
        onnx_export, "_dynamo_export", lambda m, s, p, opset, d: real(m, s, p, 20, d)
    )
    with pytest.raises(ExportError, match="asked for ONNX opset 19, the exporter wrote opset 20"):
        to_onnx(model, torch.zeros(2, 1, 28, 28), tmp_path / "m.onnx", opset=19, metadata=PROPS)


def test_a_dynamic_batch_needs_a_trace_batch_of_two(model, tmp_path) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        to_onnx(model, torch.zeros(1, 1, 28, 28), tmp_path / "m.onnx", metadata=PROPS)


def test_ort_refuses_names_a_graph_onnxruntime_cannot_load(model, tmp_path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    nodes = [helper.make_node("Add", ["x", "pad_4"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), str(path))
    assert "pad_4" in onnx_export.ort_refuses(path)
    to_onnx(model, torch.zeros(2, 1, 28, 28), tmp_path / "m.onnx", metadata=PROPS)
    assert onnx_export.ort_refuses(tmp_path / "m.onnx") is None


def test_a_graph_ort_refuses_is_exported_unoptimised(model, tmp_path, monkeypatch) -> None:
    # Pretend ONNX Runtime refuses the optimised graph (as it did for EfficientNet-Lite's):
    # the unoptimised one is written, and the result says so.
    seen: list[bool] = []
    real = onnx_export.ort_refuses

    def first_refused(path):
        seen.append(True)
        return "Node input 'pad_4' is not a graph input" if len(seen) == 1 else real(path)

    monkeypatch.setattr(onnx_export, "ort_refuses", first_refused)
    info = to_onnx(model, torch.zeros(2, 1, 28, 28), tmp_path / "m.onnx", metadata=PROPS)
    assert info.exporter == "dynamo" and len(seen) == 2
    assert "refused the exporter's optimised graph (Node input 'pad_4'" in info.notes[0]
    # the graph written is torch's own unoptimised export, and nothing else is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert op_types(tmp_path / "m.onnx") == op_types(torch_export(model, tmp_path, False))
    x = torch.randn(3, 1, 28, 28)
    with torch.inference_mode():
        np.testing.assert_allclose(run(tmp_path / "m.onnx", x), model(x).numpy(), atol=1e-5)


def op_types(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def torch_export(model: torch.nn.Module, folder, optimize: bool):
    """The model exported by torch.onnx.export alone, as `optimize` says (dynamic batch)."""
    from torch.export import Dim

    path = folder / "torch.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), str(path), dynamo=True,
                          optimize=optimize, input_names=["image"], output_names=["logits"],
                          dynamic_shapes=({0: Dim("batch", min=1)},))  # fmt: skip
    return path


def test_the_graph_written_is_the_exporters_optimised_one(model, tmp_path) -> None:
    # exported once, optimised after: the same operators as torch's export(optimize=True),
    # more than unoptimised, and the unoptimised spare is not left beside the file
    to_onnx(model, torch.zeros(2, 1, 28, 28), tmp_path / "m.onnx", metadata=PROPS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    written = op_types(tmp_path / "m.onnx")
    assert written == op_types(torch_export(model, tmp_path, True))
    assert len(written) < len(op_types(torch_export(model, tmp_path, False)))


def test_in_place_modules_export_out_of_place_and_are_restored(model, tmp_path) -> None:
    inplace = [m for m in model.modules() if getattr(m, "inplace", None) is True]
    kept = [m for m in model.modules() if getattr(m, "inplace", None) is False]
    assert len(inplace) == 5 and kept  # smallcnn's five ReLUs in place, its Dropout not
    with onnx_export.out_of_place(model):
        assert not any(m.inplace for m in inplace + kept)
    assert all(m.inplace for m in inplace) and not any(m.inplace for m in kept)
    with pytest.raises(RuntimeError, match="boom"), onnx_export.out_of_place(model):
        raise RuntimeError("boom")
    assert all(m.inplace for m in inplace)
    to_onnx(model, torch.zeros(2, 1, 28, 28), tmp_path / "m.onnx", metadata=PROPS)
    assert all(m.inplace for m in inplace) and not any(m.inplace for m in kept)
