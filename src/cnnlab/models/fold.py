"""A frozen, eval-mode copy of a network with every BatchNorm folded into its convolution.

In eval mode BatchNorm is a fixed per-channel affine map, y = (x - mean) / sqrt(var + eps) *
gamma + beta, so after a convolution it can be merged into the convolution's weights and bias:

    scale = gamma / sqrt(var + eps)         # (C_out,)
    W' = W * scale[:, None, None, None]     # each output channel's filter scaled
    b' = (b - mean) * scale + beta          # b = 0 when the conv has no bias

The folded network computes the same function (within float rounding) with one pass over each
activation instead of two: on EfficientNet-Lite0 BatchNorm took a quarter of the frozen-feature
time before folding (benchmarks/RESULTS.md, "Frozen features").

Which BatchNorm follows which convolution is found by running the network once on an example
batch: a BatchNorm whose input is the very tensor a convolution returned is folded into it. The
folded copy is then checked against the original on that batch; a mismatch (a conv output that
was also used elsewhere, say) raises instead of returning a wrong network.

    fast = inference_copy(model.backbone, torch.randn(2, 3, 224, 224))
    features = fast(images)  # == model.backbone.eval()(images) within 1e-4
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.errors import CnnlabError

# how far a copy's outputs may stray from the model's on the example, relative to their scale:
# structural mistakes are of the order of the outputs, float rounding about 1e-5
CHECK_RTOL = 1e-3


def memory_format(channels_last: bool) -> torch.memory_format:
    """The memory format a `channels_last` setting asks for (weights and inputs alike)."""
    return torch.channels_last if channels_last else torch.contiguous_format


class FoldError(CnnlabError):
    """The folded network disagrees with the original: a bug to report, never a silent result."""


class NonFiniteOutputs(CnnlabError):
    """The model's own outputs on the example are NaN or infinite (diverged weights): no copy
    can be checked against them. Not a bug of folding: callers use the model as it is."""


@dataclass(frozen=True)
class FoldPair:
    conv: str  # qualified module names
    norm: str


def find_conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[FoldPair]:
    """(conv, BatchNorm) pairs where the BatchNorm's input is exactly that conv's output.

    Modules called more than once per forward (shared weights) are left out."""
    return [FoldPair(conv, norm) for conv, norm in conv_followers(model, example, _foldable_norm)]


def conv_followers(
    model: nn.Module, example: torch.Tensor, follows: Callable[[nn.Module], bool]
) -> list[tuple[str, str]]:
    """(conv name, module name) for each module accepted by `follows` whose input is exactly
    the tensor a convolution returned, found by running `model` once on `example`.

    Modules called more than once per forward (shared weights) are left out."""
    return probe_followers(model, example, follows)[0]


def probe_followers(
    model: nn.Module, example: torch.Tensor, follows: Callable[[nn.Module], bool]
) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """`conv_followers` and the output of the probe run (model(example), without gradients)."""
    names = {m: n for n, m in model.named_modules()}
    calls: dict[nn.Module, int] = {}
    produced: dict[int, nn.Module] = {}  # id(output tensor) -> conv that returned it
    keep: list[torch.Tensor] = []  # keeps ids unique while the probe runs
    pairs: dict[nn.Module, nn.Module] = {}

    def after_conv(m: nn.Module, inputs, output) -> None:
        calls[m] = calls.get(m, 0) + 1
        produced[id(output)] = m
        keep.append(output)

    def before_follower(m: nn.Module, inputs) -> None:
        calls[m] = calls.get(m, 0) + 1
        conv = produced.get(id(inputs[0]))
        if conv is not None:
            pairs[m] = conv

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):  # subclasses too: TF-SAME convs compute with self.weight
            hooks.append(m.register_forward_hook(after_conv))
        elif follows(m):
            hooks.append(m.register_forward_pre_hook(before_follower))
    try:
        with torch.no_grad():
            output = model(example)
    finally:
        for h in hooks:
            h.remove()
    found = [
        (names[conv], names[m]) for m, conv in pairs.items() if calls[m] == 1 and calls[conv] == 1
    ]
    return found, output


def _foldable_norm(m: nn.Module) -> bool:
    if type(m) is nn.BatchNorm2d:
        return m.track_running_stats and m.running_mean is not None
    # timm's BatchNormAct2d: BatchNorm2d + dropout + activation in one module
    return (
        isinstance(m, nn.BatchNorm2d)
        and type(m).__name__ == "BatchNormAct2d"
        and m.running_mean is not None
    )


@torch.no_grad()
def fold_values(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of `conv` with eval-mode `bn` folded in (new tensors)."""
    dtype = conv.weight.dtype
    # the per-channel numbers in float64 (rounded once); the weights scaled in their own
    # precision: within 1.2e-7 (relative) of a float64 product, and ResNet-50's 53 pairs fold
    # 11x faster so (alternating rounds, 2 AMD EPYC vCPUs; benchmarks/RESULTS.md), which the
    # validation copy's refold every epoch (LiveInferenceCopy.refresh) pays
    scale = bn.weight.double() if bn.affine else torch.ones_like(bn.running_var, dtype=torch.double)
    scale = scale / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.double() if bn.affine else torch.zeros_like(scale)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    weight = conv.weight * scale.to(dtype).view(-1, 1, 1, 1)
    return weight, ((bias - bn.running_mean.double()) * scale + shift).to(dtype)


def fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode `bn` into `conv` in place (new weight and bias parameters)."""
    weight, bias = fold_values(conv, bn)
    conv.weight = nn.Parameter(weight, requires_grad=False)
    conv.bias = nn.Parameter(bias, requires_grad=False)


def _after_fold(bn: nn.Module) -> nn.Module:
    """What replaces a folded BatchNorm: nothing, or the activation it carried (timm)."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    drop, act = bn.drop, bn.act  # BatchNormAct2d: batch_norm -> drop -> act
    return act if isinstance(drop, nn.Identity) else nn.Sequential(drop, act)


def fold_batchnorm_(model: nn.Module, example: torch.Tensor) -> int:
    """Fold every foldable BatchNorm of an eval-mode `model` in place; returns how many."""
    if model.training:
        raise FoldError("fold_batchnorm_ needs an eval-mode model (BatchNorm statistics fixed)")
    return fold_pairs_(model, find_conv_bn_pairs(model, example))


def fold_pairs_(model: nn.Module, pairs: list[FoldPair]) -> int:
    for pair in pairs:
        conv, bn = model.get_submodule(pair.conv), model.get_submodule(pair.norm)
        fold_into(conv, bn)
        replace_module(model, pair.norm, _after_fold(bn))
    return len(pairs)


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule called `name` (dotted) is."""
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def inference_copy(
    model: nn.Module,
    example: torch.Tensor,
    *,
    memory_format: torch.memory_format = torch.contiguous_format,
    rtol: float = CHECK_RTOL,
    fuse: bool = True,
) -> nn.Module:
    """A frozen eval-mode copy of `model` with BatchNorm folded, checked on `example`.

    On a CPU, each convolution + activation pair then also runs as one oneDNN kernel
    (`fuse`, models/fuse.py); should that fail or disagree on `example`, the copy is rebuilt
    folded only. `model` is left as it was (mode, weights, gradients). `example` is a batch of
    the inputs the copy will see (its values do not matter, its shape and dtype do). The check
    catches structural mistakes (errors of the order of the outputs); float rounding differs
    between the two by about 1e-5 of the outputs' scale (tests/models/test_fold.py: within
    1e-4)."""
    return _build(model, example, memory_format=memory_format, rtol=rtol, fuse=fuse).module


@dataclass
class _Built:
    """An inference copy and where its numbers came from: `folds` (each folded conv of the
    copy and the conv + BatchNorm names in the original) and `carried` (every other tensor
    of the copy and its name in the original)."""

    module: nn.Module
    folds: list[tuple[nn.Conv2d, FoldPair]]
    carried: list[tuple[str, torch.Tensor]]


def _build(
    model: nn.Module,
    example: torch.Tensor,
    *,
    memory_format: torch.memory_format,
    rtol: float,
    fuse: bool,
) -> _Built:
    from cnnlab.models.fuse import fuse_conv_activations_

    # built and checked in the weights' own precision even when called under autocast (a
    # bf16-mixed run's feature pass): bf16 rounding would otherwise fail the check
    with torch.autocast(example.device.type, enabled=False):
        fast = frozen_eval_copy(model, memory_format)
        # the copy's tensors by their names in `model` (a deep copy's names are the original's);
        # held until the copy is finished, so no tensor dropped by folding can lend its id to a
        # new one
        before = [*fast.named_parameters(), *fast.named_buffers()]
        example = example.contiguous(memory_format=memory_format)
        # the probe that finds the conv + BatchNorm pairs also gives the outputs to check against
        found, expected = probe_followers(fast, example, _foldable_norm)
        if not bool(torch.isfinite(expected).all()):
            raise NonFiniteOutputs(f"{type(model).__name__}'s outputs are not finite")
        pairs = [FoldPair(conv, norm) for conv, norm in found]
        folds = [(fast.get_submodule(pair.conv), pair) for pair in pairs]
        fold_pairs_(fast, pairs)
        fused = fuse and fuse_conv_activations_(fast, example) > 0
        try:
            with torch.inference_mode():
                got = fast(example)
        except RuntimeError:
            if not fused:
                raise
            return _build(model, example, memory_format=memory_format, rtol=rtol, fuse=False)
        err = (got - expected).abs().max().item()
        bound = rtol * max(1.0, expected.abs().max().item())
        if not err <= bound:
            if fused:  # never a wrong copy: folded only, slower, and said (a bug to report)
                import warnings

                warnings.warn(
                    f"fusing convolutions with their activations changed {type(model).__name__}'s "
                    f"outputs by {err:.3g} (> {bound:.3g}); running it without fusion",
                    stacklevel=2,
                )
                return _build(model, example, memory_format=memory_format, rtol=rtol, fuse=False)
            raise FoldError(
                f"folding BatchNorm changed {type(model).__name__}'s outputs by {err:.3g} "
                f"(> {bound:.3g}); use the model unfolded and report this"
            )
        kept = {id(t) for t in (*fast.parameters(), *fast.buffers())}
        carried = [(name, t) for name, t in before if id(t) in kept]
        return _Built(fast, folds, carried)


class LiveInferenceCopy:
    """The inference copy of a model that goes on training: `refresh()` rewrites the copy's
    numbers from the model's current weights and BatchNorm statistics, in place (folding
    again where BatchNorm was folded), without the deep copy, probe runs and check of a new
    build. Its outputs are then those of a copy built afresh, bitwise.

    Validation during training runs through it (engine/module.py): a refresh costs a few
    percent of one validation batch for EfficientNet-Lite0 and MobileNetV3, where the copy's
    batches take 0.74-0.77x the model's own eval forward (alternating rounds on 2 AMD EPYC
    vCPUs, benchmarks/bench_validation.py).

        live = LiveInferenceCopy.build(model, x[:1], memory_format=torch.channels_last)
        live.refresh()  # after training steps
        logits = live.module(x)
    """

    def __init__(self, model: nn.Module, built: _Built) -> None:
        self.source = model
        self.module = built.module
        self.folds = built.folds
        self.carried = built.carried

    @classmethod
    def build(
        cls, model: nn.Module, example: torch.Tensor, *, memory_format: torch.memory_format
    ) -> LiveInferenceCopy:
        """`inference_copy(model, example, memory_format=...)`, kept refreshable."""
        return cls(
            model, _build(model, example, memory_format=memory_format, rtol=CHECK_RTOL, fuse=True)
        )

    # a copy built inside inference mode (the engine's first validation) holds inference
    # tensors, which only take in-place writes inside it; ordinary tensors take them there too
    @torch.inference_mode()
    def refresh(self) -> None:
        tensors = dict(self.source.named_parameters())
        tensors.update(self.source.named_buffers())
        for name, t in self.carried:
            t.copy_(tensors[name])
        for conv, pair in self.folds:
            weight, bias = fold_values(
                self.source.get_submodule(pair.conv), self.source.get_submodule(pair.norm)
            )
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)


def fast_eval_copy(
    model: nn.Module, example: torch.Tensor, *, memory_format: torch.memory_format
) -> nn.Module:
    """`inference_copy`, or, should folding ever fail its check, the unfolded eval copy (slower,
    never wrong) with a warning; for a model whose outputs are not finite the unfolded copy
    without one (NaN either way, and no bug to report)."""
    import warnings

    try:
        return inference_copy(model, example, memory_format=memory_format)
    except NonFiniteOutputs:
        pass
    except FoldError as e:
        warnings.warn(f"{e}; running unfolded", stacklevel=2)
    return frozen_eval_copy(model, memory_format)


def frozen_eval_copy(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """A deep copy of `model` in eval mode and `memory_format`, with no gradients."""
    fast = copy.deepcopy(model).eval().to(memory_format=memory_format)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast
