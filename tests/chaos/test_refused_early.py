"""Commands refused before they start: a usage (2) or data (4) error in one line, and nothing
written anywhere (no run folder, no claimed name, nothing outside changed)."""

from __future__ import annotations

import pytest

from tests.chaos.conftest import make_photos
from tests.chaos.harness import EXIT_DATA, EXIT_USAGE, cli, untouched_outside

LAUNCHER_VARS = ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "LOCAL_RANK", "RANK", "SLURM_PROCID")


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch):
    for key in LAUNCHER_VARS:
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        # a run name is one folder name: never a path that leads out of --runs-dir
        (["--name", "../escaped"], EXIT_USAGE, "not a plain folder name"),
        (["--name", "{tmp}/absolute"], EXIT_USAGE, "not a plain folder name"),
        (["--name", "a/b/c"], EXIT_USAGE, "not a plain folder name"),
        # an empty name (an unset shell variable) trained under a generated name
        (["--name", ""], EXIT_USAGE, "not a plain folder name"),
        # several machines need a launcher (it hung for 9 minutes without one)
        (["--num-nodes", "2"], EXIT_USAGE, "needs a launcher"),
        # the global batch must split over the processes (a multi-process traceback before)
        (["--devices", "3", "--batch-size", "128"], EXIT_USAGE, "does not split over 3 processes"),
        (["--image-size", "100000"], EXIT_USAGE, "too large"),
        (["--config", "{tmp}"], EXIT_USAGE, "is a folder; pass a YAML file"),
        # an infinite learning rate was accepted and then blamed on the precision
        (["--lr", "inf"], EXIT_USAGE, "learning rate must be a number > 0, got inf"),
        (["--lr", "nan"], EXIT_USAGE, "learning rate must be a number > 0, got nan"),
        # a --data-dir that does not exist silently fell back to the installed copy
        (["--data-dir", "{tmp}/nowhere"], EXIT_DATA, "--data-dir {tmp}/nowhere is not a folder"),
        (["--data", "{tmp}/nowhere"], EXIT_DATA, "does not exist"),
        (["--model", "smallcnn", "--pretrained"], EXIT_USAGE, "has no pretrained weights"),
    ],
)
def test_refused_before_anything_is_written(capsys, tmp_path, args, code, fragment):
    runs = tmp_path / "runs"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with untouched_outside([tmp_path]):
        outcome = cli(capsys, "train", "--runs-dir", runs, *argv)
    outcome.expect(code, fragment.replace("{tmp}", str(tmp_path)))
    assert not runs.exists()


def test_force_with_an_escaping_name_never_clears_a_folder_elsewhere(capsys, tmp_path):
    """`--force --name ../victim` cleared a folder outside the runs folder."""
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("metrics.csv", "run.json", "config.yaml", "notes.txt"):
        (victim / name).write_text("precious")
    (tmp_path / "runs").mkdir()
    with untouched_outside([tmp_path]):
        outcome = cli(capsys, "train", "--runs-dir", tmp_path / "runs", "--name", "../victim",
                      "--force")  # fmt: skip
    outcome.expect(EXIT_USAGE, "not a plain folder name")


@pytest.mark.parametrize(
    "extra",
    [["--name", "other"], ["--force"], ["--config", "{tmp}/missing.yaml"], ["--config", "{tmp}"]],
    ids=["name", "force", "missing-config", "config-folder"],
)
def test_resume_refuses_what_it_would_ignore(capsys, tmp_path, extra):
    """`--resume` silently ignored --name, --force and even an invalid --config."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    with untouched_outside([tmp_path]):
        outcome = cli(capsys, "train", "--resume", tmp_path / "some-run", *argv)
    outcome.expect(EXIT_USAGE, "--resume continues a run with its own config and name")


@pytest.mark.parametrize(
    ("classes", "fragment"),
    [(("ants",), "only one class ('ants')"), ((), "no class folders")],
    ids=["single-class", "no-class"],
)
def test_a_set_up_that_fails_on_the_data_leaves_the_name_free(capsys, tmp_path, classes, fragment):
    """A single class trained to accuracy 1.0 without a word; a failed set-up left the name
    claimed ('failed'), and the next `--name` then refused and suggested `--resume`."""
    data = make_photos(tmp_path / "data", per_class=4, classes=classes)
    data.mkdir(exist_ok=True)
    runs = tmp_path / "runs"
    with untouched_outside([tmp_path], runs):
        outcome = cli(capsys, "train", "--runs-dir", runs, "--name", "x", "--data", data)
    outcome.expect(EXIT_DATA, fragment, alone=False)
    assert not (runs / "x").exists()


def test_no_validation_images_is_a_data_error_and_frees_the_name(capsys, tmp_path):
    """A validation fraction of 0 ran an epoch, then failed on `val_acc` as an internal error."""
    from tests.conftest import _fmnist_present

    if not _fmnist_present():
        pytest.skip("Fashion-MNIST is not installed (`make data` installs it)")
    runs = tmp_path / "runs"
    with untouched_outside([tmp_path], runs / "t"):  # the name is claimed, then released
        outcome = cli(capsys, "train", "--runs-dir", runs, "--name", "t", "--subset", "300",
                      "--set", "data.val_fraction=0")  # fmt: skip
    outcome.expect(EXIT_DATA, "no validation images", "--set data.val_fraction=0.1")
    assert not (runs / "t").exists()
