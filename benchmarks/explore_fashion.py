"""Plain-loop exploration of FLOP-cheap Fashion-MNIST CNNs with cnnlab's recipe.

Each argument is one run as JSON (spec, epochs, and optionally lr, batch, flip, ls, dropout,
seed, shift); every epoch prints a JSON line with the training TFLOP so far and the test
accuracy. The recipe is the engine's: SGD + Nesterov, one-cycle (engine/schedules.py), weight
decay on weights only, training-split mean/std.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/explore_fashion.py \
        '{"spec": "c32,p,d64,d64,p,d128,d128", "epochs": 4, "batch": 64, "flip": false}'
"""
# ruff: noqa: E402  (the allocator is tuned before torch allocates anything)

import json
import math
import sys
import time

from cnnlab.runtime import tune_process

tune_process()
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(2)
torch.set_flush_denormal(True)
from cnnlab.data.builtin import stratified_split
from cnnlab.data.fashion_mnist import load_fashion_mnist
from cnnlab.engine.flops import train_flops_per_image
from cnnlab.engine.schedules import onecycle_factor
from cnnlab.models.base import CnnClassifier


def build(spec, dropout=0.1):
    layers, c = [], 1
    for tok in spec.split(","):
        if tok == "p":
            layers.append(nn.MaxPool2d(2))
            continue
        kind, w = tok[0], int(tok[1:].split("s")[0])
        s = 2 if "s" in tok else 1
        if kind == "c":
            layers += [
                nn.Conv2d(c, w, 3, s, 1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
        elif kind == "k":  # 5x5
            layers += [
                nn.Conv2d(c, w, 5, s, 2, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
        elif kind == "d":  # depthwise separable
            layers += [
                nn.Conv2d(c, c, 3, s, 1, groups=c, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, w, 1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
        c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return CnnClassifier(nn.Sequential(*layers), c, 10, dropout)


imgs, labels = load_fashion_mnist("train")
timgs, tlabels = load_fashion_mnist("test")
tr, va = stratified_split(labels, 0.1, 0)
X = torch.from_numpy(imgs[tr]).float().div_(255)
mean, std = X.mean().item(), X.std().item()
X = ((X - mean) / std).unsqueeze(1)
Y = torch.from_numpy(labels[tr].astype(np.int64))
XT = ((torch.from_numpy(timgs).float().div_(255) - mean) / std).unsqueeze(1)
YT = torch.from_numpy(tlabels.astype(np.int64))


def test_accuracy(model, tta=False):
    model.eval()
    with torch.inference_mode():
        preds = []
        for j in range(0, len(XT), 1000):
            x = XT[j : j + 1000].contiguous(memory_format=torch.channels_last)
            logits = model(x).softmax(1)
            if tta:  # the mirror image's probabilities averaged in
                logits = logits + model(x.flip(3)).softmax(1)
            preds.append(logits.argmax(1))
    return round((torch.cat(preds) == YT).float().mean().item(), 4)


def run(
    spec,
    epochs,
    lr=0.1,
    batch=128,
    flip=True,
    wd=5e-4,
    ls=0.0,
    dropout=0.1,
    seed=0,
    shift=0,
    ema=0.0,
):
    torch.manual_seed(seed)
    m = build(spec, dropout).to(memory_format=torch.channels_last)
    averaged = None
    if ema:  # weights and BatchNorm statistics averaged every step
        averaged = torch.optim.swa_utils.AveragedModel(
            m, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema), use_buffers=True
        )
    fl = train_flops_per_image(m, (1, 28, 28))
    decay = [p for p in m.parameters() if p.ndim > 1]
    nod = [p for p in m.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": wd}, {"params": nod, "weight_decay": 0}],
        lr=lr,
        momentum=0.9,
        nesterov=True,
    )
    n = len(X)
    spe = math.ceil(n / batch)
    total = spe * epochs
    step = 0
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    accs = []
    for ep in range(epochs):
        m.train()
        perm = torch.randperm(n, generator=g)
        for i in range(spe):
            idx = perm[i * batch : (i + 1) * batch]
            x = X[idx]
            y = Y[idx]
            if flip:
                f = torch.rand(len(idx), generator=g) < 0.5
                x = torch.where(f.view(-1, 1, 1, 1), x.flip(3), x)
            if shift:
                xp = F.pad(x, (shift,) * 4, value=(0 - mean) / std)
                dy, dx = torch.randint(0, 2 * shift + 1, (2,), generator=g).tolist()
                x = xp[:, :, dy : dy + 28, dx : dx + 28]
            for gr in opt.param_groups:
                gr["lr"] = lr * onecycle_factor(step, total)
            x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(m(x), y, label_smoothing=ls)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if averaged is not None:
                averaged.update_parameters(m)
            step += 1
        el = time.perf_counter() - t0
        accs.append(test_accuracy(m))
        extra = {"test_flip_tta": test_accuracy(m, tta=True)}
        if averaged is not None:
            extra["test_ema"] = test_accuracy(averaged.module)
            extra["test_ema_flip_tta"] = test_accuracy(averaged.module, tta=True)
        t0 = time.perf_counter()  # the next epoch starts after the evaluation
        print(
            json.dumps(
                dict(
                    spec=spec,
                    ep=ep + 1,
                    of=epochs,
                    lr=lr,
                    batch=batch,
                    flip=flip,
                    ls=ls,
                    shift=shift,
                    mflop=round(fl / 1e6, 2),
                    tflop=round(fl * n * (ep + 1) / 1e12, 2),
                    test=accs[-1],
                    **extra,
                    s=round(el, 1),
                    img_s=round(n / el),
                )
            ),
            flush=True,
        )
    return accs


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        kw = json.loads(arg)
        run(**kw)
