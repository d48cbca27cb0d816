"""`explain(RUN, images)` on a run folder built from an exported model: the run's preprocessing,
one overlay per image, file names that do not collide, errors that name the fix."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.api import predict
from cnnlab.errors import ConfigError
from cnnlab.explain import CamMethod, cam, explain
from cnnlab.export import export_model, load_exported
from cnnlab.models import create_model
from cnnlab.models.spec import PreprocessSpec

CLASSES = ["cat", "dog", "<b>fox</b>"]


@pytest.fixture
def run(tmp_path):
    """A finished run of a 3-channel smallcnn at 32 px with its own mean/std and a 0.8 crop."""
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=3, in_chans=3, input_size=32)
    spec = PreprocessSpec((3, 32, 32), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), "bicubic", 0.8)
    build = {"name": "smallcnn", "num_classes": 3, "in_chans": 3, "input_size": 32}
    run = tmp_path / "run"
    run.mkdir()
    export_model(model, run, classes=CLASSES, preprocess=spec, build=build)
    (run / "run.json").write_text(json.dumps({"status": "finished"}))
    return run


def _image(path, seed, size=(50, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def test_overlays_use_the_runs_preprocessing_and_the_predicted_class(run, tmp_path):
    a = _image(tmp_path / "a" / "x.png", 0)
    b = _image(tmp_path / "b" / "x.png", 1)
    results = explain(run, [a, b])
    assert [r.output.name for r in results] == ["x.gradcam.png", "x-2.gradcam.png"]
    expected = predict(run, [a, b], topk=1)  # the predict path, independently
    model, _ = load_exported(run)
    from cnnlab.data.transforms import load_for_predict

    for r, e, path in zip(results, expected, (a, b), strict=True):
        assert r.output.parent == run / "explain"
        with Image.open(r.output) as im:
            assert im.format == "PNG" and im.width > 200
        assert r.predicted == r.target == e["top"][0]["class"]
        assert r.predicted_prob == pytest.approx(e["top"][0]["prob"], abs=1e-6)
        assert r.heatmap.shape == (32, 32) and r.layer == "backbone.16"
        x = load_for_predict(path, model.preprocess)[0]
        np.testing.assert_allclose(r.heatmap, cam(model, x, CLASSES.index(r.target)), atol=1e-6)


def test_a_chosen_class_and_gradcampp(run, tmp_path):
    img = _image(tmp_path / "shoe.jpg", 2)
    out = tmp_path / "out"
    (r,) = explain(run, img, method="gradcam++", class_name="<b>fox</b>", out_dir=out)
    assert r.output == out / "shoe.gradcam++.png" and r.output.is_file()
    assert r.method is CamMethod.GRADCAM_PP and r.target == "<b>fox</b>"
    probs = {t["class"]: t["prob"] for t in predict(run, [img], topk=3)[0]["top"]}
    assert r.target_prob == pytest.approx(probs["<b>fox</b>"], abs=1e-6)


def test_bad_requests_name_the_fix(run, tmp_path):
    img = _image(tmp_path / "i.png", 3)
    with pytest.raises(ConfigError, match="did you mean: dog"):
        explain(run, [img], class_name="dgo")
    with pytest.raises(ConfigError, match="gradcam, gradcam\\+\\+"):
        explain(run, [img], method="gradcam+")
    with pytest.raises(ConfigError, match="no images"):
        explain(run, [])
