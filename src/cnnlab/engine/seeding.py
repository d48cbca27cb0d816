"""All training randomness is a function of (seed, epoch, step, rank), never of history.

That makes a resume exact without restoring RNG state: the sampler permutation comes from
(seed, epoch), per-sample augmentation from (seed, epoch, index) (see the datasets), and the
global torch RNG (dropout) is re-seeded from (seed, step, rank) before every training step.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from cnnlab.runtime import cpu_threads
from cnnlab.seeds import derive_seed

__all__ = ["derive_seed", "seed_step", "seed_all", "configure_determinism"]


def seed_step(seed: int, step: int, rank: int = 0) -> None:
    s = derive_seed(seed, step, rank, 0xD50)
    torch.manual_seed(s)
    random.seed(s)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def configure_determinism(deterministic: bool, threads: int | None) -> None:
    """Fix the thread count (CPU reductions are bitwise repeatable only at a fixed count), at
    most one thread per CPU this process may use (`runtime.cpu_threads`)."""
    if threads is not None:
        torch.set_num_threads(cpu_threads(threads))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
