"""`predict` on a mix of good and bad files predicts the good ones, lists the bad ones and exits
non-zero (before the batched rewrite it stopped at the first bad file and printed nothing for
the good ones)."""

from __future__ import annotations

from tests.chaos.harness import EXIT_DATA, cli, folder_state, untouched_outside


def test_predict_on_good_and_bad_files_predicts_the_good_and_names_the_bad(
    capsys, run, photos, tmp_path
):
    good = sorted((photos / "ants").glob("*.png"))[:2]
    bad = tmp_path / "broken.png"
    bad.write_bytes(good[0].read_bytes()[:40])
    before = folder_state(run)
    with untouched_outside([tmp_path, photos], run):
        outcome = cli(capsys, "predict", run, good[0], bad, good[1])
    outcome.expect(EXIT_DATA, "broken.png")
    assert str(good[0]) in outcome.out and str(good[1]) in outcome.out
    assert folder_state(run) == before
