"""Training compute in FLOPs: forward + backward per image, measured, machine-independent.

A budget in FLOPs ("91% test accuracy within 4 TFLOP of training") means the same on every
machine, where seconds differ 3x between two CPUs. Counted as torch's `FlopCounterMode` counts
(2 FLOPs per multiply-add, convolutions and matrix products; element-wise ops, BatchNorm and the
optimizer are not counted, as in every published FLOP figure), on one training step:

    per_image = train_flops_per_image(model, (1, 28, 28))   # smallcnn: 17.4 MFLOP
    total = per_image * images_seen                          # what metrics.csv reports

The step runs on the `meta` device: no arithmetic is done, so even VGG16 at 224 px is counted
in milliseconds, and the model's weights, BatchNorm statistics and gradients are not touched.
Frozen parameters (`requires_grad=False`) get no weight gradient, so a frozen backbone costs its
forward pass plus the input gradients that layers above it need, exactly as in training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

PROBE_BATCH = 2  # BatchNorm in train mode needs more than one value per channel


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, *args, out_shape, **kw) -> int:
    """torch's formula for a convolution's backward, with the weight gradient of a grouped
    convolution divided by its groups.

    torch 2.14's `conv_backward_flop` counts that weight gradient as if the conv were dense
    (pytorch/pytorch#183405): EfficientNet-Lite0's depthwise convs then made a training step 43x
    its forward pass instead of about 3x."""
    from torch.utils.flop_counter import conv_flop_count

    # (bias, stride, padding, dilation, transposed, output_padding, groups, output_mask)
    _, _, _, _, transposed, _, groups, output_mask = args

    def t(shape):  # swap batch and channels: the weight gradient as a convolution
        return [shape[1], shape[0], *shape[2:]]

    total = 0
    if output_mask[0]:  # grad_input: a transposed conv of grad_out with the weight
        total += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        if transposed:
            total += conv_flop_count(t(grad_out_shape), t(x_shape), t(out_shape[1]))
        else:
            total += conv_flop_count(t(x_shape), t(grad_out_shape), t(out_shape[1])) // groups
    return total


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode with grouped-convolution backward counted correctly."""
    return FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}
    )


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, device="meta").requires_grad_(t.requires_grad)


def train_flops_per_image(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward + backward FLOPs of one training image through `model` in its current mode.

    `input_shape` is one image's (C, H, W). Costs are linear in the batch for these layers, so
    the count on a batch of PROBE_BATCH images is divided by PROBE_BATCH exactly."""
    from torch.func import functional_call

    params = {k: _meta_like(v) for k, v in model.named_parameters()}
    buffers = {k: _meta_like(v) for k, v in model.named_buffers()}
    x = torch.empty((PROBE_BATCH, *input_shape), device="meta")
    counter = flop_counter()
    with counter:
        logits = functional_call(model, {**params, **buffers}, (x,))
        target = torch.zeros(PROBE_BATCH, dtype=torch.long, device="meta")
        loss = F.cross_entropy(logits, target)
        if loss.requires_grad:  # nothing trainable: a forward pass is all the step does
            loss.backward()
    total = counter.get_total_flops()
    if total % PROBE_BATCH:
        raise AssertionError(f"FLOPs {total} not linear in the batch")  # would be a torch bug
    return total // PROBE_BATCH


def forward_flops_per_image(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward-only FLOPs per image (inference, or a frozen backbone's one cached pass)."""
    params = {k: _meta_like(v).detach() for k, v in model.named_parameters()}
    buffers = {k: _meta_like(v) for k, v in model.named_buffers()}
    from torch.func import functional_call

    x = torch.empty((PROBE_BATCH, *input_shape), device="meta")
    counter = flop_counter()
    with counter, torch.no_grad():
        functional_call(model, {**params, **buffers}, (x,))
    return counter.get_total_flops() // PROBE_BATCH
