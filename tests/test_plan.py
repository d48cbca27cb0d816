"""The plan: every check that needs no data fails before anything is written."""

import pytest

from cnnlab import config as C
from cnnlab.errors import ConfigError, DataError
from cnnlab.plan import make_plan, plan_inputs


def cfg_with(**keys):
    cfg = C.Config()
    for k, v in keys.items():
        cfg.set(k.replace("__", "."), v)
    return C.validate(cfg)


def test_pretrained_without_weights_lists_the_models_that_have_them(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_plan(cfg_with(model__name="smallcnn", model__pretrained=True), tmp_path)
    message = str(info.value)
    have = message.split("models that have: ")[1].split(";")[0].split(", ")
    assert "has no pretrained weights" in message
    assert "efficientnet_lite0" in have and "vgg16" in have and "smallcnn" not in have
    assert not list(tmp_path.iterdir())


def test_the_global_batch_must_split_over_the_processes(tmp_path):
    with pytest.raises(ConfigError, match="does not split over 3 processes.*e.g. 126"):
        make_plan(cfg_with(train__devices=3, data__batch_size=128), tmp_path)


def test_several_machines_need_a_launcher(tmp_path, monkeypatch):
    for key in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="needs a launcher.*torchrun --nnodes 2"):
        make_plan(cfg_with(train__num_nodes=2), tmp_path)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    assert make_plan(cfg_with(train__num_nodes=2), tmp_path).device.strategy == "ddp"


def test_sizes_and_paths_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="too large"):
        make_plan(cfg_with(data__image_size=100000), tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        make_plan(cfg_with(data__dataset="folder", data__path=str(tmp_path / "nope")), tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        make_plan(cfg_with(data__dataset="folder", data__path=str(tmp_path / "file.txt")), tmp_path)
    with pytest.raises(DataError, match="--data-dir .* is not a folder"):
        make_plan(cfg_with(data__data_dir=str(tmp_path / "nope")), tmp_path)
    with pytest.raises(ConfigError, match="--weights .* is not a file"):
        make_plan(cfg_with(model__weights=str(tmp_path)), tmp_path)


def test_inputs_follow_the_data_and_the_weights(tmp_path):
    from cnnlab.models import get_model_info

    small = get_model_info("smallcnn")
    fmnist = plan_inputs(cfg_with(), small)
    assert (fmnist.image_size, fmnist.in_chans, fmnist.preprocess) == (28, 1, None)
    # colour photos train in colour, also with a model made for grayscale
    folder = plan_inputs(cfg_with(data__dataset="folder", data__path=str(tmp_path)), small)
    assert (folder.in_chans, folder.image_size) == (3, small.default_input)
    gray = cfg_with(data__dataset="folder", data__path=str(tmp_path), data__channels=1)
    assert plan_inputs(gray, small).in_chans == 1
    lite = get_model_info("efficientnet_lite0")
    pre = plan_inputs(cfg_with(model__name="efficientnet_lite0", model__pretrained=True), lite)
    assert pre.preprocess.mean == (0.5, 0.5, 0.5) and pre.image_size == 224


def test_vgg_trains_in_nchw_on_a_cpu_unless_the_user_chose(tmp_path):
    from cnnlab.models import get_model_info
    from cnnlab.plan import plan_memory_format

    plan = make_plan(cfg_with(model__name="vgg11", train__device="cpu"), tmp_path)
    assert plan.config.model.channels_last is False
    # a default chosen for the run (printed as such), not a warning
    assert any("memory format: NCHW" in n and "--channels-last" in n for n in plan.recipe)
    assert not any("memory format" in n for n in plan.notes)
    # the user's choice wins, and other families keep channels_last
    chosen = make_plan(
        cfg_with(model__name="vgg11", train__device="cpu", model__channels_last=True), tmp_path
    )
    assert chosen.config.model.channels_last is True
    assert not any("memory format" in n for n in chosen.recipe)
    for name in ("resnet18", "smallcnn", "efficientnet_lite0"):
        assert make_plan(cfg_with(model__name=name), tmp_path).config.model.channels_last
    # on a GPU channels_last feeds the tensor cores: no change there
    cfg = cfg_with(model__name="vgg16")
    assert plan_memory_format(cfg, get_model_info("vgg16"), "cuda") == []
    assert cfg.model.channels_last is True
