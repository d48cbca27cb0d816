import pytest

from cnnlab import config as C
from cnnlab.errors import ConfigError


def test_defaults_validate():
    assert C.validate(C.Config()).model.name == "smallcnn"


def test_set_dotted_and_unique_keys_coerce_types():
    cfg = C.Config()
    cfg.set("optim.lr", "0.1")
    cfg.set("epochs", "3")
    cfg.set("pretrained", "true")
    cfg.set("dropout", "none")
    assert (cfg.optim.lr, cfg.train.epochs, cfg.model.pretrained, cfg.model.dropout) == (
        0.1,
        3,
        True,
        None,
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.epochs", "abc", "needs a int"),
        ("optim.lrr", "1", "did you mean: optim.lr"),
        ("bogus", "1", "unknown config key"),
        ("nosection.lr", "1", "unknown config section"),
        ("train.epochs", "2.5", "needs a int"),
    ],
)
def test_bad_keys_and_types_name_the_problem(key, value, message):
    with pytest.raises(ConfigError, match=message):
        C.Config().set(key, value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("optim.lr", 0, "learning rate must be a number > 0"),
        ("optim.lr", -1, "learning rate must be a number > 0"),
        ("optim.lr", "inf", "learning rate must be a number > 0, got inf"),
        ("optim.lr", "nan", "learning rate must be a number > 0, got nan"),
        ("optim.weight_decay", "inf", "weight decay must be a number >= 0"),
        ("data.batch_size", 0, "batch size must be at least 1"),
        ("data.channels", 2, "channels must be 1 or 3"),
        ("train.epochs", 0, "epochs must be at least 1"),
        ("model.dropout", 1.0, "dropout"),
        ("data.val_fraction", 1.0, "val fraction"),
    ],
)
def test_validate_rejects_bad_values(key, value, message):
    cfg = C.Config()
    cfg.set(key, value)
    with pytest.raises(ConfigError, match=message):
        C.validate(cfg)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("optim.optimizer", "rmsprop", "unknown value for optim.optimizer 'rmsprop'"),
        ("optim.schedule", "cosin", "did you mean: cosine"),
        ("data.on_bad_image", "ignore", "choose one of: fail, skip"),
        ("train.monitor", "val_f1", "choose one of: val_acc, val_loss"),
    ],
)
def test_fields_with_fixed_values_are_checked_when_set(key, value, message):
    # one place checks them (the Literal type), whether they come from YAML, CLI or API
    with pytest.raises(ConfigError, match=message):
        C.Config().set(key, value)


def test_a_config_path_that_is_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="is a folder; pass a YAML file"):
        C.load_yaml(tmp_path)


def test_yaml_round_trip(tmp_path):
    cfg = C.Config(name="x")
    cfg.set("optim.lr", 0.2)
    path = tmp_path / "c.yaml"
    path.write_text(C.to_yaml(cfg))
    assert C.load_yaml(path) == cfg


def test_yaml_unknown_section_and_bad_syntax(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimm:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="did you mean: optim"):
        C.load_yaml(bad)
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        C.load_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        C.load_yaml(tmp_path / "missing.yaml")


def test_lint_reports_contradictions():
    cfg = C.Config()
    cfg.set("train.epochs", 3)
    cfg.set("train.patience", 4)
    cfg.set("model.freeze_backbone", True)
    cfg.set("model.unfreeze_at", 5)
    notes = " | ".join(C.lint(cfg))
    assert "patience (4) >= epochs (3)" in notes
    assert "freeze_backbone without pretrained" in notes
    assert "unfreeze_at (5) >= epochs (3)" in notes
    assert C.lint(C.Config()) == []
    # a short run with the default patience is no mistake of the user's: no warning
    short = C.Config()
    short.set("train.epochs", 2)
    assert C.lint(short) == []


def test_a_config_knows_which_keys_were_set():
    cfg = C.from_dict({"optim": {"lr": 0.5}, "train": {"epochs": 3}})
    assert cfg.explicit == {"optim.lr", "train.epochs"}
    assert cfg.is_set("optim.lr") and not cfg.is_set("data.batch_size")
    assert "explicit" not in C.to_yaml(cfg)  # a saved config is all explicit when read back
    assert C.load_yaml_text(C.to_yaml(cfg)).is_set("data.batch_size")


def test_lr_is_a_number_or_auto_from_yaml_cli_and_api():
    cfg = C.load_yaml_text("optim: {lr: auto}\ntrain: {logger: tensorboard}")
    assert (cfg.optim.lr, cfg.train.logger) == ("auto", "tensorboard")
    assert C.validate(cfg) is cfg and C.load_yaml_text(C.to_yaml(cfg)).optim.lr == "auto"
    cfg.set("lr", "3e-3")
    assert cfg.optim.lr == 0.003 and C.Config().train.logger == "csv"
    with pytest.raises(ConfigError, match="'optim.lr' needs a float or 'auto', got 'fast'"):
        cfg.set("optim.lr", "fast")
    with pytest.raises(ConfigError, match="needs a float or 'auto', got 'none'"):
        cfg.set("optim.lr", "none")  # lr is not optional
    with pytest.raises(ConfigError, match="choose one of: csv, tensorboard"):
        cfg.set("train.logger", "wandb")
    cfg.set("lr", "auto")
    cfg.set("backbone_lr", 1e-4)
    with pytest.raises(ConfigError, match="--lr auto finds one rate for every layer"):
        C.validate(cfg)
