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


def seed_step(seed: int, step: int, rank: int = 0, device: torch.device | None = None) -> None:
    """Seed the generators a training step draws from: the CPU's, and `device`'s own.

    Not `torch.manual_seed`: besides the CPU generator it seeds every accelerator backend, and
    on a machine where CUDA is not initialised each of those calls is queued with a
    `traceback.format_stack()`: 2.5 ms of a 28 ms smallcnn_dw step on a 2-vCPU AMD EPYC (cProfile
    over `fit`; RESULTS.md, "The engine vs a plain PyTorch loop, first whole-suite table").
    The CPU generator gets the same seed as before, so runs are bitwise what they were."""
    s = derive_seed(seed, step, rank, 0xD50)
    seed_generators(s, device)
    random.seed(s)


def seed_generators(seed: int, device: torch.device | None = None) -> None:
    """The CPU generator and `device`'s own (dropout on a GPU draws from it), nothing else."""
    torch.default_generator.manual_seed(seed)
    if device is not None and device.type == "cuda":
        with torch.cuda.device(device):  # this rank's device, the current one under DDP
            torch.cuda.manual_seed(seed)
    elif device is not None and device.type == "mps":
        torch.mps.manual_seed(seed)


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
