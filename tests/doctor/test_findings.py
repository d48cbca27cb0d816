import json

from cnnlab.doctor import thresholds as T
from cnnlab.doctor.findings import (
    CAUSES,
    EXPLAINS,
    RULES,
    Code,
    DoctorReport,
    Finding,
    Severity,
    rank,
)

# The stable interface: doctor.json consumers and the experiment table depend on these strings.
PINNED = [
    "diverged", "lr_too_high", "lr_too_low", "stuck_at_chance", "predicts_one_class",
    "vanishing_gradients", "exploding_gradients", "dead_relu", "bad_init", "overfitting",
    "underfitting", "undertrained", "class_imbalance", "label_noise", "bn_mismatch",
    "input_not_normalized", "data_leakage", "val_above_train", "weight_decay_too_high",
    "frozen_random_backbone",
]  # fmt: skip


def f(code: Code, severity: Severity = Severity.WARNING, confidence: float = 0.8, **kw) -> Finding:
    return Finding(code, severity, code.value, {}, "", confidence, **kw)


def test_codes_are_pinned_and_each_has_a_rule():
    assert [c.value for c in Code] == PINNED
    assert set(RULES) == set(Code)
    assert all(text and "{" not in text for text in RULES.values())  # thresholds filled in


def test_rule_text_quotes_the_thresholds_the_rules_use():
    assert f"{T.UPDATE_RATIO_HIGH}" in RULES[Code.LR_TOO_HIGH]
    assert f"{T.STUCK_LOSS_FRACTION:.0%}" == "95%" and "95%" in RULES[Code.STUCK_AT_CHANCE]
    assert f"{T.OVERFIT_STEPS}-step" in RULES[Code.LR_TOO_LOW]


def test_every_explained_code_is_a_code_and_every_cause_has_an_entry():
    assert set(CAUSES) == set(EXPLAINS)
    assert all(isinstance(c, Code) for targets in EXPLAINS.values() for c in targets)


def test_symptoms_are_grouped_under_their_cause_and_raise_its_severity():
    stuck = f(Code.STUCK_AT_CHANCE, Severity.ERROR)
    one = f(Code.PREDICTS_ONE_CLASS, Severity.ERROR)
    init = f(Code.BAD_INIT, Severity.WARNING)
    roots = rank([stuck, one, init])
    assert roots == [init]
    assert init.severity is Severity.ERROR  # the cause of an error is the error
    assert init.symptoms == [stuck, one]
    assert stuck.caused_by is Code.BAD_INIT and one.caused_by is Code.BAD_INIT


def test_unexplained_symptoms_stay_roots_after_causes_of_equal_severity():
    over = f(Code.OVERFITTING, Severity.WARNING)
    dead = f(Code.DEAD_RELU, Severity.WARNING)  # overfitting does not explain dead ReLUs
    roots = rank([dead, over])
    assert roots == [over, dead]
    assert over.symptoms == [] and dead.caused_by is None


def test_the_more_upstream_cause_adopts_a_downstream_cause_and_its_symptoms():
    low = f(Code.LR_TOO_LOW)
    stuck = f(Code.STUCK_AT_CHANCE, Severity.ERROR)
    frozen = f(Code.FROZEN_RANDOM_BACKBONE)
    roots = rank([low, stuck, frozen])
    assert roots == [frozen]
    assert {id(s) for s in frozen.symptoms} == {id(low), id(stuck)}


def test_info_findings_never_adopt_problems():
    imbalance = f(Code.CLASS_IMBALANCE, Severity.INFO)
    one = f(Code.PREDICTS_ONE_CLASS, Severity.ERROR)
    roots = rank([imbalance, one])
    assert roots[0] is one and one.caused_by is None


def test_explained_by_hint_groups_a_cause_under_a_downstream_cause_without_cycles():
    bn = f(Code.BN_MISMATCH, explained_by=(Code.UNDERTRAINED,))
    under = f(Code.UNDERTRAINED)
    roots = rank([bn, under])
    assert roots == [under] and under.symptoms == [bn]
    # a hint pointing both ways must not loop
    a = f(Code.BN_MISMATCH, explained_by=(Code.UNDERTRAINED,))
    b = f(Code.UNDERTRAINED, explained_by=(Code.BN_MISMATCH,))
    assert len(rank([a, b])) == 1


def test_report_dict_is_json_and_lists_codes_in_rank_order():
    init = f(Code.BAD_INIT)
    stuck = f(Code.STUCK_AT_CHANCE, Severity.ERROR)
    info = f(Code.VAL_ABOVE_TRAIN, Severity.INFO)
    report = DoctorReport("runs/x", "finished", rank([stuck, info, init]))
    d = json.loads(json.dumps(report.to_dict()))
    assert d["diagnosis"] == "bad_init" and d["healthy"] is False
    assert [x["code"] for x in d["findings"]] == ["bad_init", "val_above_train"]
    assert d["findings"][0]["symptoms"][0]["caused_by"] == "bad_init"
    assert report.codes() == ["bad_init", "stuck_at_chance", "val_above_train"]
    text = report.format()
    assert "[error] bad_init" in text and "explains [error] stuck_at_chance" in text


def test_a_report_with_only_info_is_healthy():
    report = DoctorReport("r", "finished", rank([f(Code.VAL_ABOVE_TRAIN, Severity.INFO)]))
    assert report.healthy and report.top is None and report.to_dict()["diagnosis"] is None
    assert "no problem found" in report.format()


def test_rules_markdown_has_one_row_per_code():
    from cnnlab.doctor.findings import rules_markdown

    lines = rules_markdown().splitlines()
    assert len(lines) == 2 + len(Code)
    assert lines[2].startswith("| `diverged` | symptom |")
    assert any(line.startswith("| `bad_init` | cause |") for line in lines)


def test_the_readme_table_is_the_rules_as_the_code_has_them():
    from pathlib import Path

    from cnnlab.doctor.findings import rules_markdown

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert rules_markdown() in readme
