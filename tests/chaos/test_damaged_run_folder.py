"""Damaged run-folder files: the command that reads one fails with exit 5 naming it, or
recovers; never an internal error, never a giant allocation."""

from __future__ import annotations

import json

import pytest

from tests.chaos.harness import EXIT_RUN, cli, folder_state, untouched_outside


def _edit_model_json(run, change):
    meta = json.loads((run / "model.json").read_text())
    change(meta)
    (run / "model.json").write_text(json.dumps(meta))


def _drop_classes(meta):
    del meta["classes"]


def _fewer_classes(meta):
    meta["classes"] = meta["classes"][:1]
    meta["architecture"]["num_classes"] = 1


def _gray(meta):  # one channel in both places: consistent, but not what the weights take
    meta["architecture"]["in_chans"] = 1
    meta["preprocess"]["input_size"][0] = 1
    meta["preprocess"]["mean"] = meta["preprocess"]["mean"][:1]
    meta["preprocess"]["std"] = meta["preprocess"]["std"][:1]


def _absurd_classes(meta):  # 512 TB of head weights if it were built
    meta["architecture"]["num_classes"] = 500_000_000_000


def _many_classes(meta):  # a class list that does not match the weights' head
    meta["classes"] = [f"c{i}" for i in range(100_000)]
    meta["architecture"]["num_classes"] = 100_000


def _absurd_size(meta):
    meta["preprocess"]["input_size"] = [3, 1_000_000, 1_000_000]
    meta["architecture"]["input_size"] = 1_000_000


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda run: (run / "model.json").write_text("{not json"), "not valid JSON"),
        (lambda run: _edit_model_json(run, _drop_classes), "'classes' must be a non-empty list"),
        (lambda run: _edit_model_json(run, _fewer_classes), "lists 1 classes but the weights"),
        (lambda run: _edit_model_json(run, _gray), "does not describe the weights"),
        (lambda run: _edit_model_json(run, _absurd_classes), "num_classes 500000000000"),
        (lambda run: _edit_model_json(run, _many_classes), "lists 100000 classes but the"),
        (lambda run: _edit_model_json(run, _absurd_size), "impossible"),
    ],
    ids=[
        "not-json",
        "no-classes",
        "fewer-classes",
        "channels",
        "absurd-classes",
        "many-classes",
        "absurd-size",
    ],  # fmt: skip
)
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_damaged_model_json_is_named_before_anything_is_built(
    capsys, run, photos, tmp_path, damage, fragment, command
):
    damage(run)
    before = folder_state(run)
    image = next((photos / "ants").glob("*.png"))
    argv = [command, run] + ([image] if command == "predict" else [])
    with untouched_outside([tmp_path, photos], run):
        outcome = cli(capsys, *argv)
    outcome.expect(EXIT_RUN, str(run / "model.json"), fragment)
    assert folder_state(run) == before


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# every file `evaluate` reads; the others (checkpoints, curves, logs) it does not open
READ_BY_EVALUATE = ["run.json", "config.yaml", "classes.json", "split_manifest.csv",
                    "model.json", "model.safetensors", "metrics.csv"]  # fmt: skip


@pytest.mark.parametrize("name", READ_BY_EVALUATE)
def test_evaluate_with_a_truncated_run_file_names_it_or_recovers(
    capsys, run, photos, tmp_path, name
):
    truncate(run / name)
    with untouched_outside([tmp_path, photos], run):
        outcome = cli(capsys, "evaluate", run)
    if outcome.code == 0:  # recovered: a history it cannot read is left out of the report
        assert name == "metrics.csv", outcome.out
        return
    outcome.expect(EXIT_RUN, name)


def test_evaluate_with_a_manifest_cut_at_a_line_boundary_names_it(capsys, run, photos, tmp_path):
    """A manifest cut between two rows still parses: evaluate ran on a smaller split, or
    crashed when the cut took all of one split."""
    path = run / "split_manifest.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]))
    with untouched_outside([tmp_path, photos], run):
        outcome = cli(capsys, "evaluate", run)
    outcome.expect(EXIT_RUN, "split_manifest.csv", "class_counts.json", "delete it to split")
