"""Running: train every run not yet finished, in this process or as parallel subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab import config as C
from cnnlab import runs
from cnnlab.errors import CnnlabError, ConfigError, InterruptedRun
from cnnlab.experiment.plan import Experiment, RunSpec, load_experiment
from cnnlab.experiment.results import ExperimentResult, write_results
from cnnlab.fsio import write_text
from cnnlab.runs import RunStatus, try_read_status
from cnnlab.runtime import available_cpus

Log = Callable[[str], None]
# Keys that change speed, not results: a run trained with other values is still the same run.
NOT_COMPARED = ("name", "train.threads", "data.workers")
TERMINAL = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.DIVERGED)
# a stopped experiment marks its unfinished runs interrupted, but never these
OWN_ENDING = (RunStatus.FINISHED, RunStatus.DIVERGED)


def describe_plan(exp: Experiment, runs_dir: str | Path | None = None, *,
                  rerun_failed: bool = False) -> str:  # fmt: skip
    """What a run of this experiment would do, run by run (--dry-run)."""
    folder = exp.folder(runs_dir)
    configs = len({s.label for s in exp.runs})
    lines = [
        f"experiment '{exp.name}' from {exp.source}: {len(exp.runs)} runs "
        f"({configs} configurations x {len(exp.seeds)} seeds) in {folder}",
    ]
    width = max(len(s.name) for s in exp.runs)
    for spec in exp.runs:
        action = _action(spec, folder / spec.name, rerun_failed)
        if action.startswith("keep"):
            status = try_read_status(folder / spec.name)
            action += f": {status.get('error') or status.get('stop_reason') or '?'}"[:100]
        lines.append(f"  {spec.name:<{width}}  {action}")
    notes: dict[str, list[str]] = {}
    for spec in exp.runs:
        for note in C.lint(spec.config):
            notes.setdefault(note, []).append(spec.label)
    for note, labels in notes.items():
        lines.append(f"warning: {note} ({', '.join(dict.fromkeys(labels))})")
    return "\n".join(lines)


def run_experiment(
    path: str | Path,
    *,
    runs_dir: str | Path | None = None,
    parallel: int = 1,
    rerun_failed: bool = False,
    log: Log = print,
) -> ExperimentResult:
    """Train every run not yet finished, then write results.csv/.md/.png in the experiment
    folder. A run that fails is recorded and the others go on; Ctrl-C stops the experiment
    (re-running the same command continues it)."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {parallel}")
    exp = load_experiment(path)
    folder = exp.folder(runs_dir)
    todo = [(s, _action(s, folder / s.name, rerun_failed)) for s in exp.runs]
    todo = [(s, a) for s, a in todo if a in ("train", "retrain", "resume")]
    log(f"experiment '{exp.name}': {len(exp.runs)} runs, {len(todo)} to train, in {folder}")
    try:
        if parallel == 1:
            for i, (spec, action) in enumerate(todo, 1):
                log(f"=== run {i}/{len(todo)}: {spec.name} ({action}) ===")
                _run_inprocess(spec, folder, action, log)
        else:
            _run_parallel(todo, folder, parallel, log)
    except (KeyboardInterrupt, InterruptedRun):
        write_results(exp, folder)
        raise InterruptedRun(
            f"experiment '{exp.name}' interrupted; run the same `cnnlab experiment {exp.source}` "
            f"again to continue (finished runs are reused, interrupted ones resume from their "
            f"last checkpoint or start over)"
        ) from None
    result = write_results(exp, folder)
    log(result.markdown)
    log(f"results: {folder / 'results.md'}, results.csv, results.png")
    return result


def _action(spec: RunSpec, run_dir: Path, rerun_failed: bool) -> str:
    """train | reuse | resume | retrain | keep failed; a finished run whose config differs from
    the experiment's is an error, never silently reported under the new settings."""
    status = try_read_status(run_dir).get("status")
    if status is None:
        return "train"
    changed = _changed_keys(spec.config, run_dir)
    if changed and status is RunStatus.FINISHED:
        raise ConfigError(
            f"run {run_dir} was trained with other settings ({', '.join(changed[:4])}); delete "
            f"that folder to retrain it, or give the experiment a new name"
        )
    if status is RunStatus.FINISHED:
        return "reuse"
    if status.retrainable:
        return "retrain" if rerun_failed or changed else f"keep {status}"
    # interrupted, or killed while preparing/running: continue from its checkpoint if any
    has_ckpt = any((run_dir / n).exists() for n in ("last.ckpt", "last.prev.ckpt"))
    return "resume" if has_ckpt and not changed else "retrain"


