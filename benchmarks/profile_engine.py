"""Where a smallcnn epoch's time goes in the engine, beyond the model's own forward/backward.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/profile_engine.py

cProfile over `fit` (2 epochs of 2,560 Fashion-MNIST images, batch 128): the Python functions
of Lightning, torchmetrics, cnnlab and the DataLoader with the most cumulative time, and the
time inside the model (forward, backward, optimizer) for comparison.
"""

from __future__ import annotations

import cProfile
import pstats
import tempfile
from pathlib import Path

import torch
from bench_engine import _config, engine_fit, fashion_bundle


def main() -> None:
    from cnnlab.models import create_model
    from cnnlab.runtime import tune_process

    tune_process()
    torch.set_num_threads(2)
    cfg = _config("smallcnn", 128, epochs=2)
    bundle = fashion_bundle(2560, 640)
    torch.manual_seed(0)
    model = create_model("smallcnn", num_classes=10)
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        prof.enable()
        engine_fit(cfg, bundle, model, Path(tmp))
        prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(
        r"(lightning|torchmetrics|cnnlab|dataloader|optimizer|autograd|module\.py.*_call_impl)", 45
    )


if __name__ == "__main__":
    main()
