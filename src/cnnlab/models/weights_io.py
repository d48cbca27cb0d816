"""Loading and saving weights without ever running code from a file (RELIABILITY.md, B1).

Two formats come in:
- `.safetensors`: raw tensors behind a JSON header; we bound the file and header sizes and the
  tensor count *before* anything is allocated (a 100k-entry header is a known DoS).
- `.pth/.pt/.bin/.ckpt`: pickles, read only through `torch.load(..., weights_only=True)`, always
  passed explicitly because `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` flips only the *default*. A file
  that needs any other global is refused with `UnsafeCheckpointError`; there is no unsafe fallback
  (the fallback is attacker-triggerable: one odd global buys arbitrary code execution).

    model = create_model("resnet18", num_classes=10, weights_file="finetuned.ckpt")
    report = load_weights_file(model, "other_head.safetensors")  # partial load, head skipped
    print(report.summary())
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CheckpointError, UnsafeCheckpointError
from cnnlab.fsio import write_with

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# safetensors' own header cap (100 MB); anything bigger is not a weights file we wrote.
MAX_HEADER_BYTES = 100 * 1024**2
# The largest models cnnlab knows (vgg19: 548 MB) fit with room to spare.
MAX_FILE_BYTES = 4 * 1024**3
# Real CNNs have hundreds to a few thousand tensors; 100k tiny entries is the public DoS PoC.
MAX_TENSORS = 20_000
# bytes per element: a header's shape must fit the byte span it declares
SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
SAFETENSORS_DTYPES = frozenset(SAFETENSORS_ITEMSIZE)
# Lightning wraps the module as `model.`, DDP as `module.`; both may stack.
WRAPPER_PREFIXES = ("module.", "model.")
# Keys of the classifier: a different class count legitimately changes only these.
HEAD_PREFIX = "head."


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# torch.load, safely


def safe_torch_load(path: str | Path) -> Any:
    """`torch.load` restricted to tensors and plain containers; never an unsafe retry."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        # weights_only=True explicitly: the env override only flips the default.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        names = _unsafe_globals(path, str(e))
        if names:
            raise UnsafeCheckpointError(
                f"refusing to load {path}: it needs the non-tensor global(s) "
                f"{', '.join(names)}, which could run arbitrary code; re-save it from trusted code "
                f"as a plain state dict (tensors, numbers, strings, lists, dicts) or as "
                f".safetensors"
            ) from None
        raise _unreadable(path) from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    except Exception as e:
        # RuntimeError for a truncated zip ("failed finding central directory"), EOFError for an
        # empty file, and KeyError/IndexError/ValueError... for bytes that are neither zip nor
        # pickle: the restricted unpickler runs no code, so any failure just means "unreadable".
        raise _unreadable(path) from e


def _unreadable(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a readable checkpoint (truncated or not a PyTorch file); "
        f"copy it again or re-save it"
    )


def _unsafe_globals(path: Path, message: str) -> list[str]:
    """The globals a refused pickle asked for; [] when the refusal was about garbage bytes."""
    get = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if get is not None:
        try:
            names = list(get(str(path)))
        except Exception:  # a scan, not a load; legacy (non-zip) pickles are not supported
            names = []  # so fall back to the error text below
        if names:
            return names
    # torch's messages: "Unsupported global: GLOBAL a.b was not..." / "unsupported GLOBAL a.b whose"
    names = set(re.findall(r"GLOBAL ([A-Za-z_][\w.]*)", message))
    # A pickle cut mid-name asks for e.g. `torch._utils._rebuild_tens`: truncation, not an attack.
    return sorted(n for n in names if not (n.startswith("torch.") and not _torch_has(n)))


def _torch_has(dotted: str) -> bool:
    obj: Any = torch
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# safetensors, bounded


