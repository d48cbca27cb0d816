"""cnnlab's engine vs a plain PyTorch loop, side by side, per workload; `make bench` runs it.

For each workload both loops get the same model (a copy of the same initial weights), the same
dataset and DataLoader settings, batch size and thread count, and run interleaved in this one
process (engine, plain, engine, plain, ...); the table gives the best time of each and the
ratio plain / engine (above 1: the engine is faster), and for the training workloads also the
ratio of the median epochs (every epoch but each run's first, over all repeats): on a shared
machine one lucky quiet epoch decides a best-of, while the median needs most of them. The
training workloads also run the plain loop as a twin inside the engine's own fit (one plain
step before each engine step, both memory formats; `PlainTwin`): the "step-interleaved" rows,
the measure that this machine's drift cannot bias. GFLOP/s are counted with FlopCounterMode
(cnnlab.engine.flops) and set against a matmul and a conv peak measured in the same run.

    flock /tmp/cnnlab-cpu.lock .venv/bin/python benchmarks/bench_engine.py            # all
    .venv/bin/python benchmarks/bench_engine.py --only smallcnn lite0-frozen --repeat 2
    .venv/bin/python benchmarks/bench_engine.py --only resnet18 --repeat 2 --epochs 4

Workloads (train: epochs of train + validation, as `fit` runs them; the engine's whole `fit`
call also includes its Trainer set-up and checkpoint writes, reported separately):
  smallcnn       Fashion-MNIST 28 px, batch 128, 2 epochs of 2,560 train + 640 val images
  lightning-floor  smallcnn's training steps in a bare LightningModule (no cnnlab code) vs
                 the same plain twin: what Lightning's loop costs by itself
  resnet18/50    64 px synthetic images (random, in memory), batch 32/16
  vgg16          64 px synthetic, batch 8
  lite0-frozen   EfficientNet-Lite0 224 px, ImageNet weights, frozen backbone, no augmentation:
                 the engine's first epoch (the feature pass over train + val) vs a plain
                 inference loop over the same photos, NCHW and channels_last, and vs
                 cnnlab's inference encoder (folded BatchNorm, engine/feature_cache.py)
  lite0-finetune all layers trained, light augmentation, batch 16
  lite0-eval     `predict_logits` (what `cnnlab evaluate` runs) vs a plain inference loop
  lite0-predict  `cnnlab.predict` (batched) and the old per-image loop on image files, vs one
                 batched plain loop over the same files
Photos: ../shared/datasets/hymenoptera when present, else generated JPEGs (the same for both
loops either way).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from common import cpu_model, measure_peaks, print_table_head, setup_cpu
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

HERE = Path(__file__).resolve().parent
# shared/ sits beside the main checkout (../shared) or beside the worktrees folder (../../shared)
HYMENOPTERA = next(
    (p / "shared/datasets/hymenoptera" for p in HERE.parents[1:3] if (p / "shared").is_dir()),
    HERE.parents[1] / "shared/datasets/hymenoptera",
)


# ---------------------------------------------------------------------------------------------
# the engine, isolated: the one place that knows fit's signature


def engine_fit(cfg, bundle, model, run_dir: Path, callbacks=()) -> list[dict]:
    """cnnlab's training engine as `cnnlab train` calls it; returns metrics.csv's rows.
    `callbacks`: extra Lightning callbacks (the step-interleaved plain twins)."""
    from cnnlab.engine.trainer import fit
    from cnnlab.export import export_model
    from cnnlab.plan import make_plan

    build = {"name": cfg.model.name, "num_classes": len(bundle.classes)}

    def export_best(module, epoch: int) -> None:
        export_model(
            module.model, run_dir, classes=bundle.classes, preprocess=bundle.preprocess,
            build=build, extra={"epoch": epoch},
        )  # fmt: skip

    plan = make_plan(cfg, run_dir)
    result = fit(
        plan, bundle, model, export_best=export_best, log=lambda s: None, callbacks=callbacks
    )
    return result.history


# ---------------------------------------------------------------------------------------------
# data


class SyntheticImages(Dataset):
    """n random normalised images (C, S, S) in memory with labels: a data set with no I/O."""

    def __init__(self, n: int, c: int, s: int, classes: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, c, s, s, generator=g)
        self.targets = torch.randint(0, classes, (n,), generator=g).tolist()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.targets[i]


def _subset(ds: Dataset, n: int) -> Dataset:
    sub = Subset(ds, range(min(n, len(ds))))
    sub.targets = [ds.targets[i] for i in sub.indices]  # type: ignore[attr-defined]
    return sub


def fashion_bundle(n_train: int, n_val: int):
    from cnnlab.config import Config
    from cnnlab.data.build import build_data
    from cnnlab.plan import InputPlan

    cfg = Config()
    bundle = build_data(cfg, InputPlan(None, 28, 1), log=lambda s: None)
    return dataclasses.replace(
        bundle, train=_subset(bundle.train, n_train), val=_subset(bundle.val, n_val)
    )


def synthetic_bundle(n_train: int, n_val: int, c: int, s: int, classes: int = 10):
    from cnnlab.data.bundle import DataBundle
    from cnnlab.models.spec import PreprocessSpec

    spec = PreprocessSpec(input_size=(c, s, s), mean=(0.0,) * c, std=(1.0,) * c)
    return DataBundle(
        classes=[str(i) for i in range(classes)],
        train=SyntheticImages(n_train, c, s, classes, seed=0),
        val=SyntheticImages(n_val, c, s, classes, seed=1),
        test=None, preprocess=spec, class_counts={}, source={"dataset": "synthetic"},
    )  # fmt: skip


def photo_folder() -> Path:
    if HYMENOPTERA.is_dir():
        return HYMENOPTERA
    from bench_folder import generate

    root = Path(tempfile.mkdtemp(prefix="cnnlab-bench-photos-"))
    generate(root / "train", n=240)
    generate(root / "val", n=160, seed=1)
    return root


def photo_bundle(cfg, augment: str, n_train: int | None = None, n_val: int | None = None):
    from cnnlab.data.build import build_data
    from cnnlab.models import get_model_info
    from cnnlab.plan import InputPlan

    cfg.data.path, cfg.data.dataset, cfg.data.augment = str(photo_folder()), "folder", augment
    spec = get_model_info(cfg.model.name).weights.preprocess
    bundle = build_data(cfg, InputPlan(spec, 224, 3), log=lambda s: None)
    if n_train:
        bundle = dataclasses.replace(bundle, train=_subset(bundle.train, n_train))
    if n_val:
        bundle = dataclasses.replace(bundle, val=_subset(bundle.val, n_val))
    return bundle


# ---------------------------------------------------------------------------------------------
# plain PyTorch loops: what a reader would write by hand


class PlainTwin:
    """The plain loop a reader writes, one step at a time. Run by a callback inside the engine's
    own fit (`twin_callback`), or on its own by `plain_train`. Inside the fit: before
    each engine step the twin takes one step of its own (its own model copy, optimizer, shuffled
    loader, memory format), and before the engine's validation it runs its own validation pass.
    Both loops then see the machine in the same state within milliseconds of each other, which
    whole-run interleaving on a shared machine cannot promise. Its seconds are timed here and
    taken out of the engine's epoch clock, which runs around them."""

    def __init__(self, model, bundle, cfg, channels_last: bool) -> None:
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.fmt)
        self.transform = bundle.batch_transform or nn.Identity()
        self.train = DataLoader(bundle.train, batch_size=cfg.data.batch_size, shuffle=True)
        self.val = DataLoader(bundle.val, batch_size=cfg.data.batch_size)
        self.lr = cfg.optim.lr
        self.opt = self.optimizer([p for p in model.parameters() if p.requires_grad])
        self._batches = iter(())
        self.epoch_s: list[float] = []  # the twin's seconds within each engine epoch

    def step(self) -> None:
        start = time.perf_counter()
        try:
            x, y = next(self._batches)
        except StopIteration:
            self._batches = iter(self.train)
            x, y = next(self._batches)
        self.model.train()
        loss = self.loss(self.model, x, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.epoch_s[-1] += time.perf_counter() - start

    def optimizer(self, params) -> torch.optim.Optimizer:
        """The plain loop's optimizer: SGD with Nesterov momentum, as a reader writes it."""
        return torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The plain loop's training loss of a batch (transformed, in the twin's format)."""
        return F.cross_entropy(model(self.transform(x).contiguous(memory_format=self.fmt)), y)

    def validate(self) -> None:
        start = time.perf_counter()
        self.model.eval()
        with torch.inference_mode():
            for x, _y in self.val:
                self.model(self.transform(x).contiguous(memory_format=self.fmt))
        self.epoch_s[-1] += time.perf_counter() - start


def plain_train(model, bundle, cfg, epochs: int, channels_last: bool) -> list[float]:
    """Seconds per epoch (train + validation), same optimizer family and batch as the engine:
    the twin's steps, run on their own."""
    torch.set_flush_denormal(True)  # as the engine's fit does (it turns it off on its way out)
    twin = PlainTwin(model, bundle, cfg, channels_last)
    for _ in range(epochs):
        twin.epoch_s.append(0.0)
        for _ in range(len(twin.train)):
            twin.step()
        twin.validate()
    return twin.epoch_s


