"""A run from its plan to its report: prepare (data, model), fit, record how it ended, evaluate.

    plan = make_plan(cfg, run_dir)                     # cnnlab.plan: every cheap check
    with runs.owned(run_dir):                          # one process per run folder
        result = start_run(plan, log=print)            # or continue_run(plan) for --resume

Run states live in run.json as a `RunStatus`: preparing -> running -> finished | diverged |
failed | interrupted. A set-up that fails (bad data, missing weights, Ctrl-C during the scan)
removes what it wrote, so the name stays free; a resume validates everything before it changes
any file of the run.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab import config as C
from cnnlab import runs
from cnnlab.errors import (
    DataChangedError,
    DataError,
    DiskFullError,
    DivergedError,
    InterruptedRun,
    RunError,
    message_of,
)
from cnnlab.fsio import write_json, write_text
from cnnlab.runs import RunStatus

if TYPE_CHECKING:
    from cnnlab.plan import RunPlan

Log = Callable[[str], None]
SETUP_FILES = ("run.json", "config.yaml", "classes.json", "environment.json", runs.LOCK)


@dataclass
class RunResult:
    """What a run left: its folder, how it ended, its test report, and (from `cnnlab.fit`)
    the trained model."""

    run_dir: Path
    status: RunStatus
    record: dict[str, Any]  # run.json
    test: dict[str, Any] | None
    model: Any = None

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def history(self) -> Any:
        """metrics.csv: a pandas DataFrame when pandas is installed, else a list of rows."""
        rows = runs.read_history(self.run_dir)
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows).set_index("epoch") if rows else pd.DataFrame()


@dataclass
class Prepared:
    """The data and the model a plan asked for; `build` holds the registry arguments that
    rebuild the model (model.json), None for a user's own module."""

    bundle: Any  # cnnlab.data.bundle.DataBundle
    model: Any  # cnnlab.models.base.CnnClassifier
    build: dict[str, Any] | None


def prepare(plan: RunPlan, log: Log) -> Prepared:
    """Determinism, device line, data, model: everything before fit."""
    from cnnlab.data.build import build_data
    from cnnlab.engine.seeding import configure_determinism, seed_all
    from cnnlab.models import create_model

    cfg = plan.config
    configure_determinism(cfg.train.deterministic, cfg.train.threads)
    seed_all(cfg.train.seed)
    for line in plan.recipe:
        log(line)
    for note in plan.notes:
        log(f"warning: {note}")
    log(f"device: {plan.device.accelerator} ({plan.device.reason})")
    bundle = build_data(cfg, plan.inputs, manifest=plan.manifest, log=log)
    for line in bundle.summary:
        log(line)
    model = create_model(
        cfg.model.name, num_classes=len(bundle.classes), pretrained=cfg.model.pretrained,
        in_chans=plan.inputs.in_chans, input_size=plan.inputs.image_size,
        dropout=cfg.model.dropout, init=cfg.model.init, weights_file=cfg.model.weights,
    )  # fmt: skip
    model.preprocess = bundle.preprocess
    build = {
        "name": cfg.model.name, "num_classes": len(bundle.classes),
        "in_chans": plan.inputs.in_chans, "input_size": plan.inputs.image_size,
        "dropout": model.head[0].p,
    }  # fmt: skip
    return Prepared(bundle, model, build)


# ---------------------------------------------------------------------------------------------
# start and continue


