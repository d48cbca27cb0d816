"""Pictures of a class activation map: the image as the model saw it, the heatmap over it.

Pure array functions plus one PNG writer on matplotlib's Figure API (no pyplot, no global
backend change)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.fsio import write_with
from cnnlab.models.spec import PreprocessSpec


def to_display(x: torch.Tensor, spec: PreprocessSpec) -> np.ndarray:
    """(H, W, 3) uint8 from a preprocessed (C, H, W) tensor: undo mean/std, grey -> RGB."""
    c = x.shape[0]
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(c, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(c, 1, 1)
    img = (x.detach().float().cpu() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
    arr = img.permute(1, 2, 0).numpy()
    return np.repeat(arr, 3, axis=2) if c == 1 else arr[..., :3]


def heat_colors(heat: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 with the 'jet' colour map (blue = none, red = most)."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255).round().astype(np.uint8)


def blend(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8: the image with the coloured heatmap over it at `alpha`."""
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * heat_colors(heat).astype(np.float32)
    return mixed.round().clip(0, 255).astype(np.uint8)


def resize_pair(image: np.ndarray, heat: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and heatmap with the longer side at `side` px: pixels stay crisp when enlarged
    (nearest), the heatmap stays smooth (bilinear)."""
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w))))
    enlarge = size[0] >= w
    R = Image.Resampling
    pil = Image.fromarray(image).resize(size, R.NEAREST if enlarge else R.LANCZOS)
    hm = Image.fromarray(heat.astype(np.float32)).resize(size, R.BILINEAR)  # mode "F"
    return np.asarray(pil), np.asarray(hm)


def png_bytes(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def save_overlay_png(path: Path, image: np.ndarray, heat: np.ndarray, title: str) -> Path:
    """A PNG with the image and the image + heatmap side by side, `title` above them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    big, big_heat = resize_pair(image, heat, 224)  # small inputs (28 px) readable on screen
    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    left.imshow(big)
    left.set_title("input (as the model sees it)", fontsize=9)
    right.imshow(blend(big, big_heat))
    right.set_title("heatmap over the input", fontsize=9)
    for ax in (left, right):
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path
