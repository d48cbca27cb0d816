"""What used to happen without a word: a symlink that relabels images, labels that differ only
in case, files of one run written with different permissions."""

from __future__ import annotations

import csv
import json
import stat

from tests.chaos.conftest import TINY, make_photos
from tests.chaos.harness import cli, history, last_good_checkpoint, status, untouched_outside


def test_a_link_back_into_the_data_never_relabels_images(trained, photos):
    """`ln -s .. data/ants/up` made every bee train a second time as an ant."""
    with open(trained / "skipped.csv") as fh:
        skipped = {r["path"]: r["reason"] for r in csv.DictReader(fh)}
    assert skipped == {str(photos / "ants" / "up"): "symlink_into_data"}
    counts = json.loads((trained / "class_counts.json").read_text())
    per_class = [sum(s[k] for s in counts["counts"].values() if s) for k in range(2)]
    assert counts["classes"] == ["ants", "bees"] and per_class == [10, 10]  # not 20 ants
    with open(trained / "split_manifest.csv") as fh:
        assert not [r for r in csv.DictReader(fh) if "/up/" in r["path"]]


def test_labels_that_differ_only_in_case_are_named(capsys, tmp_path):
    data = make_photos(tmp_path / "data", per_class=4, classes=("ants", "ANTS", "bees"))
    runs = tmp_path / "runs"
    with untouched_outside([tmp_path], runs / "c"):
        outcome = cli(capsys, "train", "--runs-dir", runs, "--name", "c", "--data", data,
                      "--epochs", "1", *TINY).expect(0)  # fmt: skip
    warned = [line for line in outcome.out.splitlines() if "differ only in case" in line]
    assert len(warned) == 1 and "'ANTS' and 'ants'" in warned[0]
    assert status(runs / "c")["status"] == "finished" and len(history(runs / "c")) == 1
    last_good_checkpoint(runs / "c")


def test_every_file_of_a_run_follows_the_umask(trained):
    """model.safetensors was written 0600 while every other file followed the umask."""
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in trained.iterdir() if p.is_file()}
    assert len(set(modes.values())) == 1, modes
    assert modes["model.safetensors"] == modes["metrics.csv"] == modes["config.yaml"]
