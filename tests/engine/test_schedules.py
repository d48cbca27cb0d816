import math

import pytest

from cnnlab.engine.schedules import cosine_factor, lr_factor, onecycle_factor, step_factor


def test_cosine_endpoints_and_midpoint():
    assert cosine_factor(0, 100) == pytest.approx(1.0)
    assert cosine_factor(50, 100) == pytest.approx(0.5)
    assert cosine_factor(100, 100) == pytest.approx(0.0, abs=1e-12)


def test_warmup_is_linear():
    assert cosine_factor(0, 100, warmup_steps=10) == pytest.approx(0.1)
    assert cosine_factor(9, 100, warmup_steps=10) == pytest.approx(1.0)


def test_onecycle_rises_then_falls():
    values = [onecycle_factor(s, 100) for s in range(101)]
    peak = values.index(max(values))
    assert values[0] == pytest.approx(1 / 25)
    assert peak == 25 and values[peak] == pytest.approx(1.0)
    assert values[-1] == pytest.approx(1 / 2500)
    assert all(a <= b for a, b in zip(values[:peak], values[1 : peak + 1], strict=True))


def test_step_divides_by_ten_every_step_size_epochs():
    assert [step_factor(e, 3, 0.1) for e in (0, 2, 3, 6)] == pytest.approx([1, 1, 0.1, 0.01])
    assert lr_factor("step", 35, steps_per_epoch=10, epochs=9, step_size=3) == pytest.approx(0.1)


def test_plateau_and_none_are_flat():
    for schedule in ("plateau", "none"):
        assert lr_factor(schedule, 123, steps_per_epoch=10, epochs=5) == 1.0
    assert math.isclose(
        lr_factor("cosine", 25, steps_per_epoch=10, epochs=5), cosine_factor(25, 50)
    )
