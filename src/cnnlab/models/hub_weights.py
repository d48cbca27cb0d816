"""ImageNet weights that torchvision and timm publish as hash-named files on download servers.

Every entry is built from the metadata torchvision/timm ship offline (URL, accuracy, categories,
evaluation transforms); only the tensors need a network, once. A file is looked for in
`torch.hub.get_dir()/checkpoints/` (where torchvision and timm put it too, so it is shared), then,
for timm, in the Hugging Face cache. When absent, it is downloaded if the machine is online;
offline, the error names the file and the folder to put it in.

Before unpickling, the file's sha256 must start with the prefix its name carries
(`resnet18-f37072fd.pth`), the convention of torch.hub and of timm's release files. Tensors are
then mapped onto cnnlab's `CnnClassifier` (`backbone.*`, `head.1.*`) by order with every shape
checked (`weights_io.map_state_by_order`), which does not care how the wrapper re-prefixes keys.

`WeightsSpec.sha256` holds that 8-hex prefix here: the publishers state no more.

    registry.attach_weights(HUB_WEIGHTS)  # in cnnlab/models/__init__.py
"""

from __future__ import annotations

import functools
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CheckpointError
from cnnlab.models.spec import PreprocessSpec, WeightsSpec
from cnnlab.models.weights_io import (
    load_safetensors,
    map_state_by_order,
    safe_torch_load,
    sha256_file,
)

PROBE_TIMEOUT_S = 10  # torch.hub's downloader has no timeout; offline must fail in seconds


@functools.cache
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class descriptions in index order, from timm's bundled data."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


@dataclass(frozen=True)
class HubFile:
    name: str  # the cnnlab model the tensors are for
    url: str
    hf_hub_id: str = ""  # timm's Hugging Face repo; its cached model.safetensors also serves
    timm_arch: str = ""  # restores the tensor order of safetensors files (stored sorted)
    # Source tensors our build may leave out (inception's auxiliary classifier).
    optional_prefixes: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        match = re.search(r"-([a-f0-9]{6,64})\.", self.filename)
        if match is None:
            raise ValueError(f"{self.filename} carries no sha256 prefix (name-<hex>.pth)")
        return match.group(1)


def checkpoint_dir() -> Path:
    # Read at call time: TORCH_HOME / torch.hub.set_dir may change after import.
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_file(f: HubFile) -> Path | None:
    """The local copy of the weights, if any, without touching the network."""
    path = checkpoint_dir() / f.filename
    if path.is_file():
        return path
    return _hf_cached_file(f.hf_hub_id) if f.hf_hub_id else None


def _hf_cached_file(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "model.safetensors")
    return Path(found) if isinstance(found, str) else None


def _download(url: str, dst: Path, hash_prefix: str) -> None:
    """Fetch `url` into `dst` (atomically, hash-checked) after a quick reachability probe."""
    with urllib.request.urlopen(
        urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S
    ):
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dst), hash_prefix=hash_prefix, progress=True)


def fetch(f: HubFile) -> Path:
    """The weights file: cached, or downloaded now; offline, one line saying what to do."""
    found = cached_file(f)
    if found is not None:
        return found
    dst = checkpoint_dir() / f.filename
    try:
        _download(f.url, dst, f.hash_prefix)
    except RuntimeError as e:  # torch.hub: "invalid hash value"
        raise CheckpointError(
            f"download of {f.url} does not match its sha256 prefix {f.hash_prefix} ({e}); "
            f"retry, or fetch it by hand into {dst.parent}"
        ) from None
    except (OSError, ValueError):  # URLError, timeouts, DNS: offline or blocked
        raise CheckpointError(
            f"pretrained weights for {f.name} not found: put {f.filename} in {dst.parent} "
            f"(download: {f.url}) or run online once"
        ) from None
    return dst


def verify_hash_prefix(path: Path, prefix: str) -> None:
    digest = sha256_file(path)
    if not digest.startswith(prefix):
        raise CheckpointError(
            f"{path} has sha256 {digest[:16]}..., but its name promises {prefix}...: it is "
            f"corrupt or not the published file; delete it and run online once"
        )


def load_hub_weights(f: HubFile, model: nn.Module) -> None:
    """Verify, read safely, map by order onto `model`, load strictly."""
    path = fetch(f)
    if path.suffix == ".safetensors":
        source = _ordered_safetensors(f, path)
    else:
        verify_hash_prefix(path, f.hash_prefix)  # before unpickling anything from it
        obj = safe_torch_load(path)
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path} is not a state dict")
        source = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    target = model.state_dict()
    for prefix in f.optional_prefixes:
        if not any(prefix in k for k in target):
            source = {k: v for k, v in source.items() if not k.startswith(prefix)}
    model.load_state_dict(_map(source, target, path.name, f.name), strict=True)
    _disable_transform_input(model)


