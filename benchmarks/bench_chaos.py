"""The long chaos cases: cnnlab run as a real process and attacked (kill -9 at chosen moments,
signals, concurrent commands, damaged run folders, hostile names, crafted files, bad images,
a full disk). Each case checks the promises of tests/chaos/harness.py: the exit code, one line
naming the problem, nothing outside the run folder changed, the last good checkpoint loads
(and, after a kill, a resume that ends with the same weights as a run never interrupted).

    .venv/bin/python benchmarks/bench_chaos.py [--only kill signals ...] [--out results.json]
    .venv/bin/python benchmarks/bench_chaos.py --src /tmp/old/src --out old.json   # a baseline
    .venv/bin/python benchmarks/bench_chaos.py --table new.json --baseline old.json

Every case talks to cnnlab through its command line only (plus a small wrapper that patches the
standard library or torch to kill or fill the disk at an exact moment), so `--src` can point at
any version: the "fixed in this issue" column counts the cases that hold here and broke on the
baseline. Heavy: run it under the CPU lock, a few categories at a time (`--only`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.chaos.harness import (  # noqa: E402
    EXIT_DATA,
    EXIT_DISK_FULL,
    EXIT_INTERRUPTED,
    EXIT_RUN,
    EXIT_USAGE,
    Outcome,
    epochs_in,
    folder_state,
    last_good_checkpoint,
    left_in_group,
    load_checkpoint,
    status,
    untouched_outside,
)
from tests.procs import exported_weights, metrics_rows  # noqa: E402

TINY = ["--image-size", "16", "--batch-size", "8", "--threads", "1", "--cache", "off",
        "--seed", "0", "--lr", "0.05", "--deterministic"]  # fmt: skip
EPOCHS = 3

# Runs cnnlab's CLI after arranging one accident through the environment:
#   CHAOS_KILL_AT=NAME:N:PHASE  kill -9 at the N-th atomic write of NAME (last.ckpt, ...):
#                               PHASE "write" with the temporary file half written, "rename"
#                               with it complete but not yet renamed
#   CHAOS_ENOSPC=NAME:N         the N-th write of NAME fails with "No space left on device"
#   CHAOS_SLOW=scan|evaluate    the data scan (or the evaluation) prints its name and waits
WRAPPER = r"""
import errno, os, signal, sys, time

def _count(name, n, action):
    seen = {"k": 0}
    real = os.replace
    def replace(src, dst, *a, **k):
        if os.path.basename(str(dst)) == name:
            seen["k"] += 1
            if seen["k"] == n:
                action(str(src))
        return real(src, dst, *a, **k)
    os.replace = replace

kill = os.environ.get("CHAOS_KILL_AT")
if kill:
    name, n, phase = kill.split(":")
    def die(src):
        if phase == "write":
            size = os.path.getsize(src)
            with open(src, "r+b") as fh:
                fh.truncate(size // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    _count(name, int(n), die)

full = os.environ.get("CHAOS_ENOSPC")
if full:
    name, n = full.split(":")
    def fail(src):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src)
    _count(name, int(n), fail)

slow = os.environ.get("CHAOS_SLOW")
if slow:
    def waiting(*a, **k):
        print(slow + "ing", flush=True)
        time.sleep(300)
    if slow == "scan":
        import cnnlab.data.build as target
        target.build_data = waiting
    else:
        import cnnlab.evaluation.inference as target
        target.predict_logits = waiting

from cnnlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Broken(AssertionError):
    """A promise that did not hold."""


@dataclass
class Result:
    category: str
    case: str
    held: bool
    detail: str
    seconds: float


