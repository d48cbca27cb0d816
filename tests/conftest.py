import os

import pytest
import torch

from cnnlab.runtime import cpu_threads


def _pin_xdist_worker() -> None:
    """Under `pytest -n N` with N <= CPUs, each worker (and every process it starts) runs on a
    CPU of its own, so cnnlab gives it one torch thread (runtime.cpu_threads) where tests ask
    for 2: N workers x 2 threads on N cores spin on each other (the suite took 802 s unpinned,
    543 s pinned on a 2-vCPU AMD EPYC; benchmarks/RESULTS.md "Threads")."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if 0 < count <= len(cpus):
        os.sched_setaffinity(0, {cpus[int(worker[2:]) % len(cpus)]})


_pin_xdist_worker()
# CPU results are bitwise repeatable only at a fixed thread count (2, or 1 on a pinned worker).
torch.set_num_threads(cpu_threads(2))
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
