"""What the doctor reasons over: the files of a run folder (`cnnlab.run_files.RunFolder`, the
reader the report uses too), and the probes' measurements. No torch here: the rules stay pure
functions of these two objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import RunError
from cnnlab.run_files import RunFolder, read_run_folder

__all__ = ["ProbeResults", "RunFolder", "read_run"]


@dataclass
class ProbeResults:
    """Measurements on the model and data (probes.py); a field is None when not measured."""

    init_loss: float | None = None  # fresh model, same config, one training batch
    prior_bias_loss: float | None = None  # the same with the head bias set to log(prior)
    act_std: dict[str, float] | None = None  # output std per conv/linear layer at init
    init_grad_ratio: float | None = None  # first / last weight layer gradient norm at init
    overfit: dict[str, Any] | None = None  # one-batch fit at the configured optimizer
    update_ratio: dict[str, Any] | None = None  # |step| / |w| per layer, one step at peak lr
    input_stats: dict[str, list[float]] | None = None  # per-channel mean/std after preprocess
    bn_gap: dict[str, Any] | None = None  # saved model: running vs batch statistics
    dead_relu: dict[str, Any] | None = None  # saved model: dead channel fraction per layer
    val: dict[str, Any] | None = None  # saved model on val: accuracy, recall per class
    train_eval: dict[str, Any] | None = None  # saved model on train images, no augmentation
    duplicates: dict[str, Any] | None = None  # exact pixel copies of train images per split
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def read_run(run_dir: str | Path) -> RunFolder:
    """The run folder through cnnlab's one reader (`cnnlab.run_files`); only a folder without
    a readable run.json is refused. Other damaged files are skipped and named in `problems`."""
    run = read_run_folder(run_dir)
    if not run.status:
        damaged = [p for p in run.problems if p.startswith("run.json")]
        raise RunError(
            f"{run.path / damaged[0]}; the run folder is damaged: restore run.json"
            if damaged
            else f"{run.path} is not a cnnlab run folder (no run.json); pass a run folder"
        )
    return run