class Lab:
    """A scratch folder with tiny photos, one reference run, and ways to run cnnlab."""

    def __init__(self, work: Path, src: Path) -> None:
        self.work, self.src = work, src
        self.wrapper = work / "chaos_wrapper.py"
        self.wrapper.write_text(WRAPPER)
        self.photos = work / "photos"
        self.cache = work / "cache"
        self.env = {
            **os.environ, "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1",
            "CNNLAB_CACHE_DIR": str(self.cache), "OMP_NUM_THREADS": "1",
        }  # fmt: skip
        for key in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "LOCAL_RANK", "RANK"):
            self.env.pop(key, None)
        self._reference: Path | None = None
        self._count = 0

    # -- processes ----------------------------------------------------------------------------

    def argv(self, *args: object) -> list[str]:
        return [sys.executable, str(self.wrapper), *map(str, args)]

    def cnnlab(self, *args: object, timeout: float = 300, **env: str) -> Outcome:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **env})  # fmt: skip
        return Outcome(proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: object, **env: str) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**self.env, **env}, start_new_session=True)  # fmt: skip

    # -- data and runs ------------------------------------------------------------------------

    def make_photos(self, root: Path, per_class: int = 12) -> Path:
        from tests.chaos.conftest import make_photos

        return make_photos(root, per_class=per_class)

    def fresh(self, label: str) -> Path:
        """An empty folder of its own for one case."""
        self._count += 1
        path = self.work / f"{self._count:03d}-{label}"
        path.mkdir()
        return path

    def train_args(self, runs: Path, name: str, epochs: int = EPOCHS, data: Path | None = None):
        return ["train", "--runs-dir", runs, "--name", name, "--data", data or self.photos,
                "--epochs", epochs, *TINY]  # fmt: skip

    @property
    def reference(self) -> Path:
        """A run never interrupted: what every killed-and-resumed run must equal."""
        if self._reference is None:
            runs = self.work / "reference"
            self.cnnlab(*self.train_args(runs, "ref")).expect(0)
            self._reference = runs / "ref"
        return self._reference

    def trained_copy(self, label: str) -> tuple[Path, Path]:
        """(case folder, a copy of the finished reference run inside it as runs/r)."""
        case = self.fresh(label)
        run = case / "runs" / "r"
        shutil.copytree(self.reference, run)
        return case, run


# ---------------------------------------------------------------------------------------------
# checks shared by the cases


def same_as_reference(lab: Lab, run: Path) -> None:
    if metrics_rows(run) != metrics_rows(lab.reference):
        raise Broken("metrics.csv differs from the uninterrupted run")
    a, b = exported_weights(lab.reference), exported_weights(run)
    if a.keys() != b.keys() or not all((a[k] == b[k]).all() for k in a):
        raise Broken("model.safetensors differs from the uninterrupted run")


def no_temporaries(run: Path) -> None:
    left = sorted(p.name for p in run.glob(".*.tmp-*"))
    if left:
        raise Broken(f"temporary files left behind: {left}")


def resumes_to_reference(lab: Lab, case: Path, run: Path) -> None:
    """Resumed, the run ends exactly as the uninterrupted one. Killed before its first
    checkpoint, there is nothing to resume: it says so, and --force trains it again."""
    with untouched_outside([case, lab.photos], run):
        if (run / "last.ckpt").exists() or (run / "last.prev.ckpt").exists():
            last_good_checkpoint(run)
            lab.cnnlab("train", "--resume", run).expect(0, alone=False)
        else:
            lab.cnnlab("train", "--resume", run).expect(EXIT_RUN, "nothing to resume")
            lab.cnnlab(*lab.train_args(run.parent, run.name), "--force").expect(0, alone=False)
    same_as_reference(lab, run)
    no_temporaries(run)


# ---------------------------------------------------------------------------------------------
# kill -9


def kill_at_write(target: str, n: int, phase: str) -> Callable[[Lab], str]:
    def case(lab: Lab) -> str:
        case_dir = lab.fresh("kill")
        run = case_dir / "runs" / "k"
        with untouched_outside([case_dir, lab.photos], run):
            out = lab.cnnlab(*lab.train_args(case_dir / "runs", "k"),
                             CHAOS_KILL_AT=f"{target}:{n}:{phase}")  # fmt: skip
        if out.code != -signal.SIGKILL:
            raise Broken(f"not killed (exit {out.code}): the write never happened")
        resumes_to_reference(lab, case_dir, run)
        return f"killed at write {n} of {target} ({phase})"

    return case


def kill_after(seconds_into: float, epochs_done: int, every_n_steps: int | None = None):
    def case(lab: Lab) -> str:
        from tests.procs import wait_for_epochs

        case_dir = lab.fresh("kill")
        run = case_dir / "runs" / "k"
        extra = ["--checkpoint-every-n-steps", every_n_steps] if every_n_steps else []
        with untouched_outside([case_dir, lab.photos], run):
            proc = lab.start(*lab.train_args(case_dir / "runs", "k"), *extra)
            wait_for_epochs(proc, run, epochs_done)
            time.sleep(seconds_into)
            proc.kill()
            proc.communicate()
        if status(run)["status"] == "finished":
            raise Broken("finished before the kill: nothing tested")
        resumes_to_reference(lab, case_dir, run)
        return f"kill -9 {seconds_into}s after epoch {epochs_done}"

    return case


# ---------------------------------------------------------------------------------------------
# signals


