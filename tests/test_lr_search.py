"""The lines `cnnlab lr-find` and `--lr auto` print, from hand-made finder results."""

import pytest

from cnnlab.engine.lr_finder import LRFindResult, LRFindStatus, RuleValues, StopReason
from cnnlab.lr_search import _example, summary_line


def _result(suggestion, schedule, rules, reason="why", optimizer="SGD", held_out=0):
    status = LRFindStatus.SUGGESTED if suggestion else LRFindStatus.RULES_DISAGREE
    return LRFindResult(
        lrs=[], losses=[], smoothed=[], suggestion=suggestion, agreed=None, schedule=schedule,
        status=status, reason=reason, rules=rules, stop=StopReason.DIVERGED, optimizer=optimizer,
        held_out=held_out, loss_source="losses on 32 held-out images: why" if held_out else "",
    )  # fmt: skip


def test_summary_line_says_the_rate_and_its_schedule_or_no_clear_valley():
    found = _result(0.0123456, "onecycle", RuleValues(1e-3, 2e-3, 1e-3), "they agree")
    assert summary_line(found) == "suggested lr 0.0123 for the onecycle schedule (they agree)"
    none = _result(None, "none", RuleValues(None, None, 0.01), "no clear valley: flat")
    assert summary_line(none) == "no clear valley: flat"
    held = _result(0.001, "cosine", RuleValues(1e-3, 1e-3, 1e-3), "they agree", held_out=32)
    assert summary_line(held) == (
        "suggested lr 0.001 for the cosine schedule (they agree); losses on 32 held-out images: why"
    )


@pytest.mark.parametrize(
    ("schedule", "min_div10", "example"),
    [
        ("onecycle", 0.0167, "0.2"),  # an annealed peak: a decade above minimum/10
        ("cosine", 0.0031, "0.03"),
        ("none", 0.0167, "0.02"),  # a held rate: minimum/10 itself
        ("plateau", None, "0.01"),  # no minimum either: a common starting point
    ],
)
def test_the_refusals_example_is_minimum_over_ten_for_the_schedule(schedule, min_div10, example):
    assert _example(_result(None, schedule, RuleValues(None, None, min_div10))) == example


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "none"])
def test_with_adam_the_example_is_minimum_over_ten_for_every_schedule(schedule):
    rules = RuleValues(None, None, 0.0031)
    assert _example(_result(None, schedule, rules, optimizer="AdamW")) == "0.003"


def test_the_held_out_batch_is_a_fixed_seeded_draw_of_validation_items():
    import torch
    from torch.utils.data import TensorDataset

    from cnnlab.lr_search import held_out_batch

    val = TensorDataset(torch.arange(10.0).view(10, 1) * 10, torch.arange(10))
    x, y = held_out_batch(val, 4, seed=0)
    assert torch.equal(x.view(-1), y * 10.0)  # images and labels stay paired
    assert len(set(y.tolist())) == 4  # without replacement
    again = held_out_batch(val, 4, seed=0)[1]
    others = [held_out_batch(val, 4, seed=s)[1].tolist() for s in range(1, 6)]
    assert torch.equal(again, y) and any(o != y.tolist() for o in others)
    assert sorted(held_out_batch(val, 32, seed=0)[1].tolist()) == list(range(10))  # all there is
    assert held_out_batch(TensorDataset(torch.zeros(0, 1), torch.zeros(0)), 4, seed=0) is None


def test_drawing_the_held_out_batch_leaves_the_global_generator_alone():
    import torch
    from torch.utils.data import TensorDataset

    from cnnlab.lr_search import held_out_batch

    val = TensorDataset(torch.arange(10.0).view(10, 1), torch.arange(10))
    before = torch.get_rng_state()
    held_out_batch(val, 4, seed=0)
    assert torch.equal(torch.get_rng_state(), before)  # a DataLoader would have drawn a seed
