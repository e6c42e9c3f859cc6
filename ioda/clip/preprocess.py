"""Differentiable preprocessing from SR-network tensors to CLIP inputs.

Choices (documented because they change the numbers):
- Images: the whole BxCxHxW tensor is resized to the encoder's square size with bicubic interpolation
  and antialiasing (torch supports gradients through antialiased bicubic). No centre crop: the SR crops
  are square and the region mask must cover the same pixels; a non-square input is stretched. No clamp
  after resizing: bicubic overshoot is kept so gradients are never zeroed.
- Alpha masks: resized bilinearly with antialiasing (the fraction of foreground under each output pixel)
  then thresholded at 0.5, i.e. a binary majority vote; no gradients are needed for masks.
  Then Normalize(0.5, 0.26), as Alpha-CLIP: foreground ~ +1.92, background ~ -1.92.
- input_range="unit" (default): images are RGB in [0, 1].
  input_range="gan_quirk": reproduces the IODA authors' code, which un-normalises its inputs as if
  they were GAN outputs in [-1, 1] ((x + 1) / 2), mapping our [0, 1] images to [0.5, 1]. A quirk, kept
  only so their setting can be reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

INPUT_RANGES = ("unit", "gan_quirk")
ALPHA_MEAN, ALPHA_STD = 0.5, 0.26


def resize_image(img: torch.Tensor, size: int) -> torch.Tensor:
    if tuple(img.shape[-2:]) == (size, size):
        return img
    return F.interpolate(img, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


def normalize_image(img: torch.Tensor, mean: Sequence[float], std: Sequence[float], input_range: str = "unit"):
    if input_range == "gan_quirk":
        img = (img + 1.0) / 2.0
    elif input_range != "unit":
        raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")
    m = torch.as_tensor(mean, dtype=img.dtype, device=img.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=img.dtype, device=img.device).view(1, -1, 1, 1)
    return (img - m) / s


def prepare_image(img: torch.Tensor, size: int, mean, std, input_range: str = "unit") -> torch.Tensor:
    """Bx3xHxW in [0,1] -> Bx3xSxS CLIP input (differentiable)."""
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f"expected images as Bx3xHxW, got {tuple(img.shape)}")
    return normalize_image(resize_image(img, size), mean, std, input_range)


def prepare_alpha(alpha: torch.Tensor | None, batch: int, size: int, device, dtype) -> torch.Tensor:
    """Bx1xHxW binary mask (or None = all ones) -> Bx1xSxS normalised alpha channel."""
    if alpha is None:
        a = torch.ones(batch, 1, size, size, device=device, dtype=dtype)
    else:
        if alpha.dim() == 3:
            alpha = alpha.unsqueeze(1)
        if alpha.dim() != 4 or alpha.shape[1] != 1 or alpha.shape[0] != batch:
            raise ValueError(f"expected alpha as {batch}x1xHxW, got {tuple(alpha.shape)}")
        a = alpha.detach().to(device=device, dtype=dtype)
        if tuple(a.shape[-2:]) != (size, size):
            a = F.interpolate(a, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        a = (a >= 0.5).to(dtype)
    return (a - ALPHA_MEAN) / ALPHA_STD