def read_safetensors_header(
    path: str | Path, *, max_bytes: int = MAX_FILE_BYTES, max_tensors: int = MAX_TENSORS
) -> dict[str, Any]:
    """The validated JSON header of a .safetensors file (tensor entries plus `__metadata__`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(
            f"{path} is {size / 1e9:.1f} GB, over cnnlab's {max_bytes / 1e9:.1f} GB cap for "
            f"weights files; is it really a CNN's weights?"
        )
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise _bad_safetensors(path, "shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise _bad_safetensors(path, f"header length {n} is impossible for a {size}-byte file")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad_safetensors(path, "header is not JSON") from None
    if not isinstance(header, dict):
        raise _bad_safetensors(path, "header is not a JSON object")
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(entries) > max_tensors:
        raise CheckpointError(
            f"{path} declares {len(entries)} tensors (cap {max_tensors}); refusing to allocate"
        )
    for key, entry in entries.items():
        ok = (
            isinstance(entry, dict)
            and entry.get("dtype") in SAFETENSORS_DTYPES
            and isinstance(entry.get("shape"), list)
            and all(isinstance(d, int) and d >= 0 for d in entry["shape"])
        )
        if not ok:
            raise _bad_safetensors(path, f"entry '{key}' has no valid dtype/shape")
        span = entry.get("data_offsets")
        if not (isinstance(span, list) and len(span) == 2 and all(isinstance(o, int) for o in span)
                and 0 <= span[0] <= span[1] <= size - 8 - n):  # fmt: skip
            raise _bad_safetensors(path, f"entry '{key}' has impossible data_offsets {span}")
        count = math.prod(entry["shape"])
        if count * SAFETENSORS_ITEMSIZE[entry["dtype"]] != span[1] - span[0]:
            raise _bad_safetensors(
                path, f"entry '{key}' declares shape {entry['shape']} in {span[1] - span[0]} bytes"
            )
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _bad_safetensors(path, "__metadata__ must map strings to strings")
    return header


def _bad_safetensors(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid .safetensors file ({why}); export it again")


def load_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) after the header checks; safetensors then checks the offsets."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    header = read_safetensors_header(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise _bad_safetensors(Path(path), str(e).splitlines()[0]) from None
    return tensors, dict(header.get("__metadata__", {}))


def save_safetensors(
    model_state: Mapping[str, torch.Tensor],
    path: str | Path,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write tensors atomically: a crash mid-write never leaves a half file under `path`."""
    from safetensors.torch import save_file

    metadata = dict(metadata or {})
    bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise ValueError(f"safetensors metadata must be str -> str; not so for {bad[:3]}")
    # contiguous CPU copies: safetensors writes raw bytes and rejects views with odd strides.
    state = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    write_with(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def load_safetensors_checked(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Strict load of a cnnlab export: exactly the model's keys and shapes. Returns metadata."""
    tensors, metadata = load_safetensors(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit {_model_name(model)}: {len(missing)} missing "
            f"({_few(missing)}), {len(unexpected)} unexpected ({_few(unexpected)}); "
            f"create the model it was exported from (see its model.json)"
        )
    for k, v in expected.items():
        if tensors[k].shape != v.shape:
            raise CheckpointError(
                f"{path}: tensor {k} has shape {tuple(tensors[k].shape)}, "
                f"{_model_name(model)} expects {tuple(v.shape)}; check num_classes/in_chans"
            )
    model.load_state_dict(tensors, strict=True)
    return metadata


# ---------------------------------------------------------------------------------------------
# --weights FILE: a partial, reported load


@dataclass
class LoadReport:
    path: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    # (key, shape in file, shape in model): head tensors left at their fresh initialisation
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def summary(self) -> str:
        total = len(self.matched) + len(self.missing) + len(self.shape_mismatch)
        parts = [f"loaded {len(self.matched)}/{total} tensors from {self.path}"]
        if self.shape_mismatch:
            skipped = ", ".join(f"{k} {f} vs {m}" for k, f, m in self.shape_mismatch[:4])
            parts.append(f"kept new head for {len(self.shape_mismatch)} ({skipped})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_few(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_few(self.unexpected)})")
        return "; ".join(parts)


def load_weights_file(model: nn.Module, path: str | Path) -> LoadReport:
    """Load what fits by name and shape; a head with another class count stays new."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state, metadata = load_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        state, metadata = _state_dict_of(safe_torch_load(path), path), {}
    else:
        raise CheckpointError(
            f"cannot load weights from {path}: use .safetensors or one of {', '.join(TORCH_SUFFIXES)}"
        )
    expected = model.state_dict()
    report = LoadReport(str(path))
    to_load: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = _match_key(key, expected)
        if name is None:
            report.unexpected.append(key)
        elif tensor.shape == expected[name].shape:
            to_load[name] = tensor
            report.matched.append(name)
        else:
            report.shape_mismatch.append((name, tuple(tensor.shape), tuple(expected[name].shape)))
    if not to_load:
        raise CheckpointError(
            f"none of the {len(state)} tensors in {path} fit {_model_name(model)} "
            f"(file has {_few(list(state))}; model expects {_few(list(expected))}); "
            f"{_guess_architecture(list(state), metadata)}"
        )
    # Report in the model's order (safetensors files store keys sorted by name).
    order = {k: i for i, k in enumerate(expected)}
    report.matched.sort(key=order.__getitem__)
    report.shape_mismatch.sort(key=lambda m: order[m[0]])
    body = [m for m in report.shape_mismatch if not m[0].startswith(HEAD_PREFIX)]
    if body:
        key, got, want = body[0]
        raise CheckpointError(
            f"{path}: tensor {key} has shape {got}, {_model_name(model)} expects {want}; only "
            f"the head may differ (num_classes) - check in_chans, input size and architecture"
        )
    report.missing = [k for k in expected if k not in to_load and not _is_mismatch(k, report)]
    model.load_state_dict(to_load, strict=False)
    return report


def _is_mismatch(key: str, report: LoadReport) -> bool:
    return any(key == m[0] for m in report.shape_mismatch)


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    # Lightning checkpoints keep weights under 'state_dict'; many scripts under 'model'.
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict; save model.state_dict()"
        )
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} contains no tensors; save model.state_dict()")
    return tensors


def _match_key(key: str, expected: Mapping[str, torch.Tensor]) -> str | None:
    """`key` itself, or with the wrapper prefixes Lightning/DDP add stripped."""
    candidate = key
    while True:
        if candidate in expected:
            return candidate
        prefix = next((p for p in WRAPPER_PREFIXES if candidate.startswith(p)), None)
        if prefix is None:
            return None
        candidate = candidate[len(prefix) :]


# Key fragments that name the library layout a foreign state dict comes from.
_LAYOUT_HINTS = (
    (
        "_conv_stem.",
        "an efficientnet in lukemelas layout: use --model efficientnet_lite0/1/2 with --pretrained",
    ),
    ("Mixed_7c.", "torchvision's inception_v3: --model inception_v3"),
    ("layer4.", "a ResNet-style network: --model resnet18/34/50/101/152 (or seresnet50)"),
    ("features.", "a torchvision features/classifier network (vgg*, alexnet, mobilenet*)"),
    ("conv_stem.", "a timm efficientnet/mobilenet: --model efficientnet_lite0/1/2"),
)


def _guess_architecture(keys: list[str], metadata: Mapping[str, str]) -> str:
    for meta_key in ("architecture", "model", "name"):
        if metadata.get(meta_key):
            return f"its metadata says it is '{metadata[meta_key]}': create that model"
    for fragment, hint in _LAYOUT_HINTS:
        if any(k.startswith(fragment) or f".{fragment}" in k for k in keys):
            return f"it looks like {hint}"
    return "load it into the architecture it was trained with"


# ---------------------------------------------------------------------------------------------
# Mapping a foreign layout by order


def map_state_by_order(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    *,
    source_name: str,
    target_name: str,
) -> dict[str, torch.Tensor]:
    """Rename `source`'s tensors to `target`'s keys, pairing them in order.

    Two implementations of one network register their tensors in the same order whatever they call
    them (`_bn0.weight` vs `backbone.bn1.weight`, `fc.weight` vs `head.1.weight`), so order is
    robust to renaming and re-prefixing. It is only trusted because *every* pair must agree on
    shape and on the leaf name (weight/bias/running_mean...): a missing or extra layer shifts all
    later pairs and fails at the first one.
    """
    if len(source) != len(target):
        raise CheckpointError(
            f"{source_name} has {len(source)} tensors but {target_name} has {len(target)}: "
            f"not the same architecture"
        )
    mapped: dict[str, torch.Tensor] = {}
    for i, ((sk, sv), (tk, tv)) in enumerate(zip(source.items(), target.items(), strict=True)):
        if sv.shape != tv.shape or sk.rsplit(".", 1)[-1] != tk.rsplit(".", 1)[-1]:
            raise CheckpointError(
                f"{source_name} does not fit {target_name}: tensor #{i} {sk} "
                f"{tuple(sv.shape)} would go to {tk} {tuple(tv.shape)}"
            )
        mapped[tk] = sv
    return mapped


def _model_name(model: nn.Module) -> str:
    name = getattr(model, "name", "")
    return f"model '{name}'" if name else f"this {type(model).__name__}"


def _few(keys: list[str], n: int = 3) -> str:
    if not keys:
        return "none"
    more = f", ... {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
