"""TF "SAME" padding for EfficientNet-Lite0's stride-2 convs: pad + conv vs a shifted kernel.

For each of Lite0's five stride-2 convs at 224 px (batch 32): timm's way (F.pad, then the conv)
against padding symmetrically with one leading zero row/column in the kernel
(cnnlab.models.same_padding), NCHW and channels_last; outputs are checked equal first.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_same_padding.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import best_seconds, cpu_model


def main() -> None:
    from cnnlab.models import create_model
    from cnnlab.models.same_padding import TfSameConv2d, same_pads
    from cnnlab.runtime import tune_process

    tune_process()
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    model = create_model("efficientnet_lite0", num_classes=2).eval()
    shapes: dict[TfSameConv2d, torch.Size] = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o: shapes.__setitem__(m, i[0].shape))
        for m in model.modules()
        if isinstance(m, TfSameConv2d)
    ]
    with torch.no_grad():
        model(torch.randn(32, 3, 224, 224))
    for h in hooks:
        h.remove()
    print(f"CPU: {cpu_model()}; 2 threads; best of 3\n")
    print(
        "| input (N, C, H, W) | kernel | groups | format | pad + conv ms | shifted kernel ms | ratio |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    for conv, shape in shapes.items():
        k, s = conv.kernel_size[0], conv.stride[0]
        before, after = same_pads(shape[-1], k, s)
        w = conv.weight.detach()
        shifted = F.pad(w, (after - before, 0, after - before, 0))
        for name, fmt in (
            ("NCHW", torch.contiguous_format),
            ("channels_last", torch.channels_last),
        ):
            x = torch.randn(shape).contiguous(memory_format=fmt)
            wf, sf = w.contiguous(memory_format=fmt), shifted.contiguous(memory_format=fmt)
            g = conv.groups

            def padded(x=x, wf=wf, g=g, s=s, b=before, a=after):
                return F.conv2d(F.pad(x, (b, a, b, a)), wf, None, s, 0, 1, g)

            def shift(x=x, sf=sf, g=g, s=s, a=after):
                return F.conv2d(x, sf, None, s, a, 1, g)

            with torch.inference_mode():
                torch.testing.assert_close(shift(), padded(), rtol=0, atol=1e-4)
                t_pad, t_shift = best_seconds(padded), best_seconds(shift)
            print(
                f"| {tuple(shape)} | {k} | {g} | {name} | {t_pad * 1e3:.1f} | {t_shift * 1e3:.1f} "
                f"| {t_pad / t_shift:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