def start_run(
    plan: RunPlan,
    *,
    log: Log = print,
    callbacks: Sequence[Any] = (),
    prepare_fn: Callable[[RunPlan, Log], Prepared] = prepare,
) -> RunResult:
    """A new run in an empty (or --force cleared) folder that this process owns."""
    run_dir = plan.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    try:  # the first writes too: a full disk here leaves no half-made run behind
        runs.write_status(run_dir, RunStatus.PREPARING, name=plan.name, started=runs.now())
        write_text(run_dir / "config.yaml", C.to_yaml(plan.config))
        with sigterm_interrupts():
            prepared = prepare_fn(plan, log)
            require_validation(prepared.bundle)
            audited = audit_data(plan, prepared, log)
            if plan.config.optim.lr == "auto":  # the lr finder on this model and data
                from cnnlab.lr_search import choose_lr

                choose_lr(plan, prepared, log=log)  # sets optim.lr, rewrites config.yaml
    except BaseException as e:
        release_name(run_dir)  # a set-up that failed trained nothing: the name stays free
        if isinstance(e, KeyboardInterrupt | InterruptedRun):
            raise InterruptedRun(
                f"interrupted during set-up of run '{plan.name}'; nothing was trained or kept"
            ) from None
        raise
    write_json(run_dir / "classes.json", prepared.bundle.classes)
    write_json(
        run_dir / "environment.json",
        runs.environment(plan.device.accelerator, plan.device.reason),
    )
    prepared.bundle.write_artifacts(run_dir)
    if audited is not None:
        audited.write(run_dir)
    log(f"run folder: {run_dir}")

    def running() -> None:  # once every process of the run has joined: training starts
        runs.write_status(
            run_dir, RunStatus.RUNNING, device=plan.device.accelerator,
            device_reason=plan.device.reason, build=prepared.build,
            params=sum(p.numel() for p in prepared.model.parameters()),
            variant=getattr(prepared.model, "variant", ""), data=prepared.bundle.source,
        )  # fmt: skip

    return fit_and_report(plan, prepared, log=log, callbacks=callbacks, on_joined=running)


def continue_run(
    plan: RunPlan, *, log: Log = print, callbacks: Sequence[Any] = (), config_changed: bool
) -> RunResult:
    """Resume from plan.resume_from. Nothing of the run changes until the data and the model
    are known to match the checkpoint; a failure before that leaves the run as it was."""
    run_dir = plan.run_dir
    try:
        with sigterm_interrupts():
            prepared = prepare(plan, log)
    except DataChangedError as e:
        raise DataChangedError(f"{message_of(e)}: {_continue_command(run_dir)}") from None
    check_same_classes(run_dir, prepared.bundle.classes)
    check_checkpoint_fits(plan.resume_from, prepared.model)
    if config_changed:
        write_text(run_dir / "config.yaml", C.to_yaml(plan.config))
    # skipped.csv, the split and the counts describe the data the run goes on with (files
    # that vanished, resumed with --allow-changed-data, are listed as `missing`)
    prepared.bundle.write_artifacts(run_dir)
    removed = runs.remove_stale_temporaries(run_dir)
    if removed:
        log(f"removed {len(removed)} temporary files of a killed writer: {', '.join(removed)}")
    log(f"resuming {run_dir} from {plan.resume_from.name}")

    def running() -> None:  # the run's status changes only once training really goes on
        runs.write_status(run_dir, RunStatus.RUNNING, resumed_from=plan.resume_from.name,
                          device=plan.device.accelerator)  # fmt: skip

    return fit_and_report(plan, prepared, log=log, callbacks=callbacks, on_joined=running)


def require_validation(bundle: Any) -> None:
    """Every run is judged on validation images (the best checkpoint, early stopping, the
    doctor); without any, Lightning ran an epoch and then failed at the first `val_acc` lookup.
    (`cnnlab.fit` refuses the same earlier, in data/user.py, in its own options' words.)"""
    if bundle.val is None or len(bundle.val) == 0:
        raise DataError(
            "no validation images (an empty val split, or a validation fraction of 0): the best "
            "checkpoint, early stopping and the doctor are judged on them; use --set "
            "data.val_fraction=0.1, or put images in the val split"
        )


def audit_data(plan: RunPlan, prepared: Prepared, log: Log) -> Any:
    """The dataset audit `data.audit` asks for (fast, full, off), on the run's own files and
    splits, before training: a cnnlab.audit.run.RunAudit, or None when nothing was audited."""
    mode = plan.config.data.audit
    if mode == "off" or getattr(prepared.bundle, "folder", None) is None:
        return None  # Fashion-MNIST and a user's datasets: no files to audit
    if not runs.is_rank_zero():  # the other processes of a distributed run see the same data
        return None
    from cnnlab.audit.run import audit_for_run

    return audit_for_run(prepared.bundle, mode, log=log)


def release_name(run_dir: Path) -> None:
    """Remove what a failed set-up wrote; the folder goes too when nothing else is in it."""
    made = ("skipped.csv", "split_manifest.csv", "class_counts.json", "audit.json", "audit.png")
    for name in (*SETUP_FILES, *made):
        if name != runs.LOCK:
            (run_dir / name).unlink(missing_ok=True)
    leftovers = [p for p in run_dir.iterdir() if p.name != runs.LOCK]
    if not leftovers:
        (run_dir / runs.LOCK).unlink(missing_ok=True)
        run_dir.rmdir()


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM during set-up ends it like Ctrl-C (cleanly), not with the default kill."""

    def handler(signum: int, frame: Any) -> None:
        raise InterruptedRun("terminated")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_same_classes(run_dir: Path, classes: list[str]) -> None:
    saved = runs.read_classes(run_dir)
    if saved is not None and saved != classes:
        raise RunError(
            f"the data's classes {classes[:5]}… differ from the run's {saved[:5]}…; "
            f"use the data the run was trained on"
        )


def check_checkpoint_fits(ckpt: Path | None, model: Any) -> None:
    """The checkpoint must hold exactly this model's tensors (config.yaml edited by hand to
    another model, say, is caught here, before anything is written)."""
    if ckpt is None:
        return
    from cnnlab.engine.checkpoint import safe_load

    saved = safe_load(ckpt).get("state_dict", {})
    want = {f"model.{k}": tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in saved.items() if k.startswith("model.")}
    if want != have:
        diff = sorted(set(want) ^ set(have)) or [k for k in want if want[k] != have[k]]
        raise RunError(
            f"{ckpt} does not fit the model config.yaml describes (first difference: {diff[0]}); "
            f"config.yaml was changed after training: restore it, or train a new run"
        )


# ---------------------------------------------------------------------------------------------
# fit, and what the run's end writes


def fit_and_report(
    plan: RunPlan,
    prepared: Prepared,
    *,
    log: Log,
    callbacks: Sequence[Any] = (),
    on_joined: Callable[[], None] | None = None,
) -> RunResult:
    from cnnlab.engine.rendezvous import DistributedSetupError
    from cnnlab.engine.trainer import fit

    run_dir = plan.run_dir
    try:
        result = fit(
            plan, prepared.bundle, prepared.model, export_best=_exporter(plan, prepared),
            log=log, callbacks=callbacks, on_joined=on_joined,
            on_interrupt=lambda name: _abandon(plan, f"interrupted by {name}"),
        )  # fmt: skip
    except DistributedSetupError:
        _abandon(plan)
        raise
    except DivergedError as e:
        write_json(run_dir / "divergence.json", {"message": str(e), "time": runs.now()})
        runs.write_status(run_dir, RunStatus.DIVERGED, stop_reason=str(e))
        _plots(plan, runs.read_history(run_dir))
        run_doctor(run_dir, log)
        raise
    except DataChangedError as e:  # a file changed or vanished mid-run (maybe in a worker)
        message = (
            f"{message_of(e)}; the last checkpoint is kept: continue without such files with "
            f"{_continue_command(run_dir)}"
        )
        runs.write_status(run_dir, RunStatus.FAILED, error=message)
        raise DataChangedError(message) from None
    except (InterruptedRun, KeyboardInterrupt) as e:
        runs.write_status(run_dir, RunStatus.INTERRUPTED, stop_reason=str(e) or "interrupted")
        raise InterruptedRun(
            f"run '{plan.name}' interrupted; checkpoint saved: resume with "
            f"`cnnlab train --resume {run_dir}`"
        ) from None
    except BaseException as e:
        if runs.disk_full(e):
            _record_disk_full(run_dir)
            raise DiskFullError(
                f"no space left on the device of {run_dir} ({e.strerror}); the last good "
                f"checkpoint is intact: free space, then `cnnlab train --resume {run_dir}`"
            ) from None
        runs.write_status(run_dir, RunStatus.FAILED, error=f"{type(e).__name__}: {e}")
        raise
    history = result.history or runs.read_history(run_dir)
    best_epoch = result.best_epoch
    if best_epoch is None and history:
        best_epoch = max(history, key=lambda h: h["val_acc"])["epoch"]
    runs.write_status(
        run_dir, RunStatus.FINISHED, stop_reason=result.stop_reason, best_epoch=best_epoch,
        best_val_acc=max((h["val_acc"] for h in history), default=None),
        epochs_run=len(history),
        # the epochs' own times: kept in the checkpoint, so they add up over resumed sessions
        wall_time_s=round(sum(h.get("epoch_time_s", 0.0) for h in history), 1),
        train_tflop=history[-1].get("train_tflop") if history else None,
        finished=runs.now(),
    )  # fmt: skip
    log(f"stopped: {result.stop_reason}")
    _plots(plan, history)
    from cnnlab.evaluation.evaluate import evaluate_run

    own = None
    if prepared.build is None:  # a user's own module: it gets its best epoch's weights back
        from cnnlab.export import load_weights

        own = load_weights(prepared.model.backbone, run_dir)
    test = evaluate_run(run_dir, bundle=prepared.bundle, model=own, log=log)
    if plan.config.train.logger == "tensorboard" and runs.is_rank_zero():
        from cnnlab.engine.tensorboard import write_test_report

        write_test_report(run_dir, test, result.global_step)  # at the curves' last step
    run_doctor(run_dir, log)  # before the report, which shows its findings
    write_run_report(run_dir, log, bundle=prepared.bundle)
    record = runs.read_status(run_dir)
    return RunResult(run_dir, record["status"], record, test, prepared.model)


def write_run_report(run_dir: Path, log: Log, *, bundle: Any = None) -> None:
    """report.html at the end of a run; a problem with it is said, never fatal to the run."""
    from cnnlab.errors import CnnlabError
    from cnnlab.report import write_report

    try:
        path = write_report(run_dir, bundle=bundle)
    except (CnnlabError, OSError, RuntimeError, ValueError) as e:
        log(f"warning: report.html not written ({type(e).__name__}: {e}); "
            f"`cnnlab report {run_dir}` tries again")  # fmt: skip
        return
    log(f"report: {path} (and summary.md)")


def run_doctor(run_dir: Path, log: Log) -> None:
    """doctor.json, summary.md's doctor section and the top findings at the end of a run
    (finished, stopped early or diverged); a problem with it is said, never fatal to the run."""
    from cnnlab.doctor.run_end import doctor_at_run_end

    try:
        doctor_at_run_end(run_dir, log)
    except Exception as e:  # the run's own results are written: a doctor bug must not cost them
        log(f"note: the doctor did not run ({type(e).__name__}: {e}); `cnnlab doctor {run_dir}` "
            f"tries again")  # fmt: skip


def _abandon(plan: RunPlan, interrupted: str | None = None) -> None:
    """The processes of a distributed run never all joined: nothing was trained. A new run
    frees its name; a resumed one stays as it was (its status was not touched yet). With
    `interrupted` (Ctrl-C / SIGTERM during the wait) this runs in a helper thread just before
    the process exits, so it also gives the run folder's lock back and says what happened."""
    import sys

    if runs.is_rank_zero():
        if plan.resume_from is None:
            release_name(plan.run_dir)
        if interrupted:
            runs.release_lock(plan.run_dir)
    if interrupted:
        print(f"\n{interrupted} while waiting for the other processes of the distributed run; "
              f"nothing was trained", file=sys.stderr)  # fmt: skip


def _continue_command(run_dir: Path) -> str:
    return f"`cnnlab train --resume {run_dir} --allow-changed-data`"


def _exporter(plan: RunPlan, prepared: Prepared) -> Callable[[Any, int], None]:
    from cnnlab.export import export_model

    def export_best(module: Any, epoch: int) -> None:
        # a user's module is saved as itself, so that it loads back into a fresh instance
        net = module.model if prepared.build is not None else module.model.backbone
        export_model(
            net, plan.run_dir, classes=prepared.bundle.classes,
            preprocess=prepared.bundle.preprocess, build=prepared.build,
            extra={"epoch": epoch, "run": plan.name},
        )  # fmt: skip

    return export_best


def _record_disk_full(run_dir: Path) -> None:
    # a small file may still fit; the error message says it all the same
    with contextlib.suppress(OSError):
        runs.write_status(run_dir, RunStatus.FAILED, error="disk full")


def _plots(plan: RunPlan, history: list[dict[str, Any]]) -> None:
    from cnnlab.evaluation.plots import plot_curves

    if history:
        stepwise = plan.config.optim.schedule in ("plateau", "step")
        plot_curves(history, plan.run_dir / "curves.png", title=plan.name, mark_lr_drops=stepwise)
