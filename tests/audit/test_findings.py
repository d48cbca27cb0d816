from cnnlab.audit.findings import AuditReport, Check, Code, Finding, Severity, rank


def f(code, sev, score=0.0, files=("a",)):
    return Finding(code, sev, f"{code.value} title", files, ("train",) * len(files), {"x": 1},
                   "--fix", score)  # fmt: skip


def test_rank_is_severity_then_score_then_code():
    items = [
        f(Code.DARK, Severity.INFO, 0.9),
        f(Code.EXACT_DUPLICATE, Severity.WARNING, 0.1),
        f(Code.LABEL_ISSUE, Severity.WARNING, 0.8),
        f(Code.CROSS_SPLIT_DUPLICATE, Severity.ERROR, 0.5),
        f(Code.BLURRY, Severity.INFO, 0.9),
    ]
    codes = [x.code for x in rank(items)]
    assert codes == [
        Code.CROSS_SPLIT_DUPLICATE,
        Code.LABEL_ISSUE,
        Code.EXACT_DUPLICATE,
        Code.DARK,  # same score as blurry: the code order decides
        Code.BLURRY,
    ]


def test_to_dict_is_the_audit_json_shape():
    r = AuditReport(
        [f(Code.DARK, Severity.INFO), f(Code.CROSS_SPLIT_DUPLICATE, Severity.ERROR, 1.0)],
        {"root": "/d", "layout": "split_dirs", "classes": ["a"], "images": {"train": 2}},
        {"label_issue": Check.SKIPPED},
        timings={"measure": 1.0},
    )
    d = r.to_dict()
    assert [x["code"] for x in d["findings"]] == ["cross_split_duplicate", "dark"]
    first = d["findings"][0]
    assert set(first) >= {"code", "severity", "title", "files", "splits", "evidence", "fix"}
    assert first["severity"] == "error" and first["files"] == ["a"]
    assert d["checks"] == {"label_issue": "skipped"}
    assert d["counts"] == {"cross_split_duplicate": 1, "dark": 1}
    assert "timings" not in d
    assert r.worst is Severity.ERROR


def test_format_lists_findings_with_files_and_fix():
    files = tuple(f"f{i}" for i in range(6))
    r = AuditReport([f(Code.NEAR_DUPLICATE, Severity.INFO, files=files)],
                    {"root": "/d", "layout": "csv", "classes": ["a", "b"], "images": {"train": 6}},
                    {"outlier": Check.SKIPPED})  # fmt: skip
    text = r.format(files_per_finding=2)
    assert "audit of /d (csv): train 6; 2 classes" in text
    assert "near_duplicate" in text and "f1" in text and "f2" not in text
    assert "... and 4 more" in text and "fix: --fix" in text
    assert "not checked: outlier" in text
    assert AuditReport([], {}, {}).format().endswith("no findings")