def twin_callback(twins: list[PlainTwin]):
    import lightning as L

    class Twins(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            for twin in twins:
                twin.epoch_s.append(0.0)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            for twin in twins:
                twin.step()

        def on_validation_start(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking:
                for twin in twins:
                    twin.validate()

    return Twins()


def plain_inference(fn: Callable[[torch.Tensor], torch.Tensor], datasets, batch: int, transform):
    """Seconds for one inference pass of `fn` over the datasets (in order, batched)."""
    torch.set_flush_denormal(True)  # as the engine's fit does (it turns it off on its way out)
    start = time.perf_counter()
    with torch.inference_mode():
        for ds in datasets:
            for x, *_ in DataLoader(ds, batch_size=batch):
                fn(transform(x))
    return time.perf_counter() - start


def eval_module(model: nn.Module, channels_last: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m = copy.deepcopy(model).eval().to(memory_format=fmt)
    return lambda x: m(x.contiguous(memory_format=fmt))


# ---------------------------------------------------------------------------------------------
# workloads


@dataclass
class Row:
    workload: str
    engine_s: float
    plain_s: float
    images: int
    flops: float  # per pass over `images`
    note: str = ""

    def cells(self, peaks: dict[str, float]) -> str:
        ratio = self.plain_s / self.engine_s
        ge, gp = self.flops / self.engine_s / 1e9, self.flops / self.plain_s / 1e9
        return (
            f"| {self.workload} | {self.images / self.engine_s:,.1f} | {self.images / self.plain_s:,.1f} "
            f"| **{ratio:.2f}x** | {ge:,.1f} | {gp:,.1f} | {100 * ge / peaks['conv']:.0f}% | {self.note} |"
        )


def _config(model: str, batch: int, epochs: int, **model_kw):
    from cnnlab.config import Config

    cfg = Config()
    cfg.model.name, cfg.data.batch_size, cfg.train.epochs = model, batch, epochs
    cfg.train.threads, cfg.train.seed = torch.get_num_threads(), 0
    for k, v in model_kw.items():
        setattr(cfg.model, k, v)
    return cfg


def train_workload(name, cfg, bundle, make_model, repeat: int, flops_train, flops_val) -> list:
    """Engine fit vs plain loop, `cfg.train.epochs` epochs each, interleaved `repeat` times."""
    initial = make_model()
    engine_epoch, engine_total, plain_epoch = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            history = engine_fit(cfg, bundle, copy.deepcopy(initial), Path(tmp))
            engine_total.append(time.perf_counter() - start)
        engine_epoch += [h["epoch_time_s"] for h in history[1:] or history]
        times = plain_train(copy.deepcopy(initial), bundle, cfg, cfg.train.epochs, True)
        plain_epoch += times[1:] or times
    # step-interleaved: plain twins in both memory formats inside one engine fit per repeat
    engine_in, twin_cl, twin_nchw = [], [], []
    for _ in range(repeat):
        twins = [PlainTwin(copy.deepcopy(initial), bundle, cfg, cl) for cl in (True, False)]
        with tempfile.TemporaryDirectory() as tmp:
            history = engine_fit(
                cfg, bundle, copy.deepcopy(initial), Path(tmp), [twin_callback(twins)]
            )
        times = [h["epoch_time_s"] - twins[0].epoch_s[i] - twins[1].epoch_s[i]
                 for i, h in enumerate(history)]  # fmt: skip
        engine_in += times[1:] or times
        twin_cl += twins[0].epoch_s[1:] or twins[0].epoch_s
        twin_nchw += twins[1].epoch_s[1:] or twins[1].epoch_s
    n_train, n_val = len(bundle.train), len(bundle.val)
    flops = flops_train * n_train + flops_val * n_val
    epochs = cfg.train.epochs
    k = len(engine_epoch)
    med = statistics.median
    fmt = "channels_last" if cfg.model.channels_last else "NCHW"
    interleaved = [
        Row(f"{name}: epoch, step-interleaved, median of {len(engine_in)}", med(engine_in),
            med(twin_cl), n_train, flops, f"engine ({fmt}) vs plain channels_last, step by step"),
        Row(f"{name}: epoch, step-interleaved, vs plain NCHW", med(engine_in), med(twin_nchw),
            n_train, flops, f"the same fits: plain NCHW {med(twin_cl) / med(twin_nchw):.2f}x "
            "plain channels_last"),
    ]  # fmt: skip
    return interleaved + [
        Row(f"{name}: epoch (train + val)", min(engine_epoch), min(plain_epoch), n_train, flops,
            f"{n_train} train + {n_val} val images, batch {cfg.data.batch_size}"),
        Row(f"{name}: epoch, median of {k}", statistics.median(engine_epoch),
            statistics.median(plain_epoch), n_train, flops, "every epoch but each run's first"),
        Row(f"{name}: whole fit() ({epochs} epochs)", min(engine_total), epochs * min(plain_epoch),
            epochs * n_train, epochs * flops, "engine incl. Trainer set-up and checkpoints"),
    ]  # fmt: skip


def bare_lightning_fit(cfg, bundle, model, twin: PlainTwin) -> list[float]:
    """Seconds per epoch of Lightning's own loop with nothing of cnnlab's in it: a
    LightningModule that only runs the twin's step (forward, cross-entropy, the same SGD),
    Lightning's defaults without checkpoints, logging, progress bar or validation, and `twin`
    stepping before each of its steps (taken out of the clock, as for the engine)."""
    import lightning as L

    epoch_s: list[float] = []

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model.to(memory_format=twin.fmt)

        def training_step(self, batch, batch_idx):
            return twin.loss(self.model, *batch)

        def configure_optimizers(self):
            return twin.optimizer(self.parameters())

        def train_dataloader(self):
            return DataLoader(bundle.train, batch_size=cfg.data.batch_size, shuffle=True)

    class Clock(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            epoch_s.append(time.perf_counter() - self.start - twin.epoch_s[-1])

    trainer = L.Trainer(
        max_epochs=cfg.train.epochs, accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=[twin_callback([twin]), Clock()],
    )  # fmt: skip
    torch.set_flush_denormal(True)
    trainer.fit(Bare())
    return epoch_s


def run_lightning_floor(repeat: int, epochs: int) -> list[Row]:
    """smallcnn's steps in a bare LightningModule against the same plain twin: what Lightning's
    loop costs by itself, the floor under cnnlab's engine (which is built on it)."""
    from cnnlab.engine.flops import train_flops_per_image
    from cnnlab.models import create_model

    cfg = _config("smallcnn", 128, epochs=epochs)
    bundle = fashion_bundle(2560, 640)
    torch.manual_seed(0)
    initial = create_model("smallcnn", num_classes=10, in_chans=1, input_size=28)
    bare, plain = [], []
    for _ in range(repeat):
        twin = PlainTwin(copy.deepcopy(initial), bundle, cfg, channels_last=True)
        times = bare_lightning_fit(cfg, bundle, copy.deepcopy(initial), twin)
        bare += times[1:] or times
        plain += twin.epoch_s[1:] or twin.epoch_s
    n = len(bundle.train)
    flops = train_flops_per_image(initial, (1, 28, 28)) * n
    med = statistics.median
    return [
        Row(f"smallcnn: bare Lightning loop, step-interleaved, median of {len(bare)}", med(bare),
            med(plain), n, flops, "a LightningModule with no cnnlab code (training steps only) "
            "vs the plain channels_last twin: the floor of Lightning's own loop"),
    ]  # fmt: skip


def run_train(name: str, repeat: int, epochs: int) -> list[Row]:
    from cnnlab.engine.flops import forward_flops_per_image, train_flops_per_image
    from cnnlab.models import create_model

    spec = {  # model, channels, size, batch, train images, val images
        "smallcnn": ("smallcnn", 1, 28, 128, 2560, 640),
        "resnet18": ("resnet18", 3, 64, 32, 320, 96),
        "resnet50": ("resnet50", 3, 64, 16, 160, 48),
        "vgg16": ("vgg16", 3, 64, 8, 80, 24),
    }[name]
    model_name, c, s, batch, n_train, n_val = spec
    cfg = _config(model_name, batch, epochs=epochs)
    if name == "smallcnn":
        bundle = fashion_bundle(n_train, n_val)
    else:
        bundle = synthetic_bundle(n_train, n_val, c, s)
        cfg.optim.lr = 0.01

    def make():
        torch.manual_seed(0)
        return create_model(model_name, num_classes=10, in_chans=c, input_size=s)

    probe = make()
    ft, fv = train_flops_per_image(probe, (c, s, s)), forward_flops_per_image(probe, (c, s, s))
    return train_workload(name, cfg, bundle, make, repeat, ft, fv)


def _lite0(pretrained: bool = True):
    from cnnlab.models import create_model

    torch.manual_seed(0)
    return create_model("efficientnet_lite0", num_classes=2, pretrained=pretrained)


def run_lite0_frozen(repeat: int) -> list[Row]:
    from cnnlab.engine.feature_cache import inference_encoder
    from cnnlab.engine.flops import forward_flops_per_image

    cfg = _config("efficientnet_lite0", 32, 1, pretrained=True, freeze_backbone=True)
    cfg.optim.optimizer, cfg.optim.lr = "adamw", 3e-3
    bundle = photo_bundle(cfg, augment="none")
    model = _lite0()
    sets, transform = (bundle.train, bundle.val), bundle.batch_transform
    n = len(bundle.train) + len(bundle.val)
    flops = forward_flops_per_image(model.backbone, (3, 224, 224)) * n
    t = {"engine": [], "nchw": [], "cl": [], "enc32": [], "enc64": [], "enc128": [], "enc_nchw": []}
    backbone_nchw, backbone_cl = (
        eval_module(model.backbone, False),
        eval_module(model.backbone, True),
    )
    example = torch.randn(2, 3, 224, 224)
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            history = engine_fit(cfg, bundle, copy.deepcopy(model), Path(tmp))
        t["engine"].append(history[0]["epoch_time_s"])
        t["nchw"].append(plain_inference(backbone_nchw, sets, 32, transform))
        t["cl"].append(plain_inference(backbone_cl, sets, 32, transform))
        # what the frozen pass becomes with the inference encoder (folded, per format)
        enc = inference_encoder(model.backbone, example, channels_last=True)
        t["enc32"].append(plain_inference(enc, sets, 32, transform))
        t["enc64"].append(plain_inference(enc, sets, 64, transform))
        t["enc128"].append(plain_inference(enc, sets, 128, transform))
        enc_nchw = inference_encoder(model.backbone, example, channels_last=False)
        t["enc_nchw"].append(plain_inference(enc_nchw, sets, 32, transform))
    best_plain = min(min(t["nchw"]), min(t["cl"]))
    note = f"{n} photos, batch 32; plain NCHW {n / min(t['nchw']):.1f} img/s, channels_last {n / min(t['cl']):.1f}"
    # each repeat's engine epoch against the better plain loop of the same repeat (seconds apart)
    paired = [min(a, b) / e for e, a, b in zip(t["engine"], t["nchw"], t["cl"], strict=True)]
    return [
        Row("Lite0 frozen feature pass: engine epoch 1", min(t["engine"]), best_plain, n, flops, note),
        Row(f"Lite0 frozen feature pass: engine epoch 1, median of {repeat} paired ratios",
            best_plain / statistics.median(paired), best_plain, n, flops,
            "ratio = the median; engine img/s = best plain / it; per repeat: "
            + ", ".join(f"{r:.2f}" for r in paired)),
        Row("Lite0 frozen: inference encoder (folded BN, fused conv + activation), channels_last, batch 32",
            min(t["enc32"]), best_plain, n, flops, "the pass the engine runs, timed alone"),
        Row("Lite0 frozen: inference encoder, channels_last, batch 64",
            min(t["enc64"]), best_plain, n, flops, ""),
        Row("Lite0 frozen: inference encoder, channels_last, batch 128",
            min(t["enc128"]), best_plain, n, flops, ""),
        Row("Lite0 frozen: inference encoder, NCHW, batch 32",
            min(t["enc_nchw"]), best_plain, n, flops, ""),
    ]  # fmt: skip


def run_lite0_finetune(repeat: int, epochs: int) -> list[Row]:
    from cnnlab.engine.flops import forward_flops_per_image, train_flops_per_image

    cfg = _config("efficientnet_lite0", 16, epochs, pretrained=True)
    cfg.optim.lr = 0.01
    bundle = photo_bundle(cfg, augment="light", n_train=128, n_val=64)
    model = _lite0()
    ft = train_flops_per_image(model, (3, 224, 224))
    fv = forward_flops_per_image(model, (3, 224, 224))
    return train_workload("Lite0 fine-tune", cfg, bundle, lambda: model, repeat, ft, fv)


def run_lite0_eval(repeat: int) -> list[Row]:
    from cnnlab.engine.flops import forward_flops_per_image
    from cnnlab.evaluation.inference import predict_logits

    cfg = _config("efficientnet_lite0", 32, 1, pretrained=True)
    bundle = photo_bundle(cfg, augment="none")
    model = _lite0()
    n, flops = len(bundle.val), forward_flops_per_image(model, (3, 224, 224)) * len(bundle.val)
    plain = eval_module(model, True)
    engine_t, plain_t = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        predict_logits(model, bundle.val, batch_size=256, batch_transform=bundle.batch_transform)
        engine_t.append(time.perf_counter() - start)
        plain_t.append(plain_inference(plain, [bundle.val], 32, bundle.batch_transform))
    note = f"{n} photos; engine batch 256 (api.evaluate's), plain channels_last batch 32"
    return [Row("Lite0 evaluate (predict_logits)", min(engine_t), min(plain_t), n, flops, note)]


def run_lite0_predict(repeat: int) -> list[Row]:
    """`cnnlab.predict` (batched: decoding in threads, batches of 32 on the folded inference
    copy) and the per-image loop it replaced (the old `api.predict`, kept here as it was), each
    against one batched plain loop over the same files, interleaved in one process."""
    import cnnlab
    from cnnlab.data.folder import load_for_predict
    from cnnlab.engine.flops import forward_flops_per_image
    from cnnlab.evaluation.evaluate import load_best
    from cnnlab.evaluation.inference import softmax
    from cnnlab.export import export_model

    model = _lite0()
    files = sorted((photo_folder() / "val").rglob("*.jpg"))
    flops = forward_flops_per_image(model, (3, 224, 224)) * len(files)
    plain = eval_module(model, True)
    new_t, old_t, plain_t = [], [], []

    def per_image(run: Path) -> None:  # the old api.predict, one image per forward
        net, _ = load_best(run)
        for path in files:
            x = load_for_predict(path, net.preprocess)
            with torch.inference_mode():
                softmax(net(x).float().numpy())

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        build = {"name": "efficientnet_lite0", "num_classes": 2, "in_chans": 3, "input_size": 224}
        export_model(model, run, classes=["ants", "bees"], preprocess=model.preprocess, build=build)
        (run / "run.json").write_text('{"status": "finished"}')  # what cnnlab.predict looks for
        for _ in range(repeat):
            start = time.perf_counter()
            result = cnnlab.predict(run, files, topk=1)
            new_t.append(time.perf_counter() - start)
            assert len(result.predictions) == len(files)
            start = time.perf_counter()
            per_image(run)
            old_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            with torch.inference_mode():
                x = torch.cat([load_for_predict(f, model.preprocess) for f in files])
                for i in range(0, len(x), 32):
                    F.softmax(plain(x[i : i + 32]), dim=1)
            plain_t.append(time.perf_counter() - start)
    n, plain_s = len(files), min(plain_t)
    note = f"{n} JPEG files incl. decoding and loading the run; plain = one batched loop"
    return [
        Row("Lite0 predict (files): cnnlab.predict, batched", min(new_t), plain_s, n, flops, note),
        Row("Lite0 predict (files): old per-image loop", min(old_t), plain_s, n, flops, note),
    ]


# each is called with (repeat, epochs per fit); the inference workloads have no epochs
WORKLOADS: dict[str, Callable[[int, int], list[Row]]] = {
    "smallcnn": lambda r, e: run_train("smallcnn", r, e),
    "resnet18": lambda r, e: run_train("resnet18", r, e),
    "resnet50": lambda r, e: run_train("resnet50", r, e),
    "vgg16": lambda r, e: run_train("vgg16", r, e),
    "lightning-floor": run_lightning_floor,
    "lite0-frozen": lambda r, e: run_lite0_frozen(r),
    "lite0-finetune": run_lite0_finetune,
    "lite0-eval": lambda r, e: run_lite0_eval(r),
    "lite0-predict": lambda r, e: run_lite0_predict(r),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="epochs per fit of the training workloads")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    tuning = setup_cpu(args.threads)  # the plain loops set the denormal flag again themselves
    peaks = measure_peaks()
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {args.threads} threads; "
          f"allocator: {tuning.malloc}; best of {args.repeat} interleaved runs")  # fmt: skip
    print(f"peaks measured in this run: matmul {peaks['matmul']:.0f} GFLOP/s, "
          f"3x3 conv {peaks['conv']:.0f} GFLOP/s (float32)\n")  # fmt: skip
    print_table_head("workload", "engine img/s:", "plain img/s:", "engine/plain:",
                     "engine GFLOP/s:", "plain GFLOP/s:", "engine % of conv peak:", "notes")  # fmt: skip
    for name in args.only:
        for row in WORKLOADS[name](args.repeat, args.epochs):
            print(row.cells(peaks), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
