"""Grad-CAM and Grad-CAM++ on the last convolutional stage of any `CnnClassifier`.

    layer = find_target_layer(model, (1, 28, 28))     # e.g. backbone.16 (ReLU), 128x7x7
    heat = cam(model, x, target_class=3, layer=layer)  # (28, 28) in [0, 1]

Grad-CAM (Selvaraju et al. 2017, arXiv:1610.02391) weights each channel k of the last conv map
A (N, K, h, w) by the spatial mean of d score_c / d A_k, sums, applies a ReLU and upsamples to
the input. Grad-CAM++ (Chattopadhyay et al. 2018, arXiv:1710.11063, eq. 19) weights each
position's positive gradient by alpha = g^2 / (2 g^2 + sum_ij(A) g^3) instead. The score is the
class logit, as in both papers.

The map is read where the backbone's last convolutional stage ends, found by running the model
once (`find_target_layer`), so no family's attribute names are needed. The two cases where
hook-based tools fail are handled by construction:
- frozen backbones (requires_grad False): the hooked output is swapped for a detached leaf that
  requires grad, so the gradient exists whatever the parameters say;
- in-place ReLUs after the hooked module: the module passes on a *clone* of that leaf, so a later
  in-place op changes the clone, never the activations kept here.
Gradients come from torch.autograd.grad on that leaf: no parameter's .grad is touched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError, unknown


class CamMethod(str, Enum):
    GRADCAM = "gradcam"
    GRADCAM_PP = "gradcam++"

    @property
    def label(self) -> str:
        return {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}[self.value]


def cam_method(method: str | CamMethod) -> CamMethod:
    try:
        return CamMethod(method)
    except ValueError:
        raise unknown("Grad-CAM method", str(method), [m.value for m in CamMethod]) from None


# Modules that only pool or pass a map through: the map *before* them is the one to explain. A
# trailing max-pool halves the resolution of the same evidence (VGG at 32 px would be left with
# 1x1), so, as in the Grad-CAM paper for VGG-16, the map before pool5 is used.
_PASS_THROUGH = (
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d,
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten,
)  # fmt: skip


@dataclass(frozen=True)
class TargetLayer:
    name: str  # dotted path inside the model, e.g. "backbone.layer4"
    module: nn.Module = field(repr=False, compare=False)
    call: int  # which call of `module` in one forward (0 = first); shared modules run twice
    shape: tuple[int, int, int]  # (K, h, w) of the map at the input size it was found with


@torch.no_grad()
def find_target_layer(model: nn.Module, input_shape: Sequence[int]) -> TargetLayer:
    """The module whose output is the backbone's last convolutional feature map.

    One forward on zeros records every module call in completion order (children finish before
    their parents). A call belongs to the pooling tail when its module pools or passes a map
    through, when its output is 1x1, or when it is a container returning the very tensor its
    last finishing descendant (a tail call) returned: AlexNet's `features` ends in a max-pool.
    The last 4-D call outside the tail is the target; a container returning the same map as its
    last block (ResNet's layer4) finishes after it, so the whole stage is chosen."""
    backbone = getattr(model, "backbone", model)
    prefix = "backbone" if backbone is not model else ""
    calls: list[tuple[str, nn.Module, int, object]] = []  # name, module, call number, output
    counts: dict[int, int] = {}

    def record(name: str):
        def hook(module: nn.Module, args, output) -> None:
            counts[id(module)] = counts.get(id(module), 0) + 1
            calls.append((name, module, counts[id(module)] - 1, output))

        return hook

    handles = [
        m.register_forward_hook(record(".".join(filter(None, (prefix, n)))))
        for n, m in backbone.named_modules()
    ]
    try:
        with _eval(model):
            p = next(model.parameters())
            model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
    target, tail = None, [False] * len(calls)
    for i, (name, module, k, out) in enumerate(calls):
        if not (torch.is_tensor(out) and out.dim() == 4 and out.is_floating_point()):
            continue
        prev_name, _, _, prev_out = calls[i - 1] if i else ("", None, 0, None)
        from_tail = prev_out is out and tail[i - 1] and prev_name.startswith(f"{name}.")
        tail[i] = isinstance(module, _PASS_THROUGH) or out.shape[-2:] == (1, 1) or from_tail
        if not tail[i]:
            target = TargetLayer(name, module, k, tuple(out.shape[1:]))
    if target is None:
        raise ConfigError(
            f"{type(backbone).__name__} has no convolutional feature map to explain; Grad-CAM "
            "needs a backbone that outputs (N, K, h, w) maps before pooling"
        )
    return target


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class _Capture:
    """Forward hook on the target: swaps its output for a leaf that requires grad (frozen
    backbones) and passes a clone downstream (in-place ops after it)."""

    def __init__(self, layer: TargetLayer) -> None:
        self.layer, self.calls = layer, 0
        self.activations: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor | None:
        k, self.calls = self.calls, self.calls + 1
        if k != self.layer.call:
            return None
        self.activations = output.detach().requires_grad_(True)
        return self.activations.clone()


def gradcam_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """(N, K): the spatial mean of the gradient per channel (Grad-CAM eq. 1)."""
    return grads.mean(dim=(2, 3))


def gradcampp_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """(N, K): sum_ij alpha_ij relu(g_ij), alpha = g^2 / (2 g^2 + sum(A) g^3) (Grad-CAM++ eq. 19,
    the closed form for an exponential of the score); alpha is 0 where the gradient is 0."""
    g2 = grads.square()
    denom = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g2 * grads
    alpha = torch.where(grads != 0, g2 / torch.where(denom == 0, 1.0, denom), 0.0)
    return (alpha * grads.clamp(min=0)).sum(dim=(2, 3))


_WEIGHTS = {CamMethod.GRADCAM: gradcam_weights, CamMethod.GRADCAM_PP: gradcampp_weights}


def cam(
    model: nn.Module,
    x: torch.Tensor,
    target_class: int | Sequence[int],
    method: str | CamMethod = CamMethod.GRADCAM,
    *,
    layer: TargetLayer | None = None,
) -> np.ndarray:
    """Class activation map(s) in [0, 1] at the input's resolution.

    `x` is a preprocessed image (C, H, W) -> (H, W), or a batch (N, C, H, W) -> (N, H, W) with
    one target class each (or one for all). Each map is divided by its maximum; a map with no
    positive evidence for the class is all zeros."""
    method = cam_method(method)
    batch = x if x.dim() == 4 else x.unsqueeze(0)
    n = batch.shape[0]
    classes = [target_class] * n if isinstance(target_class, int) else list(target_class)
    if len(classes) != n:
        raise ConfigError(f"{len(classes)} target classes for {n} images; pass one per image")
    p = next(model.parameters())
    if p.is_inference():
        raise ConfigError(
            "the model's weights were created or moved inside torch.inference_mode(), so no "
            "gradient can flow through them; load or move the model outside inference mode"
        )
    layer = layer or find_target_layer(model, tuple(batch.shape[1:]))
    capture = _Capture(layer)
    handle = layer.module.register_forward_hook(capture)
    # Inside inference_mode (e.g. a caller's) autograd is off; a plain clone of the input is
    # needed too, as inference tensors cannot be saved for backward.
    with torch.inference_mode(False), torch.enable_grad(), _eval(model):
        try:
            logits = model(batch.to(p.device, p.dtype).clone())
        finally:
            handle.remove()
        if capture.activations is None:
            raise ConfigError(f"{layer.name} did not run in the forward pass; pass its model")
        acts = capture.activations
        target = torch.as_tensor(classes, device=logits.device).view(-1, 1)
        (grads,) = torch.autograd.grad(logits.gather(1, target).sum(), acts)
        with torch.no_grad():
            weights = _WEIGHTS[method](acts, grads)  # (N, K)
            maps = torch.relu((weights[:, :, None, None] * acts).sum(dim=1, keepdim=True))
            maps = F.interpolate(maps, size=batch.shape[-2:], mode="bilinear", align_corners=False)
            peak = maps.amax(dim=(2, 3), keepdim=True)
            maps = torch.where(peak > 0, maps / torch.where(peak > 0, peak, 1.0), 0.0)
    out = maps[:, 0].float().cpu().numpy()
    return out if x.dim() == 4 else out[0]
