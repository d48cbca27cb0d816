"""TensorFlow's "SAME" padding without copying the activations.

TF pads a stride-2 convolution asymmetrically: for an even input side n and kernel k the total
padding is k - 2, one pixel more after than before (k=3: 0 before, 1 after). PyTorch's conv only
pads symmetrically, so timm's `Conv2dSame` copies every input into a padded tensor (`F.pad`)
before the convolution: for EfficientNet-Lite0 at 224 px that is a 154 MB copy per batch of 32
in the second stage alone.

The copy is avoidable: padding `after` on both sides and giving the kernel one extra leading row
(and column) of zeros computes exactly the same sums. With `p = after` and kernel k+1, output i
reads inputs s*i - p .. s*i - p + k; the first tap (weight 0) lands on s*i - p and the real taps
on s*i - before .. s*i - before + k - 1, which is TF's window; the output count is the same
(floor((n + 2p - k - 1) / s) + 1 = ceil(n / s)). Zero weights add k+1/k work to a depthwise
conv, which is memory-bound: on 2 AMD EPYC vCPUs Lite0's four stride-2 depthwise convs ran
1.6-1.9x faster this way than pad + conv (channels_last; 1.7-3.0x NCHW) (benchmarks/RESULTS.md, "SAME padding"). Dense convs
(the 3-channel stem) keep pad + conv, which was faster there.

The padding is computed from the input's size on each call (a few integer operations), so any
input size stays exact; the weight keeps its shape and name, so checkpoints are unchanged, and
gradients flow only to the real taps (the zero row is a `F.pad` of the weight).

While torch.export traces the model (the ONNX export), the input is padded instead: ONNX's Conv
takes lopsided padding itself, so the exporter's optimiser folds the pad into the convolution,
where the padded weight left a graph that ONNX Runtime refused (the optimiser's folded weight,
"pad_4", was missing from the graph) and an unoptimised graph that ran Lite0 3.3x slower in
ONNX Runtime (benchmarks/RESULTS.md, "Export time").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF "SAME" (before, after) padding along one axis of length `size`."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class TfSameConv2d(nn.Conv2d):
    """A drop-in for timm's `Conv2dSame`: same parameters, same outputs, no padded copy for
    depthwise convolutions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight, padding = self.conv_arguments(x)
        return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)

    def conv_arguments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """(input, weight, symmetric padding) of the plain convolution that computes this one
        on `x` (also what a fused convolution + activation runs: models/fuse.py)."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        bh, ah = same_pads(x.shape[-2], kh, sh, dh)
        bw, aw = same_pads(x.shape[-1], kw, sw, dw)
        depthwise = self.groups == self.in_channels and self.groups > 1
        if bh == ah and bw == aw:  # symmetric: PyTorch's own padding, no copy
            return x, self.weight, (ah, aw)
        if depthwise and dh == dw == 1 and not torch.compiler.is_exporting():
            # one leading zero row/column where the padding is lopsided (after = before + 1);
            # not in an export, whose Conv pads lopsided by itself (module docstring)
            return x, F.pad(self.weight, (aw - bw, 0, ah - bh, 0)), (ah, aw)
        return F.pad(x, (bw, aw, bh, ah)), self.weight, (0, 0)


def replace_same_convs(module: nn.Module) -> int:
    """Swap every timm `Conv2dSame` under `module` for a `TfSameConv2d` sharing its parameters.

    Returns how many were replaced."""
    from timm.layers import Conv2dSame

    swaps = [(name, m) for name, m in module.named_modules() if type(m) is Conv2dSame]
    for name, old in swaps:
        new = TfSameConv2d(
            old.in_channels, old.out_channels, old.kernel_size, old.stride, 0, old.dilation,
            old.groups, old.bias is not None, device=old.weight.device, dtype=old.weight.dtype,
        )  # fmt: skip
        new.weight, new.bias = old.weight, old.bias
        parent_name, _, attr = name.rpartition(".")
        setattr(module.get_submodule(parent_name) if parent_name else module, attr, new)
    return len(swaps)
