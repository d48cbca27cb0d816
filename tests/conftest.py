import os

import pytest
import torch

# CPU results are bitwise repeatable only at a fixed thread count.
torch.set_num_threads(2)
os.environ.setdefault("MPLBACKEND", "Agg")


def _fmnist_present() -> bool:
    from cnnlab.data.fashion_mnist import find_fashion_mnist
    from cnnlab.errors import DataError

    try:
        find_fashion_mnist()
    except DataError:
        return False
    return True


@pytest.fixture
def fmnist() -> None:
    if not _fmnist_present():
        pytest.skip("Fashion-MNIST is not installed (`make data` installs it)")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    monkeypatch.setenv("CNNLAB_RUNS_DIR", str(path))
    return path


# A quick but real training config: 600 Fashion-MNIST images, 2 epochs.
QUICK = {
    "data": {"subset": 600, "batch_size": 64},
    "train": {"epochs": 2, "seed": 0, "threads": 2, "deterministic": True},
}
