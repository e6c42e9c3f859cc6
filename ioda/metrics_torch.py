"""Batched PSNR/SSIM on the device, the same definitions as ioda.metrics (BasicSR's), in float64.

For repeated evaluation during adaptation (the authors test every 10 steps: 151 passes for 1500 steps): the
images stay on the device and only the per-image numbers come back, once per pass. Inputs are Bx3xHxW float
tensors on the 0..255 scale (SR already rounded as BasicSR's tensor2img). Agreement with ioda.metrics (to 1e-4 dB
and 1e-6 SSIM) is tested in tests/test_evaluate.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ioda.metrics import _Y_COEFFS, gaussian_kernel_1d


def quantize(sr: torch.Tensor) -> torch.Tensor:
    """SR float in [0,1] -> float64 on 0..255 rounded, exactly as ioda.imageio.tensor_to_image / tensor2img."""
    return sr.detach().float().clamp(0, 1).mul(255.0).round().to(torch.float64)


def _prepare(a: torch.Tensor, b: torch.Tensor, crop_border: int, test_y_channel: bool):
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"expected two BxCxHxW batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.to(torch.float64), b.to(torch.float64)
    if crop_border:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    if a.numel() == 0:
        raise ValueError(f"nothing left after cropping {crop_border} px from images of shape {tuple(b.shape)}")
    if test_y_channel and a.shape[1] == 3:
        c = torch.as_tensor(_Y_COEFFS, dtype=torch.float64, device=a.device).view(1, 3, 1, 1)
        a = (a * c).sum(1, keepdim=True) / 255.0 + 16.0
        b = (b * c).sum(1, keepdim=True) / 255.0 + 16.0
    return a, b


def psnr_batch(a: torch.Tensor, b: torch.Tensor, crop_border: int, test_y_channel: bool = True) -> torch.Tensor:
    """Per-image PSNR (dB, peak 255), shape B; identical images give inf."""
    a, b = _prepare(a, b, crop_border, test_y_channel)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0 * 255.0 / mse)  # mse 0 -> inf, as calculate_psnr


def ssim_batch(a: torch.Tensor, b: torch.Tensor, crop_border: int, test_y_channel: bool = True) -> torch.Tensor:
    """Per-image SSIM (Gaussian 11x11, sigma 1.5, 'valid' statistics, mean over channels), shape B."""
    a, b = _prepare(a, b, crop_border, test_y_channel)
    if a.shape[-2] < 11 or a.shape[-1] < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {a.shape[-2]}x{a.shape[-1]}")
    n, c = a.shape[:2]
    k = torch.as_tensor(gaussian_kernel_1d(11, 1.5), dtype=torch.float64, device=a.device)
    kv, kh = k.view(1, 1, 11, 1), k.view(1, 1, 1, 11)

    def filt(x: torch.Tensor) -> torch.Tensor:  # separable 'valid' correlation, every channel on its own
        x = x.reshape(n * c, 1, *x.shape[-2:])
        return F.conv2d(F.conv2d(x, kv), kh)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = filt(a), filt(b)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = filt(a * a) - mu1_sq
    sigma2_sq = filt(b * b) - mu2_sq
    sigma12 = filt(a * b) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return ssim_map.reshape(n, c, -1).mean(dim=2).mean(dim=1)
