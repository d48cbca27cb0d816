"""Process-wide settings that make CPU training and inference fast; called once at start-up.

The allocator: glibc's malloc serves every block above its mmap threshold (128 KiB at start,
raised dynamically up to 32 MiB) with a fresh `mmap` and returns it with `munmap` when freed.
A CNN allocates the same large activation buffers on every batch, so with the defaults the
kernel maps and zero-fills new pages each time: a plain EfficientNet-Lite0 inference loop ran
3.2x faster with the two variables below (benchmarks/RESULTS.md, "Allocator"). Keeping freed
memory in the heap (high mmap and trim thresholds) lets malloc reuse the pages of the previous
batch. The price is that the process keeps its peak heap until it exits, which a training or
evaluation process does anyway.

    from cnnlab.runtime import tune_process
    tune_process()          # first thing in main(), before any tensor is allocated

Threads: a process limited to fewer CPUs than the threads it is asked for (`taskset`, a
container's cpuset, a test worker pinned to one core) gets one torch thread per CPU it may run
on. OpenMP threads that outnumber their CPUs spin and wait on each other: two `--threads 2`
trainings sharing the 2 cores of an AMD EPYC, each pinned to one, ran 1.56x and 1.99x faster at
1 thread each (benchmarks/bench_threads.py; RESULTS.md, "Threads").

Child processes (DataLoader workers, DDP ranks, `cnnlab experiment` subprocesses) inherit the
environment variables; forked children also inherit the mallopt settings themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from dataclasses import dataclass, field

# glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# 1 GiB: above any single activation buffer of the models here at usual batch sizes (Lite0 at
# 224 px, batch 256: 154 MB for the largest), and mallopt takes a C int (< 2 GiB).
THRESHOLD = 1 << 30
ENV = {"MALLOC_MMAP_THRESHOLD_": str(THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(THRESHOLD)}
# Set to 0 to keep glibc's defaults (for measuring the difference, or a memory-tight machine).
OPT_OUT = "CNNLAB_TUNE_MALLOC"


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_threads(requested: int) -> int:
    """Torch threads for a request of `requested`: never more than the CPUs available."""
    return max(1, min(requested, available_cpus()))


@dataclass(frozen=True)
class ProcessTuning:
    """What `tune_process` did, for environment.json and for tests."""

    malloc: str  # "glibc mallopt", "already set in the environment", or why nothing was done
    env: dict[str, str] = field(default_factory=dict)  # variables set for child processes

    @property
    def applied(self) -> bool:
        return self.malloc in ("glibc mallopt", "already set in the environment")


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None  # musl, macOS, Windows: other allocators, other knobs
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_process(*, environ: dict[str, str] | None = None) -> ProcessTuning:
    """Keep large freed buffers in the heap for this process and its children (glibc only).

    Idempotent; respects values the user already set (MALLOC_*_ or CNNLAB_TUNE_MALLOC=0)."""
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "1") == "0":
        return ProcessTuning(f"off ({OPT_OUT}=0)")
    libc = _glibc()
    if libc is None:
        return ProcessTuning(f"not glibc ({platform.system()} {platform.libc_ver()[0] or '?'})")
    if all(k in env for k in ENV):
        # glibc read them at start-up already; nothing to change, children inherit them
        return ProcessTuning("already set in the environment")
    added = {k: v for k, v in ENV.items() if k not in env}
    env.update(added)
    # mallopt returns 1 on success; a user's own MALLOC_*_ value wins over ours
    ok = True
    if "MALLOC_MMAP_THRESHOLD_" in added:
        ok &= libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(THRESHOLD)) == 1
    if "MALLOC_TRIM_THRESHOLD_" in added:
        ok &= libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(THRESHOLD)) == 1
    return ProcessTuning("glibc mallopt" if ok else "mallopt refused the values", added)
