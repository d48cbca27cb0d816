import numpy as np

from cnnlab.evaluation.plots import lr_drop_epochs, plot_confusion, plot_curves


def _history(lrs):
    return [
        {"epoch": e, "lr": lr, "train_acc": 0.5, "val_acc": 0.5, "train_loss": 1.0, "val_loss": 1.0}
        for e, lr in enumerate(lrs)
    ]


def test_lr_drops_are_the_plateau_divisions_not_the_schedule_wiggles():
    assert lr_drop_epochs(_history([0.1, 0.1, 0.01, 0.01, 0.001])) == [2, 4]
    assert lr_drop_epochs(_history([0.1, 0.095, 0.09])) == []  # a cosine step is not a drop


def test_pictures_are_written(tmp_path):
    plot_curves(_history([0.1, 0.01]), tmp_path / "curves.png", title="t")
    plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "cm.png")
    for name in ("curves.png", "cm.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", "curves.png"]
