"""What the engine adds to each training step and epoch, piece by piece, against the step itself.

Each piece is timed on its own, on the tensors a real step produces (the model's parameters and
gradients, a batch of logits), and set against one plain training step of the same model and
batch measured in the same run:

  seed_step        re-seeding torch's RNG from (seed, step, rank)  (module.on_train_batch_start)
  metrics          torchmetrics Accuracy + MeanMetric updates       (module.training_step)
  finite check     bool(torch.isfinite(loss))                       (module.training_step)
  grad norms       per-parameter norms, stacked and accumulated     (RunRecorder, every step)
  checkpoint       last.ckpt (weights + optimizer state), written + fsync'd, per epoch
                   (plus best.ckpt and model.safetensors when the score improves)

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/engine_overhead.py
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import cpu_model

WORKLOADS = {  # model, channels, size, batch
    "smallcnn": ("smallcnn", 1, 28, 128),
    "resnet18@64": ("resnet18", 3, 64, 32),
    "resnet50@64": ("resnet50", 3, 64, 16),
    "vgg16@64": ("vgg16", 3, 64, 8),
    "lite0@224": ("efficientnet_lite0", 3, 224, 16),
}


def per_call_us(fn: Callable[[], object], n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def measure(label: str, name: str, c: int, s: int, batch: int) -> str:
    import torchmetrics

    from cnnlab.engine.seeding import seed_step
    from cnnlab.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=c, input_size=s)
    model = model.to(memory_format=torch.channels_last).train()
    x = torch.randn(batch, c, s, s).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    def step() -> torch.Tensor:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step_us = per_call_us(step, 20 if name == "smallcnn" else 4)
    logits, loss = model(x).detach(), step().detach()
    acc = torchmetrics.Accuracy(task="multiclass", num_classes=10, validate_args=False)
    mean = torchmetrics.MeanMetric()
    acc_sq = torch.zeros(sum(1 for _ in model.parameters()))

    def norms() -> None:  # RunRecorder.on_before_optimizer_step
        named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
        _, gs = zip(*named, strict=True)
        acc_sq.add_(torch.stack(torch._foreach_norm(gs)).float().pow(2))

    def metrics() -> None:  # ClassifierModule.training_step
        mean.update(loss, weight=batch)
        acc.update(logits, y)

    seed = per_call_us(lambda: seed_step(0, 1234, 0), 200)
    met = per_call_us(metrics, 200)
    fin = per_call_us(lambda: bool(torch.isfinite(loss)), 500)
    gn = per_call_us(norms, 50)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "last.ckpt")

        def save() -> None:
            state = {"state_dict": model.state_dict(), "optimizer": opt.state_dict()}
            with open(path, "wb") as fh:
                torch.save(state, fh)
                fh.flush()
                os.fsync(fh.fileno())

        ckpt_s = per_call_us(save, 2) / 1e6
    per_step = seed + met + fin + gn
    steps = -(-54_000 // batch)
    epoch_s = steps * step_us / 1e6
    return (
        f"| {label} | {step_us / 1e3:.1f} | {seed:.0f} | {met:.0f} | {fin:.0f} | {gn:.0f} "
        f"| {100 * per_step / step_us:.2f}% | {ckpt_s:.2f} | {steps} | {100 * ckpt_s / epoch_s:.2f}% |"
    )


def main() -> None:
    from cnnlab.runtime import tune_process

    tune_process()
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, 2 threads\n")
    print("| workload | plain step ms | seed_step us | metrics us | finite us | grad norms us "
          "| per-step total % | checkpoint per epoch s | steps/epoch at 54k imgs | ckpt % of epoch |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, spec in WORKLOADS.items():
        print(measure(label, *spec), flush=True)


if __name__ == "__main__":
    main()
