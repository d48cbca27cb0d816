import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab import runtime

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
# with transparent huge pages always on, a fresh buffer faults in 2 MiB at a time, not 4 KiB
SMALL_PAGES = GLIBC and not (THP.exists() and "[always]" in THP.read_text())

# A child that fills and frees a 64 MiB buffer 5 times and prints its minor page faults.
CHILD = """
import resource, sys
if sys.argv[1] == "tuned":
    from cnnlab.runtime import tune_process
    print(tune_process().malloc, file=sys.stderr)
import ctypes
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):  # what a tensor's life is to the allocator: malloc, write every page, free
    p = libc.malloc(64 << 20)
    ctypes.memset(p, 1, 64 << 20)
    libc.free(p)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not SMALL_PAGES, reason="needs glibc and 4 KiB pages")
def test_tuned_process_reuses_freed_pages_instead_of_faulting_new_ones():
    pages = (64 << 20) // 4096  # one buffer's worth of 4 KiB pages
    default, tuned = _faults("default"), _faults("tuned")
    assert default >= 4 * pages  # glibc maps and zero-fills a fresh buffer each time
    assert tuned <= 1.5 * pages  # the first buffer faults in; the others reuse its pages


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_sets_the_variables_children_inherit():
    env: dict[str, str] = {}
    tuning = runtime.tune_process(environ=env)
    assert tuning.applied and tuning.malloc == "glibc mallopt"
    assert env == {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
    assert tuning.env == env
    # a second call finds them set and changes nothing
    again = runtime.tune_process(environ=env)
    assert again.malloc == "already set in the environment" and again.env == {}


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keeps_a_users_own_value():
    env = {"MALLOC_MMAP_THRESHOLD_": "65536"}
    tuning = runtime.tune_process(environ=env)
    assert env["MALLOC_MMAP_THRESHOLD_"] == "65536"
    assert tuning.env == {"MALLOC_TRIM_THRESHOLD_": "1073741824"}


def test_opt_out_changes_nothing():
    env = {"CNNLAB_TUNE_MALLOC": "0"}
    tuning = runtime.tune_process(environ=env)
    assert not tuning.applied
    assert env == {"CNNLAB_TUNE_MALLOC": "0"}


def test_threads_are_capped_at_the_cpus_the_process_may_use(monkeypatch):
    from cnnlab.engine.devices import cpu_threads_text
    from cnnlab.runtime import available_cpus, cpu_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert available_cpus() == 1
    assert cpu_threads(2) == 1 and cpu_threads(1) == 1
    assert (
        cpu_threads_text(2) == "1 CPU thread (--threads 2, but this process may run on 1 CPU only)"
    )
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert cpu_threads(2) == 2 and cpu_threads(8) == 4


def test_a_pinned_training_process_runs_one_thread(tmp_path):
    # a real process pinned to one CPU: --threads 2 gives torch 1 thread
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = (
        "import os, torch; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
        "from cnnlab.engine.seeding import configure_determinism; "
        "configure_determinism(False, 2); print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
