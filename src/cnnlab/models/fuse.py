"""Convolution + activation in one oneDNN kernel, for the inference copies that run on a CPU.

After BatchNorm is folded (models/fold.py), a frozen EfficientNet-Lite0 is mostly
conv -> ReLU6 pairs: the activation reads and writes every activation tensor once more after
the convolution wrote it. oneDNN, PyTorch's CPU convolution library, can apply the activation
as a "post-op" while the convolution's output is still in cache. PyTorch exposes that kernel as
`torch.ops.mkldnn._convolution_pointwise` (what Inductor's CPU backend emits for the same
pattern); calling it directly gives the fusion without tracing or compiling: finding the pairs
adds one probe pass to the copy's build (31-64 ms for EfficientNet-Lite0 on two 224 px images,
2-vCPU AMD EPYC), where a traced oneDNN graph took 1.4-1.8 s (benchmarks/RESULTS.md, "Fused
convolution + activation in inference copies").

The op has no autograd formula: it is for inference copies only, which run under
`torch.inference_mode`. Which activation follows which convolution is found the way folding
finds BatchNorm, by one probe run (`fold.conv_followers`), and `fold.inference_copy` checks the
fused copy's outputs against the original model before anything uses it.

    n = fuse_conv_activations_(folded, example)  # in place; n pairs fused
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.models.fold import conv_followers, replace_module
from cnnlab.models.same_padding import TfSameConv2d


@dataclass(frozen=True)
class PostOp:
    """oneDNN's name for an activation and its scalar arguments."""

    attr: str
    scalars: tuple[float, ...] = ()


def post_op(m: nn.Module) -> PostOp | None:
    """The oneDNN post-op that computes `m`, or None if `m` is not an activation it fuses."""
    if type(m) is nn.ReLU:
        return PostOp("relu")
    if type(m) in (nn.ReLU6, nn.Hardtanh):  # ReLU6 is Hardtanh(0, 6)
        return PostOp("hardtanh", (float(m.min_val), float(m.max_val)))
    if type(m) is nn.SiLU:
        return PostOp("swish")
    if type(m) is nn.Hardswish:
        return PostOp("hardswish")
    return None


def fusion_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(
        torch.ops.mkldnn, "_convolution_pointwise"
    )


class ConvAct(nn.Module):
    """`act(conv(x))` in one oneDNN call; inference only (the fused op has no backward).

    Under autocast (a bf16 run's feature pass) or for inputs of another dtype than the weights
    it computes `act(conv(x))` unfused, as the original modules would there."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module, op: PostOp) -> None:
        super().__init__()
        self.conv = conv
        self.act = act
        self.op = op
        self._scalars = list(op.scalars)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if x.dtype != c.weight.dtype or torch.is_autocast_enabled(x.device.type):
            return self.act(c(x))
        if isinstance(c, TfSameConv2d):
            x, weight, padding = c.conv_arguments(x)
        else:
            weight, padding = c.weight, c.padding
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, c.bias, padding, c.stride, c.dilation, c.groups,
            self.op.attr, self._scalars, "",
        )  # fmt: skip


def _fusable_conv(conv: nn.Module) -> bool:
    # exactly these two: a subclass with its own forward (timm's Conv2dSame pads, StdConv2d
    # standardises its weights) computes something else from the same weight
    if type(conv) not in (nn.Conv2d, TfSameConv2d) or conv.padding_mode != "zeros":
        return False
    if isinstance(conv.padding, str) and type(conv) is nn.Conv2d:
        return False  # "same"/"valid": resolved inside F.conv2d, not by this module
    w = conv.weight
    return w.device.type == "cpu" and w.dtype == torch.float32


def fuse_conv_activations_(model: nn.Module, example: torch.Tensor) -> int:
    """Replace each (CPU, float32) convolution whose output goes straight into a ReLU, ReLU6,
    SiLU or Hardswish with one fused `ConvAct`, in place; returns how many pairs were fused.

    `model` must be an inference copy (eval mode, no gradients wanted)."""
    if not fusion_available() or example.device.type != "cpu":
        return 0
    fused = 0
    for conv_name, act_name in conv_followers(model, example, lambda m: post_op(m) is not None):
        conv, act = model.get_submodule(conv_name), model.get_submodule(act_name)
        if not _fusable_conv(conv):
            continue
        replace_module(model, conv_name, ConvAct(conv, act, post_op(act)))
        replace_module(model, act_name, nn.Identity())
        fused += 1
    return fused