def signal_during(phase: str, sigs: tuple[signal.Signals, ...]) -> Callable[[Lab], str]:
    names = "+".join(s.name for s in sigs)

    def case(lab: Lab) -> str:
        case_dir = lab.fresh("signal")
        runs = case_dir / "runs"
        if phase == "evaluate":
            _, run = lab.trained_copy("signal-eval")
            case_dir = run.parents[1]
            args, env, marker = ["evaluate", run], {"CHAOS_SLOW": "evaluate"}, "evaluateing"
        elif phase == "scan":
            run = runs / "s"
            args, env, marker = lab.train_args(runs, "s"), {"CHAOS_SLOW": "scan"}, "scaning"
        else:
            run = runs / "s"
            args, env, marker = (
                [*lab.train_args(runs, "s", epochs=30), "--no-early-stopping"],
                {},
                None,
            )
        before = folder_state(run) if run.exists() else None
        with untouched_outside([case_dir, lab.photos], run):
            proc = lab.start(*args, **env)
            if marker:
                while (line := proc.stdout.readline()) and line.strip() != marker:
                    pass
            else:
                from tests.procs import wait_for_epochs

                wait_for_epochs(proc, run, 1)
            t0 = time.monotonic()
            for sig in sigs:
                proc.send_signal(sig)
                time.sleep(0.3)
            out, err = proc.communicate(timeout=120)
        if time.monotonic() - t0 > 60:
            raise Broken("took over a minute to stop")
        code = proc.returncode
        if len(sigs) == 2 and code == -signal.SIGINT:
            # a second Ctrl-C stops at once by the signal itself: the shell shows 130 too
            code = EXIT_INTERRUPTED
        Outcome(code, out, err).expect(EXIT_INTERRUPTED, alone=False)
        if left_in_group(proc.pid):
            raise Broken(f"processes left behind: {left_in_group(proc.pid)}")
        if phase == "scan" and run.exists():
            raise Broken(f"a set-up stopped by {names} left {run} (the name stays claimed)")
        if phase == "train":
            if status(run)["status"] != "interrupted":
                raise Broken(f"status {status(run)['status']}, not interrupted")
            lab.cnnlab("train", "--resume", run, "--epochs", "2").expect(0, alone=False)
        if phase == "evaluate" and folder_state(run) != before:
            raise Broken("an interrupted evaluate changed the run folder")
        return f"{names} during {phase}"

    return case


# ---------------------------------------------------------------------------------------------
# concurrent commands on one run


