"""Named backbone presets: spandrel architecture classes with fixed hyper-parameters.

We never re-implement the networks: SAFMN and HAT come from `spandrel`, SRFormer from
`spandrel_extra_arches` (CC BY-NC 4.0). The big presets match the authors' released DF2K x4 weights,
so those checkpoints load into them key for key; the `*_tiny` presets keep the same code paths but
train in seconds on a CPU (tests, demo pipeline).

`recipe` holds each backbone's published supervised training settings (used as CLI defaults by
`ioda pretrain`; the pipeline config normally overrides steps/batch for the machine at hand).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ioda.errors import IodaError

# spandrel's names for the architectures (ModelDescriptor.architecture.id)
ARCH_SAFMN, ARCH_HAT, ARCH_SRFORMER = "SAFMN", "HAT", "SRFormer"

_SAFMN_RECIPE = {"lr": 1e-3, "batch_size": 64, "lr_patch": 64, "scheduler": "cosine", "steps": 500_000}
_HAT_RECIPE = {"lr": 2e-4, "batch_size": 32, "lr_patch": 64, "scheduler": "multistep", "steps": 500_000}
_SRFORMER_RECIPE = {"lr": 2e-4, "batch_size": 32, "lr_patch": 64, "scheduler": "multistep", "steps": 500_000}
_TINY_RECIPE = {"lr": 1e-3, "batch_size": 4, "lr_patch": 24, "scheduler": "cosine", "steps": 200}


@dataclass(frozen=True)
class Preset:
    name: str
    arch: str  # spandrel architecture id
    scale: int
    kwargs: dict[str, Any]
    recipe: dict[str, Any] = field(default_factory=dict)
    window_size: int = 1  # spatial multiple the net pads to internally (1: none)
    note: str = ""


def _hat_kwargs(embed_dim, depths, num_heads, window_size, mlp_ratio, num_feat=64, squeeze=30, compress=3):
    return dict(
        img_size=64, patch_size=1, in_chans=3, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
        window_size=window_size, compress_ratio=compress, squeeze_factor=squeeze, conv_scale=0.01,
        overlap_ratio=0.5, mlp_ratio=mlp_ratio, upscale=4, img_range=1.0, upsampler="pixelshuffle",
        resi_connection="1conv", num_feat=num_feat,
    )


def _srformer_kwargs(embed_dim, depths, num_heads, window_size, mlp_ratio, upsampler="pixelshuffle"):
    return dict(
        img_size=64, patch_size=1, in_chans=3, embed_dim=embed_dim, depths=depths, num_heads=num_heads,
        window_size=window_size, mlp_ratio=mlp_ratio, upscale=4, img_range=1.0, upsampler=upsampler,
        resi_connection="1conv",
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("safmn", ARCH_SAFMN, 4, dict(dim=36, n_blocks=8, ffn_scale=2.0, upscaling_factor=4),
               _SAFMN_RECIPE, note="SAFMN_DF2K_x4.pth size"),
        Preset("safmn_l", ARCH_SAFMN, 4, dict(dim=128, n_blocks=16, ffn_scale=2.0, upscaling_factor=4),
               _SAFMN_RECIPE, note="SAFMN-L: the size the IODA authors adapt (SAFMN_L_DF2K_x4.pth)"),
        Preset("hat", ARCH_HAT, 4, _hat_kwargs(180, [6] * 6, [6] * 6, 16, 2.0), _HAT_RECIPE,
               window_size=16, note="HAT_SRx4.pth size"),
        Preset("srformer", ARCH_SRFORMER, 4, _srformer_kwargs(180, [6] * 6, [6] * 6, 22, 2.0), _SRFORMER_RECIPE,
               window_size=22, note="SRFormer_SRx4_DF2K.pth size; licence CC BY-NC 4.0"),
        Preset("safmn_tiny", ARCH_SAFMN, 4, dict(dim=8, n_blocks=2, ffn_scale=2.0, upscaling_factor=4),
               _TINY_RECIPE, note="test/demo size"),
        Preset("hat_tiny", ARCH_HAT, 4, _hat_kwargs(12, [1], [2], 8, 2.0, num_feat=16, squeeze=4), _TINY_RECIPE,
               window_size=8, note="test/demo size"),
        # SRFormer's "pixelshuffle" head has a fixed 64-channel upsampler (~300k params), so the tiny
        # preset uses its lightweight "pixelshuffledirect" head instead
        Preset("srformer_tiny", ARCH_SRFORMER, 4, _srformer_kwargs(12, [1], [2], 8, 2.0, "pixelshuffledirect"),
               _TINY_RECIPE, window_size=8, note="test/demo size (light head); licence CC BY-NC 4.0"),
    ]
}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise IodaError(f"preset: unknown backbone preset {name!r} (expected one of {', '.join(PRESETS)})")
    return PRESETS[name]


def preset_info(name: str) -> dict[str, Any]:
    """Plain-data description of a preset: arch, scale, constructor kwargs, training recipe."""
    p = get_preset(name)
    return {"name": p.name, "arch": p.arch, "scale": p.scale, "kwargs": dict(p.kwargs), "recipe": dict(p.recipe),
            "window_size": p.window_size, "note": p.note}
