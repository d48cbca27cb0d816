"""A resume that cannot work is refused before it changes any file of the run."""

from __future__ import annotations

from tests.chaos.harness import (
    EXIT_RUN,
    cli,
    epochs_in,
    folder_state,
    last_good_checkpoint,
    status,
    untouched_outside,
)


def test_fewer_epochs_than_done_is_refused_and_the_run_stays_as_it_was(
    capsys, run, photos, tmp_path
):
    """`--resume RUN --epochs N` with N below the epochs done: an internal error after
    config.yaml was rewritten and the run marked failed, so a plain --resume kept failing."""
    before = folder_state(run)
    with untouched_outside([tmp_path, photos], run):
        cli(capsys, "train", "--resume", run, "--epochs", "1").expect(
            EXIT_RUN, "run 'r' has trained 2 epochs and finished", "--epochs N` (N > 2)"
        )
    assert folder_state(run) == before
    assert status(run)["status"] == "finished"


def test_config_edited_to_another_model_is_refused_before_any_write(capsys, run, photos, tmp_path):
    """config.yaml edited by hand to another model: an 11 KB message, and the finished run
    flipped to failed."""
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("name: smallcnn", "name: resnet18"))
    before = folder_state(run)
    with untouched_outside([tmp_path, photos], run):
        outcome = cli(capsys, "train", "--resume", run, "--epochs", "3")
    outcome.expect(EXIT_RUN, "names model 'resnet18' but the run trained 'smallcnn'", "restore it")
    assert len(outcome.message) < 400
    # without --epochs too: the edit is named, not "extend it with --epochs"
    cli(capsys, "train", "--resume", run).expect(EXIT_RUN, "config.yaml names model 'resnet18'")
    assert folder_state(run) == before
    assert status(run)["status"] == "finished"
    assert epochs_in(last_good_checkpoint(run)) == 2
