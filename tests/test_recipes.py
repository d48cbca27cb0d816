"""The --pretrained recipe fills only what the user left unset, and says so."""

from cnnlab.api import resolve_config
from cnnlab.recipes import FINE_TUNE, PRETRAINED


def test_pretrained_alone_gets_the_frozen_recipe():
    cfg = resolve_config(None, {"model.name": "efficientnet_lite0", "model.pretrained": True})
    for key, value in PRETRAINED.items():
        section, leaf = key.split(".")
        assert getattr(getattr(cfg, section), leaf) == value, key
    (note,) = cfg.notes
    assert "freeze_backbone=True" in note and FINE_TUNE in note


def test_what_the_user_set_wins_and_from_scratch_runs_are_untouched():
    cfg = resolve_config(
        None, {"model.pretrained": True, "model.name": "efficientnet_lite0", "epochs": 3,
               "lr": 0.01, "unfreeze_at": 1},
    )  # fmt: skip
    assert (cfg.train.epochs, cfg.optim.lr, cfg.model.unfreeze_at) == (3, 0.01, 1)
    assert cfg.model.freeze_backbone and cfg.optim.optimizer == "adamw"
    assert "epochs" not in cfg.notes[0] and "lr=" not in cfg.notes[0]
    scratch = resolve_config(None, {"model.name": "resnet18"})
    assert scratch.notes == [] and scratch.optim.optimizer == "sgd"
