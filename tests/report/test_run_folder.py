import json

from cnnlab.report.markup import esc, table, value_html
from cnnlab.report.run_folder import class_counts, read_run_folder


def test_class_counts_reads_the_one_format_every_source_writes(tmp_path):
    from cnnlab.data.bundle import write_class_counts

    write_class_counts(tmp_path, ["a", "b"], {"train": [3, 4], "val": [1, 1]})
    written = json.loads((tmp_path / "class_counts.json").read_text())
    assert class_counts(written) == {"train": [3, 4], "val": [1, 1]}
    assert class_counts(None) is None and class_counts([1, 2]) is None
    assert class_counts({"train": [3, 4]}) is None  # not the written format: no guessing


def test_a_folder_with_damaged_files_reads_with_problems_listed(tmp_path):
    (tmp_path / "run.json").write_text('{"status": "failed"}')
    (tmp_path / "test.json").write_text("{")
    (tmp_path / "config.yaml").write_text("a: [")
    run = read_run_folder(tmp_path)
    assert run.status == {"status": "failed"} and run.test is None and run.config is None
    assert run.history == [] and run.classes == [] and run.skipped is None
    assert sorted(p.split(" ")[0] for p in run.problems) == ["config.yaml", "test.json"]


def test_markup_escapes_every_value():
    assert esc('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    html = table(["<h>"], [["<td>"]])
    assert "<h>" not in html and "&lt;td&gt;" in html
    nested = value_html({"<k>": ["<v>", {"x": "<y>"}]})
    assert "<k>" not in nested and "<v>" not in nested and "&lt;y&gt;" in nested
