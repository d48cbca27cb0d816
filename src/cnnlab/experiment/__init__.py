"""Experiments: a grid of runs over any config keys, repeated over seeds, and one honest table.

    cnnlab experiment examples/hymenoptera_lite0.yaml --dry-run     # the plan, nothing trained
    cnnlab experiment examples/hymenoptera_lite0.yaml --parallel 2  # two trainings at a time

The file (relative data.path / data.data_dir / model.weights are resolved against its folder):

    name: lr-sweep                  # runs/lr-sweep/ holds the runs and results.{csv,md,png}
    base: {data: {subset: 2000}, train: {epochs: 5}}   # a config mapping, or a config YAML path
    grid: {optim.lr: [0.1, 0.01]}   # cartesian product over dotted keys
    runs:                           # each listed run is crossed with the grid
      - {model.name: smallcnn}
      - {label: vgg11-paper, model.name: vgg11, model.init: paper}   # label: its name
    seeds: [0, 1, 2]                # every configuration once per seed (default [0])

Run names come from the settings (`smallcnn-lr0.1-s0`, `vgg11-paper-lr0.01-s1`), so a re-run
finds its runs: finished ones are reused, interrupted ones resume, failed and diverged ones stay
in the table as such unless rerun_failed. The vgg11 runs' lr is in the grid, not in the label.
"""

from cnnlab.experiment.plan import Experiment, RunSpec, load_experiment, run_label
from cnnlab.experiment.results import (
    ExperimentResult,
    diagnose,
    mean_std,
    stop_kind,
    write_results,
)
from cnnlab.experiment.runner import describe_plan, run_experiment
from cnnlab.runtime import available_cpus

__all__ = [
    "Experiment", "ExperimentResult", "RunSpec", "load_experiment", "run_experiment",
    "write_results", "diagnose", "run_label", "mean_std", "available_cpus", "stop_kind",
    "describe_plan",
]  # fmt: skip