def _changed_keys(cfg: C.Config, run_dir: Path) -> list[str]:
    try:
        saved = C.load_yaml(run_dir / "config.yaml")
    except ConfigError:
        return []  # a run that failed before writing its config has nothing to compare
    want, have = _flat_config(cfg), _flat_config(saved)
    return [f"{k}: {have.get(k)!r} -> {v!r}" for k, v in want.items() if have.get(k) != v]


def _flat_config(cfg: C.Config) -> dict[str, Any]:
    d = cfg.to_dict()
    flat = {f"{s}.{k}": v for s in C.SECTIONS for k, v in d[s].items()}
    return {k: v for k, v in flat.items() if k not in NOT_COMPARED}


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return text if isinstance(e, CnnlabError) else f"{type(e).__name__}: {text}".rstrip(": ")


def _record_failure(run_dir: Path, error: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    # divergence has its own status and reason
    if try_read_status(run_dir).get("status") is not RunStatus.DIVERGED:
        runs.write_status(run_dir, RunStatus.FAILED, error=error)


def _run_inprocess(spec: RunSpec, folder: Path, action: str, log: Log) -> None:
    from cnnlab import api

    run_dir = folder / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "a" if action == "resume" else "w", encoding="utf-8") as fh:

        def tee(line: str) -> None:
            log(line)
            fh.write(line + "\n")
            fh.flush()

        try:
            if action == "resume":
                api.train(resume=run_dir, log=tee)
            else:
                api.train(spec.config, name=spec.name, runs_dir=folder,
                          force=action == "retrain", log=tee)  # fmt: skip
        except (KeyboardInterrupt, InterruptedRun):
            # Ctrl-C is no failure of the run's own
            if try_read_status(run_dir).get("status") not in OWN_ENDING:
                runs.write_status(run_dir, RunStatus.INTERRUPTED)
            raise
        except Exception as e:  # one bad run must not end the experiment
            tee(f"run failed: {_one_line(e)}")
            _record_failure(run_dir, _one_line(e))


def _run_parallel(todo: list[tuple[RunSpec, str]], folder: Path, n: int, log: Log) -> None:
    """N `cnnlab train` subprocesses at a time, each with its share of the CPU threads."""
    threads = max(1, available_cpus() // n)
    pending, active = list(todo), {}
    try:
        while pending or active:
            while pending and len(active) < n:
                spec, action = pending.pop(0)
                active[_start(spec, folder, action, threads)] = spec
                log(f"started {spec.name} ({action}, {threads} threads): {folder / spec.name}")
            time.sleep(0.2)
            for proc, spec in list(active.items()):
                if proc.poll() is not None:
                    del active[proc]
                    log(f"{spec.name}: {_finish(proc, folder / spec.name)}")
    except KeyboardInterrupt:
        # children live in their own sessions: one SIGTERM each = one checkpoint-and-stop
        for proc in active:
            proc.terminate()
        for proc, spec in active.items():
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            # stopped by us, not failed: a re-run resumes or restarts it
            if try_read_status(folder / spec.name).get("status") not in OWN_ENDING:
                runs.write_status(folder / spec.name, RunStatus.INTERRUPTED)
        raise


def _start(spec: RunSpec, folder: Path, action: str, threads: int) -> subprocess.Popen:
    run_dir = folder / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "cnnlab", "train", "--threads", str(threads)]
    if action == "resume":
        cmd += ["--resume", str(run_dir)]
    else:
        planned = run_dir / "planned_config.yaml"  # the resolved config this run is asked for
        write_text(planned, C.to_yaml(spec.config))
        cmd += ["--config", str(planned), "--name", spec.name, "--runs-dir", str(folder)]
        cmd += ["--force"] if action == "retrain" else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # closing our handle right away is fine: the child holds its own copy of the descriptor
    with open(run_dir / "train.log", "a" if action == "resume" else "w", encoding="utf-8") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip


def _finish(proc: subprocess.Popen, run_dir: Path) -> str:
    status = try_read_status(run_dir).get("status")
    if proc.returncode == 0 or status in TERMINAL or status is RunStatus.INTERRUPTED:
        return str(status or "unknown")
    errors = [ln for ln in _tail(run_dir / "train.log") if ln.startswith("error:")]
    error = errors[-1][len("error:") :].strip() if errors else f"exit code {proc.returncode}"
    _record_failure(run_dir, error)
    return f"failed: {error}"


def _tail(path: Path, n: int = 50) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]
    except OSError:
        return []
