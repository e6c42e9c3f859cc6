"""Differentiable preprocessing from SR-network tensors to CLIP inputs, for both protocols (ioda.protocol).

`paper` protocol (our documented choices where the paper is silent):
- Images: the whole BxCxHxW tensor is resized to the encoder's square size (bicubic), no centre crop (the SR
  crops are square and the region mask must cover the same pixels; a non-square input is stretched), no clamp
  after resizing (bicubic overshoot kept so gradients are never zeroed); RGB in [0, 1] (input_range "unit").
- Alpha masks: resized bilinearly (the fraction of foreground under each output pixel), thresholded at 0.5
  (a binary majority vote), then Normalize(0.5, 0.26) as Alpha-CLIP: foreground ~ +1.923, background ~ -1.923.

`authors` protocol (their loss file, My_alpha_clip_loss.py, composes torchvision transforms):
- Images: Normalize(-1, 2) (they treat SR outputs as GAN outputs in [-1, 1]: our [0, 1] becomes [0.5, 1];
  input_range "gan_quirk"), Resize(S, bicubic) on the shorter side + CenterCrop(S), CLIP Normalize. No clamp.
- Alpha: mask.to(float64), Normalize(-1, 2) ({0,1} -> {0.5, 1}) BEFORE Resize((S, S)) (bilinear: soft edges
  kept), then Normalize(0.5, 0.26): background exactly 0.0, foreground (1 - 0.5) / 0.26 = 1.923.
- Computed in the input's dtype (alpha in float64), cast to the tower's dtype (fp16 on CUDA) at the end.

Antialiasing of tensor resizes (`antialias`): torchvision's tensor Resize antialiases by default since 0.17 and
did not before; the authors' torchvision version is unknown. Default True (today's torchvision); it matters
for the 512 -> 224 downscale of SR crops and, because torch's antialiased bicubic uses a = -0.5 instead of
-0.75, for the 128 -> 224 upscale of LR crops too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

INPUT_RANGES = ("unit", "gan_quirk")
FITS = ("stretch", "resize_crop")
ALPHA_MODES = ("binary", "soft")
ALPHA_MEAN, ALPHA_STD = 0.5, 0.26
DEFAULT_ANTIALIAS = True


def _interp(x: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x  # torchvision's Resize returns the input unchanged too
    # torch has no half-precision (anti-aliased) interpolation on every device: resize in fp32, as torchvision does
    dtype = x.dtype
    x = x.float() if dtype not in (torch.float32, torch.float64) else x
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias).to(dtype)


def shorter_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """torchvision Resize(int) output size: the shorter side becomes `size`, the longer one is truncated."""
    if h <= w:
        return size, int(size * w / h)
    return int(size * h / w), size


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision CenterCrop for inputs at least `size` on both sides (top = round((h - size) / 2))."""
    h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]


def resize_image(img: torch.Tensor, size: int, fit: str = "stretch", antialias: bool = DEFAULT_ANTIALIAS) -> torch.Tensor:
    if fit == "stretch":
        return _interp(img, (size, size), "bicubic", antialias)
    if fit == "resize_crop":
        return center_crop(_interp(img, shorter_side_size(*img.shape[-2:], size), "bicubic", antialias), size)
    raise ValueError(f"fit must be one of {FITS}, got {fit!r}")


def normalize_image(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.as_tensor(mean, dtype=img.dtype, device=img.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=img.dtype, device=img.device).view(1, -1, 1, 1)
    return (img - m) / s


def prepare_image(img: torch.Tensor, size: int, mean, std, input_range: str = "unit", *, fit: str = "stretch",
                  antialias: bool = DEFAULT_ANTIALIAS) -> torch.Tensor:
    """Bx3xHxW (in [0,1]) -> Bx3xSxS CLIP input (differentiable), in the input's dtype."""
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f"expected images as Bx3xHxW, got {tuple(img.shape)}")
    if input_range == "gan_quirk":
        img = (img + 1.0) / 2.0  # the authors' Normalize(mean=-1, std=2), applied first as in their Compose
    elif input_range != "unit":
        raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")
    return normalize_image(resize_image(img, size, fit, antialias), mean, std)


def prepare_alpha(alpha: torch.Tensor | None, batch: int, size: int, device, dtype, *, mode: str = "binary",
                  antialias: bool = DEFAULT_ANTIALIAS) -> torch.Tensor:
    """Bx1xHxW binary mask (or None = all ones) -> Bx1xSxS normalised alpha channel in `dtype`."""
    if mode not in ALPHA_MODES:
        raise ValueError(f"alpha mode must be one of {ALPHA_MODES}, got {mode!r}")
    if alpha is None:
        alpha = torch.ones(batch, 1, size, size, device=device)
    if alpha.dim() == 3:
        alpha = alpha.unsqueeze(1)
    if alpha.dim() != 4 or alpha.shape[1] != 1 or alpha.shape[0] != batch:
        raise ValueError(f"expected alpha as {batch}x1xHxW, got {tuple(alpha.shape)}")
    if mode == "soft":
        # The authors' mask_transform, in float64 (their mask.to(float)); no gradients are needed for masks.
        a = (alpha.detach().to(device=device, dtype=torch.float64) + 1.0) / 2.0
        a = _interp(a, (size, size), "bilinear", antialias)
        return ((a - ALPHA_MEAN) / ALPHA_STD).to(dtype)
    a = alpha.detach().to(device=device, dtype=dtype)
    a = _interp(a, (size, size), "bilinear", antialias)
    a = (a >= 0.5).to(dtype)
    return (a - ALPHA_MEAN) / ALPHA_STD
