"""summary.md: what a person reads after a run, including which files were left out."""

from cnnlab import config as C
from cnnlab.evaluation.report import write_summary


def test_the_summary_says_which_files_were_skipped_and_why(tmp_path):
    data_lines = [
        "data: /photos (layout class_folders); split by seed 0",
        "classes: 2 (ants, bees)",
        "skipped 2 files (all listed in skipped.csv):",
        "  missing                 1  listed but not on disk, e.g. /photos/ants/a.png",
        "  truncated               1  truncated image, e.g. /photos/bees/b.jpg",
        "pixel cache: off",
    ]
    status = {"status": "finished", "stop_reason": "max epochs", "device": "cpu"}
    write_summary(tmp_path, name="r", config=C.Config().to_dict(), status=status, history=[],
                  test=None, classes=["ants", "bees"], data_lines=data_lines)  # fmt: skip
    lines = (tmp_path / "summary.md").read_text().splitlines()
    assert (
        "- **skipped**: skipped 2 files (all listed in skipped.csv): missing 1 listed but not on "
        "disk, e.g. /photos/ants/a.png; truncated 1 truncated image, e.g. /photos/bees/b.jpg"
    ) in lines
    write_summary(tmp_path, name="r", config=C.Config().to_dict(), status=status, history=[],
                  test=None, classes=["ants", "bees"], data_lines=data_lines[:2])  # fmt: skip
    assert not [line for line in (tmp_path / "summary.md").read_text().splitlines()
                if "skipped" in line]  # fmt: skip
