"""What every chaos case checks, in one place.

A case runs one cnnlab command against something hostile and asserts four promises:
1. the exit code is the documented one (README, "Exit codes"), never 1 (a bug);
2. the message is one line that names the problem (no traceback);
3. no file outside the run folder changed (`untouched_outside`);
4. the last good checkpoint still loads (`last_good_checkpoint`).

Everything here reads files and exit codes only (no cnnlab internals), so the same checks run
against any version of cnnlab: the suite was run against the commit before the hardening to
show that each case failed there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_USAGE, EXIT_DIVERGED, EXIT_DATA, EXIT_RUN, EXIT_DISK_FULL = 2, 3, 4, 5, 6
EXIT_INTERRUPTED = 130


@dataclass
class Outcome:
    """A finished command: exit code and what it printed."""

    code: int
    out: str
    err: str

    @property
    def message(self) -> str:
        """The last line on stderr: where the error (or the interrupt notice) is."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""

    def expect(self, code: int, *fragments: str, alone: bool = True) -> Outcome:
        """Exit `code` with a one-line message holding every fragment. `alone`: nothing else on
        stderr (commands refused before they start print exactly one line)."""
        assert self.code == code, f"exit {self.code}, wanted {code}: {self.err[-2000:]}"
        assert "Traceback" not in self.err, self.err[-3000:]
        if code != 0:
            assert self.message, "no message"
            assert "internal error" not in self.message, self.message
            for fragment in fragments:
                assert fragment in self.message, f"{fragment!r} not in {self.message!r}"
            if alone:
                assert self.err.strip() == self.message, f"more than one line: {self.err!r}"
        return self


def cli(capsys: Any, *argv: str | os.PathLike) -> Outcome:
    """`cnnlab ARGV` in this process (through `cnnlab.cli.main`), output captured."""
    from cnnlab.cli import main

    capsys.readouterr()  # drop what earlier steps printed
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def cli_subprocess(*argv: str | os.PathLike, timeout: float = 300, **env: str) -> Outcome:
    """`python -m cnnlab ARGV` as its own process (signals, hangs, real exits)."""
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", *map(str, argv)], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )  # fmt: skip
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


# ---------------------------------------------------------------------------------------------
# promise 3: nothing outside the run folder changes


def snapshot(roots: Iterable[Path], skip: Iterable[Path] = ()) -> dict[str, tuple]:
    """Every entry under `roots` (symlinks not followed), except under `skip`: files with their
    mode, size, modification time and content hash; folders by their existence and mode (a
    folder's times change with what is inside it). cnnlab's own cache (CNNLAB_CACHE_DIR) is
    left out: it lives outside run folders by design."""
    skipped = [os.path.realpath(p) for p in skip]
    cache = os.environ.get("CNNLAB_CACHE_DIR")
    if cache:
        skipped.append(os.path.realpath(cache))
    state: dict[str, tuple] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            keep = []
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if os.path.realpath(full) not in skipped or os.path.islink(full):
                    keep.append(d)
            dirnames[:] = keep
            for name in [*filenames, *dirnames]:
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                if stat.S_ISDIR(st.st_mode):
                    state[full] = ("dir", st.st_mode)
                    continue
                digest = ""
                if stat.S_ISREG(st.st_mode):
                    digest = hashlib.sha256(Path(full).read_bytes()).hexdigest()
                state[full] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_size, st.st_mtime_ns,
                               digest)  # fmt: skip
    return state


@contextlib.contextmanager
def untouched_outside(roots: Iterable[Path], *run_dirs: Path) -> Iterator[None]:
    """Assert that nothing under `roots` changes, except inside `run_dirs` (and the creation of
    the folders that hold them, like the runs folder itself)."""
    roots = list(roots)
    before = snapshot(roots, run_dirs)
    yield
    after = snapshot(roots, run_dirs)
    holders = {str(parent) for run in run_dirs for parent in Path(run).parents}
    changed = sorted(
        k for k in before.keys() | after.keys()
        if before.get(k) != after.get(k) and not (k in holders and after.get(k, ("dir",))[0] == "dir")
    )  # fmt: skip
    assert not changed, f"changed outside the run folder: {changed[:10]}"


def folder_state(run_dir: Path) -> dict[str, tuple]:
    """A run folder's files and their contents (to show that a command changed nothing)."""
    return snapshot([run_dir])


# ---------------------------------------------------------------------------------------------
# promise 4: the last good checkpoint loads


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint, loaded the safe way (weights_only=True), with what a resume
    needs (weights, loop state)."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(ckpt, dict) and "state_dict" in ckpt and "loops" in ckpt, path
    return ckpt


def last_good_checkpoint(run_dir: Path) -> dict:
    """The checkpoint a resume would use: last.ckpt, or last.prev.ckpt when last.ckpt is
    missing (a write was interrupted after the rotation)."""
    for name in ("last.ckpt", "last.prev.ckpt"):
        if (run_dir / name).exists():
            return load_checkpoint(run_dir / name)
    raise AssertionError(f"no checkpoint in {run_dir}: {sorted(os.listdir(run_dir))}")


def epochs_in(ckpt: dict) -> int:
    """Epochs whose end a checkpoint includes: the rows of the history it carries (the
    end-of-epoch checkpoint is written before Lightning counts its epoch as completed)."""
    for state in ckpt.get("callbacks", {}).values():
        if isinstance(state, dict) and isinstance(state.get("history"), list):
            return len(state["history"])
    raise AssertionError("no training history in the checkpoint")


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def history(run_dir: Path) -> list[dict]:
    import csv

    with open(run_dir / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------------------
# other processes


@contextlib.contextmanager
def live_lock(run_dir: Path, command: str = "cnnlab train --name r") -> Iterator[int]:
    """Make `run_dir` look owned by a live process (a sleeping child) the way a training process
    owns it: a `.lock` file holding its PID and host."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    lock = run_dir / ".lock"
    lock.write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname(),
                                "since": "2026-01-01T00:00:00+00:00", "command": command}))  # fmt: skip
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        lock.unlink(missing_ok=True)


def dead_pid() -> int:
    """The PID of a process that has exited (for stale locks and temporary files)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def left_in_group(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (Linux /proc): start a command with
    `start_new_session=True` and, once it has exited, anything still in its group is an orphan
    it left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def send(proc: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
