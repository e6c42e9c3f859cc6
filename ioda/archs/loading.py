"""Build, save and load backbones: preset -> nn.Module, and checkpoints checked against the preset.

Loading never executes pickled code: `.pth/.pt/.ckpt` files go through `torch.load(weights_only=True)`
(spandrel's own ModelLoader uses a restricted unpickler with weights_only off, so we read the state dict
ourselves and only hand tensors to spandrel), `.safetensors` through safetensors. spandrel then
unwraps `params`/`params_ema`/`model` wrappers and detects the architecture and scale.
"""

from __future__ import annotations

import functools
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ioda.archs.presets import ARCH_HAT, ARCH_SAFMN, ARCH_SRFORMER, PRESETS, get_preset
from ioda.errors import IodaError
from ioda.files import atomic_path

_installed = False
METADATA_KEY = "ioda"  # safetensors metadata entry: JSON with preset, arch, scale and the caller's meta


def _ensure_registry() -> None:
    """Register SRFormer (spandrel_extra_arches, CC BY-NC 4.0) with spandrel's main registry once."""
    global _installed
    if not _installed:
        import spandrel_extra_arches

        spandrel_extra_arches.install(ignore_duplicates=True)
        _installed = True


def _arch_class(arch: str) -> type[nn.Module]:
    if arch == ARCH_SAFMN:
        from spandrel.architectures.SAFMN import SAFMN

        return SAFMN
    if arch == ARCH_HAT:
        from spandrel.architectures.HAT import HAT

        return HAT
    if arch == ARCH_SRFORMER:
        from spandrel_extra_arches.architectures.SRFormer import SRFormer

        return SRFormer
    raise IodaError(f"arch: unknown architecture {arch!r} (expected SAFMN, HAT or SRFormer)")


def build_model(preset: str, seed: int | None = None, device: str | torch.device | None = None) -> nn.Module:
    """A randomly initialised network of the preset (seeded init without touching the global RNG)."""
    p = get_preset(preset)
    cls = _arch_class(p.arch)
    if seed is None:
        return cls(**p.kwargs) if device is None else cls(**p.kwargs).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(**p.kwargs)
    return model if device is None else model.to(device)


@functools.lru_cache(maxsize=None)
def _shapes(preset: str) -> dict[str, tuple[int, ...]]:
    """Parameter/buffer shapes of a preset, built once on the meta device (no memory, no init cost);
    HAT's constructor calls .item(), which meta tensors refuse, so it is built on the CPU instead."""
    cls, kwargs = _arch_class(get_preset(preset).arch), get_preset(preset).kwargs
    try:
        with torch.device("meta"):
            m = cls(**kwargs)
    except RuntimeError:
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
            m = cls(**kwargs)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def _size_mismatch(sd: dict[str, torch.Tensor], preset: str) -> str | None:
    """None if `sd` fits the preset key for key, else a short description of the first difference."""
    want = _shapes(preset)
    missing = [k for k in want if k not in sd]
    if missing:
        return f"key {missing[0]} missing ({len(missing)} missing in all)"
    extra = [k for k in sd if k not in want]
    if extra:
        return f"unexpected key {extra[0]} ({len(extra)} unexpected in all)"
    for k, shape in want.items():
        if tuple(sd[k].shape) != shape:
            return f"{k} has shape {tuple(sd[k].shape)}, preset expects {shape}"
    return None


@dataclass
class LoadedModel:
    module: nn.Module
    arch: str
    scale: int
    preset: str | None
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def _parse_meta(raw: dict[str, str]) -> dict[str, Any]:
    """Our JSON entry if present (values typed), else the file's plain string metadata."""
    if METADATA_KEY in raw:
        try:
            meta = json.loads(raw[METADATA_KEY])
            if isinstance(meta, dict):
                return meta
        except json.JSONDecodeError:
            pass
    return dict(raw)


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and (safetensors) metadata of a checkpoint file, read safely; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise IodaError(f"{path}: checkpoint not found (expected a .pth or .safetensors file)")
    suffix = path.suffix.lower()
    meta: dict[str, Any] = {}
    try:
        if suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = _parse_meta(f.metadata() or {})
                raw: Any = {k: f.get_tensor(k) for k in f.keys()}
        elif suffix in (".pth", ".pt", ".ckpt", ".bin"):
            from ioda.safeload import torch_load

            raw = torch_load(path)
        else:
            raise IodaError(f"{path}: unsupported checkpoint type {suffix!r} (expected .pth, .pt, .ckpt or .safetensors)")
    except IodaError:
        raise
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise IodaError(f"{path}: corrupt or unreadable checkpoint ({first[:200]})") from None
    except Exception as err:  # safetensors raises its own SafetensorError type
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise IodaError(f"{path}: corrupt or unreadable checkpoint ({first[:200]})") from None
    from spandrel import canonicalize_state_dict

    if not isinstance(raw, dict):
        raise IodaError(f"{path}: checkpoint holds a {type(raw).__name__}, expected a state dict")
    sd = canonicalize_state_dict(raw)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if not sd or bad:
        raise IodaError(f"{path}: not a model state dict (entry {bad[0] if bad else '(none)'} is not a tensor)")
    return sd, meta