def two_trains_at_once(lab: Lab) -> str:
    case_dir = lab.fresh("race")
    runs = case_dir / "runs"
    args = lab.train_args(runs, "same")
    with untouched_outside([case_dir, lab.photos], runs / "same"):
        procs = [lab.start(*args), lab.start(*args)]
        outs = [Outcome(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(o.code for o in outs)
    if codes != [0, EXIT_RUN]:
        raise Broken(f"exit codes {codes}: wanted one run and one refusal")
    loser = next(o for o in outs if o.code == EXIT_RUN)
    loser.expect(EXIT_RUN, "in use by process", alone=False)
    last_good_checkpoint(runs / "same")
    return "two `train --name same` started together"


def while_training(command: str) -> Callable[[Lab], str]:
    def case(lab: Lab) -> str:
        from tests.procs import wait_for_epochs

        case_dir = lab.fresh("busy")
        runs = case_dir / "runs"
        run = runs / "busy"
        # tiny epochs take a fraction of a second: enough of them to outlast the other command
        proc = lab.start(*lab.train_args(runs, "busy", epochs=5000), "--no-early-stopping")
        try:
            wait_for_epochs(proc, run, 1)
            config = (run / "config.yaml").read_text()
            with untouched_outside([case_dir, lab.photos], run):
                if command == "force":
                    out = lab.cnnlab(*lab.train_args(runs, "busy", epochs=1), "--force")
                elif command == "resume":
                    out = lab.cnnlab("train", "--resume", run, "--epochs", "50")
                elif command == "evaluate":
                    out = lab.cnnlab("evaluate", run, "--json")
                else:
                    image = next((lab.photos / "ants").glob("*.png"))
                    out = lab.cnnlab("predict", run, image, "--json")
            if command in ("force", "resume"):
                out.expect(EXIT_RUN, "is in use by process")
                if (run / "config.yaml").read_text() != config:
                    raise Broken("the refused command changed config.yaml")
            else:
                out.expect(0, alone=False)
                json.loads(out.out)  # stdout stays JSON, the note goes to stderr
                if "still training" not in out.err:
                    raise Broken("no note that the run is still training")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=120)
        if proc.returncode != EXIT_INTERRUPTED:
            raise Broken(f"the training process ended with {proc.returncode}")
        last_good_checkpoint(run)
        return f"`{command}` while the run trains"

    return case


# ---------------------------------------------------------------------------------------------
# damaged run-folder files


def damage(path: Path, how: str) -> None:
    if how == "delete":
        path.unlink()
        return
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garble":
        rng = random.Random(0)
        path.write_bytes(bytes(rng.randrange(256) for _ in range(max(1, len(data)))))
    elif how == "cut-line":  # a text file cut at a line boundary: valid, but shorter
        lines = data.splitlines(keepends=True)
        path.write_bytes(b"".join(lines[: max(1, len(lines) // 2)]))


def damaged_file(name: str, how: str, command: str) -> Callable[[Lab], str]:
    def case(lab: Lab) -> str:
        case_dir, run = lab.trained_copy("damaged")
        damage(run / name, how)
        if command == "evaluate":
            args = ["evaluate", run]
        elif command == "predict":
            args = ["predict", run, next((lab.photos / "bees").glob("*.png"))]
        else:
            args = ["train", "--resume", run, "--epochs", EPOCHS + 1]
        with untouched_outside([case_dir, lab.photos], run):
            out = lab.cnnlab(*args)
        if out.code == 0:
            if command == "resume" and epochs_in(last_good_checkpoint(run)) != EPOCHS + 1:
                raise Broken("resumed, but the checkpoint is not at the new epoch")
            return f"{how} {name}: {command} recovered"
        out.expect(EXIT_RUN, alone=False)
        if name not in out.message:
            raise Broken(f"exit 5 without naming {name}: {out.message}")
        return f"{how} {name}: {command} exit 5 naming it"

    return case


# ---------------------------------------------------------------------------------------------
# hostile names and paths


def hostile_name(name: str, code: int) -> Callable[[Lab], str]:
    def case(lab: Lab) -> str:
        case_dir = lab.fresh("name")
        runs = case_dir / "runs"
        runs.mkdir()
        victim = case_dir / "victim"
        victim.mkdir()
        (victim / "run.json").write_text('{"status": "finished"}')
        with untouched_outside([case_dir, lab.photos], runs / name if code == 0 else runs):
            out = lab.cnnlab(*lab.train_args(runs, name, epochs=1), "--force")
        out.expect(code, alone=code != 0)
        if code == 0:
            made = [p for p in runs.iterdir()]
            if [p.name for p in made] != [name]:
                raise Broken(f"run folder(s) {made} for name {name!r}")
            last_good_checkpoint(runs / name)
        elif any(runs.iterdir()):
            raise Broken(f"refused, yet left {sorted(p.name for p in runs.iterdir())}")
        elif name.startswith("/") and Path(name).exists():
            shutil.rmtree(name, ignore_errors=True)
            raise Broken(f"created {name}")
        return f"--name {name!r}: exit {out.code}"

    return case


def hostile_data_path(lab: Lab) -> str:
    """A data folder and class names with spaces, quotes, a newline and non-ASCII letters."""
    case_dir = lab.fresh("paths")
    data = case_dir / "my photos 'été'\nnew line"
    from tests.chaos.conftest import make_photos

    make_photos(data, per_class=6, classes=("fourmis 🐜", "abeilles\tx"))
    runs = case_dir / "runs dir"
    with untouched_outside([case_dir, lab.photos], runs / "r"):
        lab.cnnlab(*lab.train_args(runs, "r", epochs=1, data=data)).expect(0, alone=False)
    classes = json.loads((runs / "r" / "classes.json").read_text())
    if classes != ["abeilles\tx", "fourmis 🐜"]:
        raise Broken(f"classes {classes}")
    lab.cnnlab("evaluate", runs / "r").expect(0, alone=False)
    return "data path with spaces, quotes, a newline and emoji"


# ---------------------------------------------------------------------------------------------
# crafted checkpoints and safetensors (the payloads of tests/models/test_weights_io.py)


def malicious_checkpoint(payload: str, force_unsafe: bool) -> Callable[[Lab], str]:
    def case(lab: Lab) -> str:
        import torch
        from tests.models import test_weights_io as crafted

        case_dir, run = lab.trained_copy("pickle")
        marker = case_dir / "PWNED"
        cls = crafted._PythonPayload if payload == "python" else crafted._ShellPayload
        state = load_checkpoint(run / "last.ckpt")
        torch.save({**state, "x": cls(marker)}, run / "last.ckpt")
        env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if force_unsafe else {}
        with untouched_outside([lab.photos], run):
            out = lab.cnnlab("train", "--resume", run, "--epochs", EPOCHS + 1, **env)
        if marker.exists():
            raise Broken("the payload ran")
        out.expect(EXIT_RUN, "last.ckpt", alone=False)
        return f"{payload} payload in last.ckpt{' (unsafe env)' if force_unsafe else ''}"

    return case


def crafted_safetensors(kind: str) -> Callable[[Lab], str]:
    def case(lab: Lab) -> str:
        import struct

        from tests.models import test_weights_io as crafted

        case_dir, run = lab.trained_copy("st")
        path = run / "model.safetensors"
        if kind == "huge-header":
            path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
        elif kind == "many-tensors":
            entries = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                       for i in range(30_000)}  # fmt: skip
            crafted._raw_safetensors(path, entries)
        elif kind == "huge-shape":
            entry = {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 8]}
            crafted._raw_safetensors(path, {"head.1.weight": entry}, b"x" * 8)
        else:
            entry = {"dtype": "OBJECT", "shape": [1], "data_offsets": [0, 8]}
            crafted._raw_safetensors(path, {"w": entry}, b"x" * 8)
        with untouched_outside([case_dir, lab.photos], run):
            out = lab.cnnlab("evaluate", run)
        out.expect(EXIT_RUN, "model.safetensors")
        return f"crafted model.safetensors: {kind}"

    return case


def crafted_weights_option(lab: Lab) -> str:
    from tests.models import test_weights_io as crafted

    case_dir = lab.fresh("weights")
    marker = case_dir / "PWNED"
    import torch

    evil = case_dir / "evil.pth"
    torch.save({"state_dict": {}, "x": crafted._ShellPayload(marker)}, evil)
    runs = case_dir / "runs"
    with untouched_outside([case_dir, lab.photos], runs):
        out = lab.cnnlab(*lab.train_args(runs, "w", epochs=1), "--weights", evil)
    if marker.exists():
        raise Broken("the payload ran")
    out.expect(EXIT_RUN, "evil.pth", alone=False)
    if (runs / "w").exists():
        raise Broken("a set-up refused for its weights file left the run folder")
    return "--weights with a pickle payload"


# ---------------------------------------------------------------------------------------------
# bad images (tests/data/imagetree.py)


def bad_images(policy: str) -> Callable[[Lab], str]:
    def case(lab: Lab) -> str:
        from tests.data.imagetree import BAD_FILES, add_bad_files

        case_dir = lab.fresh("bad")
        data = case_dir / "data"
        from tests.chaos.conftest import make_photos

        make_photos(data, per_class=6, classes=("cat", "dog"))
        add_bad_files(data)
        runs = case_dir / "runs"
        args = [*lab.train_args(runs, "b", epochs=1, data=data), "--on-bad-image", policy]
        with untouched_outside([case_dir], runs / "b"):
            out = lab.cnnlab(*args)
        if policy == "fail":
            out.expect(EXIT_DATA, "unusable image files", alone=False)
            return "every kind of bad image, --on-bad-image fail"
        out.expect(0, alone=False)
        import csv

        with open(runs / "b" / "skipped.csv") as fh:
            got = {str(Path(r["path"]).relative_to(data)): r["reason"] for r in csv.DictReader(fh)}
        wrong = {k: (v, got.get(k)) for k, v in BAD_FILES.items() if got.get(k) != v}
        # `cat/sub/up -> ..` leads back into the data: either reason keeps it out
        wrong.pop("cat/sub/up", None) if got.get("cat/sub/up") == "symlink_into_data" else None
        if wrong:
            raise Broken(f"skipped.csv reasons differ: {wrong}")
        return f"{len(BAD_FILES)} kinds of bad files skipped and listed"

    return case


def predict_bad_image(kind: str) -> Callable[[Lab], str]:
    def case(lab: Lab) -> str:
        from tests.data.imagetree import add_bad_files

        case_dir, run = lab.trained_copy("predict-bad")
        bad = case_dir / "bad"
        add_bad_files(bad)
        with untouched_outside([case_dir, lab.photos], run):
            out = lab.cnnlab("predict", run, bad / kind)
        out.expect(EXIT_DATA, kind.split("/")[-1])
        return f"predict on {kind}"

    return case


# ---------------------------------------------------------------------------------------------
# a full disk


def tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0  # fmt: skip


def disk_full_tmpfs(lab: Lab) -> str:
    """A real small filesystem: room for epoch 1's files, not for epoch 2's."""
    case_dir = lab.fresh("tmpfs")
    runs = case_dir / "runs"
    if not tmpfs(runs, "2m"):  # the 36k-parameter smallcnn fills 3 MB only after its 3 epochs
        return disk_full_patched(lab)
    try:
        run = runs / "full"
        with untouched_outside([case_dir, lab.photos], run):
            out = lab.cnnlab(*lab.train_args(runs, "full"))
        out.expect(EXIT_DISK_FULL, str(run), alone=False)
        if status(run).get("error") != "disk full":
            raise Broken(f"run.json: {status(run)}")
        done = epochs_in(last_good_checkpoint(run))
        subprocess.run(["mount", "-o", "remount,size=64m", str(runs)], check=True)
        lab.cnnlab("train", "--resume", run).expect(0, alone=False)
        if epochs_in(last_good_checkpoint(run)) != EPOCHS:
            raise Broken("the resumed run did not finish")
        same_as_reference(lab, run)
        return f"3 MB tmpfs: stopped after epoch {done}, resumed to the same weights"
    finally:
        subprocess.run(["umount", str(runs)], capture_output=True)


def disk_full_patched(lab: Lab, target: str = "last.ckpt", n: int = 2) -> str:
    case_dir = lab.fresh("enospc")
    runs = case_dir / "runs"
    run = runs / "full"
    with untouched_outside([case_dir, lab.photos], run):
        out = lab.cnnlab(*lab.train_args(runs, "full"), CHAOS_ENOSPC=f"{target}:{n}")
    out.expect(EXIT_DISK_FULL, str(run), alone=False)
    if not (run / "run.json").exists():  # full during set-up: nothing trained, the name freed
        if run.exists() and any(p.name != ".lock" for p in run.iterdir()):
            raise Broken(f"a failed set-up left {sorted(p.name for p in run.iterdir())}")
        lab.cnnlab(*lab.train_args(runs, "full")).expect(0, alone=False)
        same_as_reference(lab, run)
        return f"ENOSPC at write {n} of {target} (set-up): nothing left behind, the name free"
    if status(run).get("error") != "disk full":
        raise Broken(f"run.json: {status(run)}")
    if not any((run / c).exists() for c in ("last.ckpt", "last.prev.ckpt")):
        # the disk filled before the run's first checkpoint: nothing to keep, and a resume
        # must say so (never a silent fresh start); --force then retrains
        lab.cnnlab("train", "--resume", run).expect(EXIT_RUN, "nothing to resume")
        lab.cnnlab(*lab.train_args(runs, "full"), "--force").expect(0, alone=False)
        same_as_reference(lab, run)
        return f"ENOSPC at write {n} of {target} (before any checkpoint): resume refused, --force"
    last_good_checkpoint(run)
    lab.cnnlab("train", "--resume", run).expect(0, alone=False)
    same_as_reference(lab, run)
    return f"ENOSPC at write {n} of {target}"


def disk_full_at(target: str, n: int) -> Callable[[Lab], str]:
    return lambda lab: disk_full_patched(lab, target, n)


# ---------------------------------------------------------------------------------------------
# the issue's own list: each must be refused early or handled


def usage_case(args: list[str], code: int, fragment: str) -> Callable[[Lab], str]:
    def case(lab: Lab) -> str:
        case_dir = lab.fresh("usage")
        runs = case_dir / "runs"
        argv = [a.replace("{tmp}", str(case_dir)) for a in map(str, args)]
        with untouched_outside([case_dir, lab.photos]):
            out = lab.cnnlab("train", "--runs-dir", runs, *argv, timeout=120)
        out.expect(code, fragment.replace("{tmp}", str(case_dir)))
        return " ".join(args)

    return case


def resume_fewer_epochs(lab: Lab) -> str:
    case_dir, run = lab.trained_copy("fewer")
    before = folder_state(run)
    with untouched_outside([case_dir, lab.photos], run):
        lab.cnnlab("train", "--resume", run, "--epochs", 1).expect(EXIT_RUN, "has trained")
    if folder_state(run) != before:
        raise Broken("a refused resume changed the run")
    return "--resume --epochs below the epochs done"


def resume_other_model(lab: Lab) -> str:
    case_dir, run = lab.trained_copy("other-model")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("name: smallcnn", "name: resnet18"))
    before = folder_state(run)
    with untouched_outside([case_dir, lab.photos], run):
        lab.cnnlab("train", "--resume", run).expect(EXIT_RUN, "config.yaml")
    if folder_state(run) != before or status(run)["status"] != "finished":
        raise Broken("a refused resume changed the run")
    return "config.yaml edited to another model, then --resume"


def vanished_file(lab: Lab) -> str:
    """A training file deleted by another process while the run trains (cache off)."""
    import csv

    from tests.procs import wait_for_epochs

    case_dir = lab.fresh("vanish")
    data = lab.make_photos(case_dir / "data")
    runs = case_dir / "runs"
    run = runs / "v"
    proc = lab.start(*lab.train_args(runs, "v", epochs=40, data=data), "--no-early-stopping")
    wait_for_epochs(proc, run, 1)
    with open(run / "split_manifest.csv") as fh:
        gone = next(r["path"] for r in csv.DictReader(fh) if r["split"] == "train")
    (data / gone).unlink()
    out, err = proc.communicate(timeout=120)
    outcome = Outcome(proc.returncode, out, err)
    command = f"cnnlab train --resume {run} --allow-changed-data"
    outcome.expect(EXIT_DATA, f"`{command}`", alone=False)
    import shlex

    lab.cnnlab(*shlex.split(command)[1:], "--epochs", 3).expect(0, alone=False)
    with open(run / "skipped.csv") as fh:
        reasons = {r["path"]: r["reason"] for r in csv.DictReader(fh)}
    if reasons.get(str(data / gone)) != "missing":
        raise Broken(f"skipped.csv: {reasons}")
    return "a training image deleted mid-run, then the printed command"


def rendezvous_timeout(lab: Lab) -> str:
    """--num-nodes 2 under a launcher's environment, the other node never comes."""
    case_dir = lab.fresh("ddp")
    runs = case_dir / "runs"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"TORCHELASTIC_RUN_ID": "chaos", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "0", "GROUP_RANK": "0",
           "LOCAL_WORLD_SIZE": "1", "CNNLAB_DDP_TIMEOUT": "5"}  # fmt: skip
    t0 = time.monotonic()
    out = lab.cnnlab(*lab.train_args(runs, "d", epochs=1), "--num-nodes", 2, timeout=180, **env)
    if time.monotonic() - t0 > 120:
        raise Broken("no timeout")
    out.expect(EXIT_USAGE, "did not all join", alone=False)
    return "a node that never joins (5 s timeout)"


# ---------------------------------------------------------------------------------------------


def cases() -> dict[str, list[tuple[str, Callable[[Lab], str]]]]:
    kill = [(f"kill9 {t} {n} {p}", kill_at_write(t, n, p))
            for t, n in (("last.ckpt", 1), ("last.ckpt", 2), ("best.ckpt", 1),
                         ("model.safetensors", 1), ("metrics.csv", 2), ("run.json", 3))
            for p in ("write", "rename")]  # fmt: skip
    kill += [("kill9 after epoch 1", kill_after(0.0, 1)),
             ("kill9 mid epoch 2", kill_after(0.2, 1)),
             ("kill9 mid epoch, step checkpoints", kill_after(0.3, 1, every_n_steps=1))]  # fmt: skip
    sig = [(f"{s} {p}", signal_during(p, s))
           for p in ("scan", "train", "evaluate")
           for s in ((signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT))]  # fmt: skip
    busy = [("two trains", two_trains_at_once)]
    busy += [(f"{c} while training", while_training(c))
             for c in ("force", "resume", "evaluate", "predict")]  # fmt: skip
    files = ["run.json", "config.yaml", "classes.json", "split_manifest.csv", "class_counts.json",
             "model.json", "model.safetensors", "metrics.csv", "last.ckpt", "best.ckpt",
             "skipped.csv", "environment.json", "signals.jsonl", "summary.md", "test.json"]  # fmt: skip
    damaged = [(f"{how} {name} / {cmd}", damaged_file(name, how, cmd))
               for name in files for how in ("truncate", "garble", "empty", "delete")
               for cmd in ("evaluate", "resume")]  # fmt: skip
    damaged += [(f"cut-line {name} / {cmd}", damaged_file(name, "cut-line", cmd))
                for name in ("split_manifest.csv", "config.yaml", "metrics.csv")
                for cmd in ("evaluate", "resume")]  # fmt: skip
    names = [(f"name {n!r}", hostile_name(n, EXIT_USAGE))
             for n in ("../victim", "/tmp/chaos-abs", "a/b", ".", "..", ".hidden", "a\\b",
                       "x" * 300, "")]  # fmt: skip
    names += [(f"name {n!r}", hostile_name(n, 0)) for n in ("été 🐜", "with space", "UP.case_1")]
    names += [("data path", hostile_data_path)]
    crafted = [(f"pickle {p} {f}", malicious_checkpoint(p, f))
               for p in ("python", "shell") for f in (False, True)]  # fmt: skip
    crafted += [(f"safetensors {k}", crafted_safetensors(k))
                for k in ("huge-header", "many-tensors", "huge-shape", "odd-dtype")]  # fmt: skip
    crafted += [("--weights payload", crafted_weights_option)]
    images = [(f"bad images {p}", bad_images(p)) for p in ("skip", "fail")]
    images += [(f"predict {k}", predict_bad_image(k))
               for k in ("cat/truncated.jpg", "cat/bomb.png", "cat/text.jpg", "cat/zero.png",
                         "cat/fifo.jpg", "cat/photo.heic")]  # fmt: skip
    disk = [("tmpfs", disk_full_tmpfs)]
    disk += [(f"ENOSPC {t} {n}", disk_full_at(t, n))
             for t, n in (("last.ckpt", 2), ("best.ckpt", 1), ("model.safetensors", 1),
                          ("metrics.csv", 2), ("config.yaml", 1))]  # fmt: skip
    issue = [(" ".join(a), usage_case(a, c, f)) for a, c, f in (
        (["--name", "../x"], EXIT_USAGE, "not a plain folder name"),
        (["--num-nodes", "2"], EXIT_USAGE, "needs a launcher"),
        (["--devices", "3", "--batch-size", "128"], EXIT_USAGE, "does not split"),
        (["--image-size", "100000"], EXIT_USAGE, "too large"),
        (["--config", "{tmp}"], EXIT_USAGE, "is a folder"),
        (["--lr", "inf"], EXIT_USAGE, "learning rate"),
        (["--data-dir", "{tmp}/none"], EXIT_DATA, "is not a folder"),
        (["--resume", "{tmp}/r", "--name", "y"], EXIT_USAGE, "drop --config, --name"),
        (["--resume", "{tmp}/r", "--config", "{tmp}/none.yaml"], EXIT_USAGE, "drop --config"),
        (["--model", "smallcnn", "--pretrained"], EXIT_USAGE, "no pretrained weights"),
    )]  # fmt: skip
    issue += [("resume fewer epochs", resume_fewer_epochs), ("resume other model",
              resume_other_model), ("vanished file", vanished_file),
              ("rendezvous timeout", rendezvous_timeout)]  # fmt: skip
    return {"kill": kill, "signals": sig, "concurrent": busy, "damaged": damaged,
            "names": names, "crafted": crafted, "images": images, "disk": disk,
            "issue": issue}  # fmt: skip


def run_cases(lab: Lab, only: list[str], match: str | None) -> list[Result]:
    results = []
    for category, items in cases().items():
        if only and category not in only:
            continue
        for name, case in items:
            if match and match not in name:
                continue
            t0 = time.monotonic()
            try:
                detail, held = case(lab), True
            except Exception as e:  # a broken promise, or a crash of the case itself
                held = False
                detail = f"{type(e).__name__}: {str(e)[:300]}"
                if not isinstance(e, AssertionError | subprocess.TimeoutExpired):
                    detail += " | " + traceback.format_exc().splitlines()[-3][:200]
            results.append(Result(category, name, held, detail, round(time.monotonic() - t0, 1)))
            mark = "held " if held else "BROKE"
            print(f"{mark} {category:10s} {name:45s} {results[-1].seconds:6.1f}s  {detail}",
                  flush=True)  # fmt: skip
    return results


def table(results: list[dict], baseline: list[dict] | None) -> str:
    old = {(r["category"], r["case"]): r["held"] for r in baseline or []}
    rows = ["| category | attempts | held | fixed in this issue |", "|---|---:|---:|---:|"]
    totals = [0, 0, 0]
    for category in dict.fromkeys(r["category"] for r in results):
        mine = [r for r in results if r["category"] == category]
        held = sum(r["held"] for r in mine)
        fixed = sum(r["held"] and old.get((category, r["case"])) is False for r in mine)
        rows.append(f"| {category} | {len(mine)} | {held} | {fixed if baseline else '-'} |")
        totals = [totals[0] + len(mine), totals[1] + held, totals[2] + fixed]
    rows.append(f"| **all** | {totals[0]} | {totals[1]} | {totals[2] if baseline else '-'} |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=[], help="categories (default: all)")
    p.add_argument("--match", help="only cases whose name contains this")
    p.add_argument("--src", default=str(REPO / "src"), help="the cnnlab source to attack")
    p.add_argument("--out", help="append the results to this JSON file")
    p.add_argument("--table", nargs="*", help="print the table of these result files and exit")
    p.add_argument("--baseline", nargs="*", help="result files of the version before the fixes")
    args = p.parse_args()
    load = lambda files: [r for f in files or [] for r in json.loads(Path(f).read_text())]  # noqa: E731
    if args.table is not None:
        print(table(load(args.table), load(args.baseline) if args.baseline else None))
        return 0
    with tempfile.TemporaryDirectory(prefix="cnnlab-chaos-") as tmp:
        lab = Lab(Path(tmp), Path(args.src).resolve())
        lab.make_photos(lab.photos)
        results = run_cases(lab, args.only, args.match)
    records = [r.__dict__ for r in results]
    if args.out:
        out = Path(args.out)
        previous = json.loads(out.read_text()) if out.exists() else []
        keys = {(r["category"], r["case"]) for r in records}
        kept = [r for r in previous if (r["category"], r["case"]) not in keys]
        out.write_text(json.dumps(kept + records, indent=1))
    print()
    print(table(records, load(args.baseline) if args.baseline else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
