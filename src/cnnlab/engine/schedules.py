"""Learning-rate schedules as pure functions of the step: nothing to restore on resume.

Each returns the factor that multiplies the base lr. The plateau schedule (divide by 10 when
validation accuracy stalls) depends on metrics, not steps, and uses ReduceLROnPlateau instead.
"""

from __future__ import annotations

import math


def warmup_factor(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def cosine_factor(step: int, total_steps: int, warmup_steps: int = 0, floor: float = 0.0) -> float:
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def onecycle_factor(step: int, total_steps: int, pct_start: float = 0.25) -> float:
    """Linear rise from 1/25 to 1 over pct_start of training, then cosine down to 1/2500
    (the shape of Smith's one-cycle policy as in torch's OneCycleLR, without momentum cycling)."""
    rise = max(1, int(total_steps * pct_start))
    start, end = 1.0 / 25.0, 1.0 / 2500.0
    if step < rise:
        return start + (1.0 - start) * step / rise
    t = min(1.0, (step - rise) / max(1, total_steps - rise))
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def step_factor(epoch: int, step_size: int, gamma: float) -> float:
    return gamma ** (epoch // step_size)


def lr_factor(
    schedule: str,
    step: int,
    *,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: int = 0,
    step_size: int = 10,
    gamma: float = 0.1,
) -> float:
    total = max(1, steps_per_epoch * epochs)
    warmup = warmup_epochs * steps_per_epoch
    if schedule == "cosine":
        return cosine_factor(step, total, warmup)
    if schedule == "onecycle":
        return onecycle_factor(step, total)
    if schedule == "step":
        return warmup_factor(step, warmup) * step_factor(step // steps_per_epoch, step_size, gamma)
    return warmup_factor(step, warmup)  # "none" and "plateau" (whose drops come from metrics)