_SIZE_MISMATCH = re.compile(r"size mismatch for ([^:]+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) "
                            r"from checkpoint, the shape in current model is torch\.Size\(\[([^\]]*)\]\)")


def _load_error(err: BaseException) -> str:
    """One line from a failed load: torch's load_state_dict puts the tensor and the shapes on the lines after
    "Error(s) in loading state_dict for X:", so the first of those details is said, shapes as tuples."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    m = _SIZE_MISMATCH.search(text)
    if m:
        shape = lambda s: str(tuple(int(v) for v in s.split(",") if v.strip()))  # noqa: E731
        more = len(_SIZE_MISMATCH.findall(text)) - 1
        return (f"tensor {m.group(1)} has shape {shape(m.group(2))} in the file, the network built from it expects "
                f"{shape(m.group(3))}" + (f"; {more} more tensors differ" if more else ""))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else lines[0]
    return detail[:300]


def _detect(sd: dict[str, torch.Tensor], path: Path) -> tuple[str, int, nn.Module]:
    _ensure_registry()
    from spandrel import MAIN_REGISTRY, UnsupportedModelError

    try:
        desc = MAIN_REGISTRY.load(sd)
    except UnsupportedModelError:
        raise IodaError(f"{path}: architecture not recognised (no spandrel architecture matches "
                        f"these weights)") from None
    except (KeyError, RuntimeError, ValueError, IndexError) as err:
        raise IodaError(f"{path}: inconsistent weights, cannot build the network ({_load_error(err)})") from None
    from spandrel import ImageModelDescriptor

    # ioda feeds RGB images and nothing else: refuse inpainting (image + mask) and grey/RGBA networks up front
    if not isinstance(desc, ImageModelDescriptor):
        raise IodaError(f"{path}: {desc.architecture.id} is not a single-image network (it needs a mask as well)")
    if desc.input_channels != 3 or desc.output_channels != 3:
        raise IodaError(f"{path}: {desc.architecture.id} maps {desc.input_channels}-channel to {desc.output_channels}"
                        f"-channel images; ioda adapts RGB (3-channel) networks")
    return str(desc.architecture.id), int(desc.scale), desc.model


def _same_hyperparameters(module: nn.Module, preset: str) -> bool:
    """True if spandrel built exactly the preset's network (its classes record their constructor args).
    spandrel guesses what a state dict cannot tell (e.g. SRFormer's img_size for 1-block nets), so a
    module is only reused when every preset argument agrees."""
    hp = getattr(module, "hyperparameters", None)
    if not isinstance(hp, dict):
        return False
    norm = lambda v: list(v) if isinstance(v, (tuple, list)) else v  # noqa: E731
    return all(k in hp and norm(hp[k]) == norm(v) for k, v in get_preset(preset).kwargs.items())


def _find_preset(arch: str, scale: int, sd: dict[str, torch.Tensor], module: nn.Module) -> str | None:
    candidates = [n for n, p in PRESETS.items() if p.arch == arch and p.scale == scale]
    for name in candidates:
        if _same_hyperparameters(module, name):
            return name
    for name in candidates:
        if _size_mismatch(sd, name) is None:
            return name
    return None


def _module_for(preset: str, sd: dict[str, torch.Tensor], spandrel_module: nn.Module) -> nn.Module:
    if _same_hyperparameters(spandrel_module, preset):
        return spandrel_module  # already built with the preset's arguments and strictly loaded
    module = build_model(preset)
    module.load_state_dict(sd, strict=True)
    return module


def _check_reloadable(module: nn.Module, arch: str, scale: int, path: Path) -> None:
    """A network without a preset is saved as its plain state dict and found again by spandrel on reload;
    prove now (before any training) that spandrel rebuilds the same network from the module's own weights."""
    from spandrel import MAIN_REGISTRY, canonicalize_state_dict

    sd = {k: v for k, v in module.state_dict().items()}
    try:
        desc = MAIN_REGISTRY.load(canonicalize_state_dict(dict(sd)))
        again = desc.model.state_dict()
        same = (str(desc.architecture.id) == arch and int(desc.scale) == scale and set(again) == set(sd)
                and all(tuple(again[k].shape) == tuple(v.shape) for k, v in sd.items()))
    except Exception:  # noqa: BLE001 - any failure to rebuild means the same thing here
        same = False
    if not same:
        raise IodaError(f"{path}: {arch} x{scale} loads, but spandrel does not rebuild the same network from its "
                        f"saved weights, so an adapted copy could not be reloaded (refused before any training)")


def load_model(
    path: str | os.PathLike, preset: str | None = None, scale: int | None = None, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load weights, check architecture/scale/size against `preset` (and `scale`), return the module.

    With no preset, the one recorded in our safetensors metadata is used, else the preset whose shapes
    match, else spandrel's own module (preset None)."""
    path = Path(path)
    sd, meta = read_state_dict(path)
    arch, ckpt_scale, spandrel_module = _detect(sd, path)
    if preset is None and meta.get("preset") in PRESETS:
        preset = meta["preset"]
    if preset is not None:
        p = get_preset(preset)
        want_scale = scale if scale is not None else p.scale
        if arch != p.arch or ckpt_scale != want_scale or p.scale != want_scale:
            raise IodaError(
                f"{path}: checkpoint is {arch} x{ckpt_scale}, expected {p.arch} x{want_scale} (preset {preset})"
            )
        if not _same_hyperparameters(spandrel_module, preset):
            diff = _size_mismatch(sd, preset)
            if diff is not None:
                raise IodaError(f"{path}: {arch} x{ckpt_scale} weights do not fit preset {preset} ({diff})")
        module = _module_for(preset, sd, spandrel_module)
    else:
        if scale is not None and ckpt_scale != scale:
            raise IodaError(f"{path}: checkpoint is {arch} x{ckpt_scale}, expected x{scale}")
        preset = _find_preset(arch, ckpt_scale, sd, spandrel_module)
        if preset is None:
            _check_reloadable(spandrel_module, arch, ckpt_scale, path)
        module = spandrel_module if preset is None else _module_for(preset, sd, spandrel_module)
    module.eval()
    return LoadedModel(module.to(device), arch, ckpt_scale, preset, str(path), meta)


def save_model(module: nn.Module, path: str | os.PathLike, preset: str | None, meta: dict[str, Any] | None = None,
               *, arch: str | None = None, scale: int | None = None) -> None:
    """Write weights as safetensors, atomically, byte-identical for identical inputs. Metadata: one entry
    "ioda" with JSON {preset, arch, scale, **meta} (read back as LoadedModel.meta).

    preset=None (a network spandrel loaded that matches no preset: an x2 SAFMN, a Real-ESRGAN Compact...)
    needs `arch` and `scale`; the file is the module's plain state dict, which spandrel recognises on reload."""
    from safetensors.torch import save_file

    # clone: safetensors refuses tensors that share storage; contiguous CPU copies are always accepted
    sd = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    if preset is not None:
        p = get_preset(preset)
        diff = _size_mismatch(sd, preset)
        if diff is not None:
            raise IodaError(f"{path}: module does not fit preset {preset} ({diff}); refusing to save it under that name")
        arch, scale = p.arch, p.scale
    elif arch is None or scale is None:
        raise IodaError(f"{path}: a model without a preset is saved with its architecture and scale (none given)")
    info = {**{str(k): v for k, v in (meta or {}).items()}, "preset": preset, "arch": arch, "scale": int(scale)}
    # one metadata entry holding sorted JSON: safetensors writes several entries in hash order, which
    # would make the file bytes (and DVC's hash) differ between identical runs
    header = {METADATA_KEY: json.dumps(info, sort_keys=True, default=str)}
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise IodaError(f"{path}: model files are written as .safetensors (got suffix {path.suffix!r})")
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=header)
