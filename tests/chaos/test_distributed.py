"""A distributed run whose other processes never come (a node that never starts): a clear
timeout, and Ctrl-C / SIGTERM end the wait at once; the name stays free, nothing is left
running. Simulated with gloo on CPU: this process gets the environment torchrun or srun would
give rank 0 of 2, and rank 1 never starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.chaos.conftest import TINY
from tests.chaos.harness import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Outcome,
    left_in_group,
    untouched_outside,
)


def rank0_of_two(timeout_s: int) -> dict[str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {
        **os.environ, "TORCHELASTIC_RUN_ID": "chaos", "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port), "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
        "NODE_RANK": "0", "GROUP_RANK": "0", "LOCAL_WORLD_SIZE": "1",
        "CNNLAB_DDP_TIMEOUT": str(timeout_s), "PYTHONUNBUFFERED": "1",
    }  # fmt: skip


def start(runs, photos, timeout_s: int) -> subprocess.Popen:
    argv = ["train", "--runs-dir", runs, "--name", "d", "--data", photos, "--epochs", "1",
            "--num-nodes", "2", *TINY]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *map(str, argv)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=rank0_of_two(timeout_s), start_new_session=True,
    )  # fmt: skip


def test_a_node_that_never_joins_is_a_clear_timeout(photos, tmp_path):
    """It waited (silently, ignoring SIGTERM) and then ended in an internal error."""
    runs = tmp_path / "runs"
    with untouched_outside([tmp_path, photos], runs / "d"):
        proc = start(runs, photos, timeout_s=3)
        out, err = proc.communicate(timeout=120)
    Outcome(proc.returncode, out, err).expect(
        EXIT_USAGE, "the 2 processes of this distributed run did not all join within 3 s",
        "same MASTER_ADDR and MASTER_PORT", "CNNLAB_DDP_TIMEOUT",
    )  # fmt: skip
    assert not (runs / "d").exists()  # nothing was trained: the name stays free
    assert left_in_group(proc.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_signal_ends_the_wait_for_the_other_nodes_at_once(photos, tmp_path, sig):
    runs = tmp_path / "runs"
    with untouched_outside([tmp_path, photos], runs / "d"):
        proc = start(runs, photos, timeout_s=120)
        while not proc.stdout.readline().startswith("run folder:"):
            assert proc.poll() is None, proc.communicate()
        time.sleep(1.0)  # into the wait
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 20  # at once, not after the 120 s timeout
    Outcome(proc.returncode, out, err).expect(
        EXIT_INTERRUPTED, f"interrupted by {sig.name} while waiting for the other processes"
    )
    assert not (runs / "d").exists()
    assert left_in_group(proc.pid) == []