def _map(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source_name: str, name: str
) -> dict[str, torch.Tensor]:
    counter = "num_batches_tracked"
    if any(k.endswith(counter) for k in source):
        return map_state_by_order(source, target, source_name=source_name, target_name=name)
    # Older and Hugging Face exports drop BN's step counters; they only matter when momentum is
    # None, so ours keep their value and the rest maps by order.
    kept = {k: v for k, v in target.items() if not k.endswith(counter)}
    mapped = map_state_by_order(source, kept, source_name=source_name, target_name=name)
    return {k: mapped.get(k, target[k]) for k in target}


def _ordered_safetensors(f: HubFile, path: Path) -> dict[str, torch.Tensor]:
    # Hugging Face caches files as blobs named by their sha256: check the content against it.
    blob = path.resolve().name
    if re.fullmatch(r"[a-f0-9]{64}", blob) and sha256_file(path) != blob:
        raise CheckpointError(f"{path} does not match its sha256 {blob[:16]}...; delete it")
    tensors, _ = load_safetensors(path)
    import timm

    with torch.device("meta"):  # the architecture's key order, without allocating weights
        order = list(timm.create_model(f.timm_arch, pretrained=False).state_dict())
    order = [k for k in order if k in tensors]
    if len(order) != len(tensors):
        raise CheckpointError(f"{path} does not hold timm's {f.timm_arch} tensors")
    return {k: tensors[k] for k in order}


def _disable_transform_input(model: nn.Module) -> None:
    # torchvision's Inception3 re-normalises ImageNet-normalised inputs to (x - 0.5) / 0.5 when
    # `transform_input` is on; our spec asks for that normalisation directly, so it must be off.
    for m in model.modules():
        if getattr(m, "transform_input", False) is True:
            m.transform_input = False


def hub_weights_spec(
    f: HubFile,
    preprocess: PreprocessSpec,
    *,
    source: str,
    license: str,
    top1: float | None,
    categories: tuple[str, ...],
) -> WeightsSpec:
    return WeightsSpec(
        tag="imagenet",
        source=source,
        preprocess=preprocess,
        num_classes=1000,
        license=license,
        top1=top1,
        sha256=f.hash_prefix,
        available=lambda: cached_file(f) is not None,
        load=functools.partial(load_hub_weights, f),
        fetch=functools.partial(fetch, f),
        where=f"{checkpoint_dir() / f.filename} (download: {f.url})",
        categories=categories,
    )


def torchvision_spec(name: str, *, optional_prefixes: tuple[str, ...] = ()) -> WeightsSpec:
    """IMAGENET1K_V1 of a torchvision builder, from its Weights enum (all offline data)."""
    from torchvision.models import get_model_weights

    w = get_model_weights(name).IMAGENET1K_V1
    t = w.transforms()  # ImageClassification: resize shorter side, centre crop, normalise
    crop, resize = t.crop_size[0], t.resize_size[0]
    mean, std = tuple(t.mean), tuple(t.std)
    if name == "inception_v3":
        # torchvision's builder turns on transform_input for these (Google) weights, which maps
        # ImageNet-normalised input to (x - 0.5) / 0.5; we normalise that way directly.
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    f = HubFile(name, w.url, optional_prefixes=optional_prefixes)
    return hub_weights_spec(
        f,
        PreprocessSpec((3, crop, crop), mean, std, t.interpolation.value, crop / resize),
        source=f"torchvision {type(w).__name__}.IMAGENET1K_V1 ({f.filename})",
        license="BSD-3-Clause (torchvision)",
        top1=w.meta["_metrics"]["ImageNet-1K"]["acc@1"],
        categories=tuple(w.meta["categories"]),
    )


def timm_spec(name: str, cfg_name: str) -> WeightsSpec:
    """A timm pretrained cfg that still names a hash-named release file."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(cfg_name)
    f = HubFile(name, cfg.url, hf_hub_id=cfg.hf_hub_id or "", timm_arch=cfg.architecture)
    return hub_weights_spec(
        f,
        PreprocessSpec(cfg.input_size, cfg.mean, cfg.std, cfg.interpolation, cfg.crop_pct),
        source=f"timm {cfg_name} ({f.filename})",
        license=cfg.license or "unknown",
        top1=None,  # timm's cfg carries no accuracy offline
        categories=imagenet_categories(),
    )


TORCHVISION_MODELS = (
    "vgg16", "vgg16_bn", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "alexnet", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
)  # fmt: skip

HUB_WEIGHTS: dict[str, WeightsSpec] = {
    **{name: torchvision_spec(name) for name in TORCHVISION_MODELS},
    "inception_v3": torchvision_spec("inception_v3", optional_prefixes=("AuxLogits.",)),
    "seresnet50": timm_spec("seresnet50", "seresnet50.a1_in1k"),
    "senet154": timm_spec("senet154", "senet154.gluon_in1k"),
}
