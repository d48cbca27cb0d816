"""The wait for the other processes of a distributed run, made interruptible and bounded.

When a launcher (torchrun, srun) started this process as one rank of many, the first thing the
fit does is wait, inside PyTorch's C++ code, until every rank has joined. Python signal handlers
cannot run during that wait, so Ctrl-C and SIGTERM did nothing until the timeout (10 minutes).
`RendezvousGuard` watches for those signals from a helper thread (the wait releases the GIL):
one that arrives before the processes have joined ends the process at once, after the caller's
clean-up. A wait that times out becomes a `DistributedSetupError` that says how to launch.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from lightning.pytorch.callbacks import Callback

from cnnlab.errors import EXIT_INTERRUPTED, ConfigError

DEFAULT_TIMEOUT_S = 600


class DistributedSetupError(ConfigError):
    """The processes of a distributed run did not all join (a node that never started, or
    one started with another MASTER_ADDR/MASTER_PORT)."""


def timeout_s() -> int:
    """Seconds to wait for the other processes: CNNLAB_DDP_TIMEOUT, default 10 minutes."""
    raw = os.environ.get("CNNLAB_DDP_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"CNNLAB_DDP_TIMEOUT must be a whole number of seconds > 0, got {raw!r}")
    return value


def setup_error(e: BaseException, world: int) -> DistributedSetupError:
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return DistributedSetupError(
        f"the {world} processes of this distributed run did not all join within {timeout_s()} s "
        f"({detail}); start cnnlab on every node with the same MASTER_ADDR and MASTER_PORT "
        f"(torchrun or srun), or allow longer with CNNLAB_DDP_TIMEOUT=SECONDS"
    )


class RendezvousGuard(Callback):
    """Knows when the processes of a run have joined, and ends the process on Ctrl-C / SIGTERM
    while it still waits for them (`watching`).

    Lightning calls `setup` once the process group is up (at once for a single process):
    `on_joined()` runs then, and from then on the usual handlers (a checkpoint at the next step)
    take over. `on_signal(name)` runs (in a helper thread) before the exit with code 130: it
    should put the run folder in order and say what happened."""

    def __init__(
        self,
        on_signal: Callable[[str], None] | None = None,
        on_joined: Callable[[], None] | None = None,
        requested: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.on_signal = on_signal
        self.on_joined = on_joined
        self.requested = requested  # a signal that came before the watch began (its name)
        self.joined = threading.Event()

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.joined.set()
        if self.on_joined is not None and trainer.is_global_zero:  # rank 0 writes the folder
            self.on_joined()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        try:
            read, write = os.pipe()
            os.set_blocking(write, False)
            previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        except (ValueError, OSError):  # not the main thread: nothing to watch
            yield
            return
        if self.requested():
            self._stop(self.requested())
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(read, done), daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            signal.set_wakeup_fd(previous)
            watcher.join(timeout=2)
            os.close(read)
            os.close(write)

    def _watch(self, read: int, done: threading.Event) -> None:
        while not done.is_set() and not self.joined.is_set():
            ready, _, _ = select.select([read], [], [], 0.2)
            if not ready:
                continue
            got = os.read(read, 64)
            sigs = [signal.Signals(b).name for b in got if b in (signal.SIGINT, signal.SIGTERM)]
            if sigs and not self.joined.is_set() and not done.is_set():
                self._stop(sigs[0])

    def _stop(self, name: str) -> None:
        with contextlib.suppress(Exception):  # the exit must happen whatever the clean-up does
            if self.on_signal is not None:
                self.on_signal(name)
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
