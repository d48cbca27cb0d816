"""Recipes: defaults that depend on what is trained, filled in for the keys the user left unset.

A pretrained model on a small photo set learns best, and by far the fastest on a CPU, as a
frozen backbone whose features are computed once (no augmentation, so the feature cache works)
with a few epochs of AdamW on the head. Measured on two real photo sets (benchmarks/RESULTS.md,
"A default for --pretrained"): ants/bees 96.1% and faces/non-faces 100%, each in seconds, where
the from-scratch defaults (SGD to lr 0.1 on every layer) fall to chance after one epoch.

The recipe is printed at the start with how to fine-tune everything instead; any key the user
sets (CLI, YAML, API) wins over it.
"""

from __future__ import annotations

from typing import Any

from cnnlab.config import Config

PRETRAINED: dict[str, Any] = {
    "model.freeze_backbone": True,
    "data.augment": "none",  # fixed inputs: the backbone runs once per image (feature cache)
    "optim.optimizer": "adamw",
    "optim.lr": 3e-3,
    "optim.weight_decay": 1e-4,
    "optim.schedule": "cosine",
    "train.epochs": 10,
    "data.batch_size": 32,
}
FINE_TUNE = "--unfreeze-at 2 --backbone-lr 1e-4 --bn-eval --augment light"


def apply_recipes(cfg: Config) -> list[str]:
    """Fill the recipe's keys the user did not set; the lines say what was chosen and how to
    change it. Explicit keys are untouched (a resumed run's saved config is all explicit)."""
    if not cfg.model.pretrained:
        return []
    chosen = {k: v for k, v in PRETRAINED.items() if not cfg.is_set(k)}
    for key, value in chosen.items():
        section, leaf = key.split(".")
        setattr(getattr(cfg, section), leaf, value)
    if not chosen:
        return []
    shown = ", ".join(f"{k.split('.')[1]}={v}" for k, v in chosen.items())
    return [
        f"--pretrained recipe (for small photo sets on a CPU): {shown}; set any of them to "
        f"override, or fine-tune every layer with {FINE_TUNE}"
    ]
