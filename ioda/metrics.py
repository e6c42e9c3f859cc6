"""PSNR and SSIM as BasicSR computes them (calculate_psnr / calculate_ssim), for RGB inputs.

Inputs: HWC (or CHW with input_order="CHW") arrays with values in [0, 255]: uint8 RGB, or float arrays
already on the 0..255 scale (not [0, 1]). Unlike BasicSR (which takes BGR from cv2) our images are RGB.
Everything is computed in float64; BasicSR computes the Y channel in float32, which moves PSNR by
well under 1e-6 dB. test_y_channel=True uses the MATLAB rgb2ycbcr luma (ITU-R BT.601, studio swing).
SSIM: Gaussian 11x11 window, sigma 1.5, statistics over the 'valid' region only (what BasicSR gets by
cropping 5 px off cv2.filter2D's output), constants (0.01*255)^2 and (0.03*255)^2, mean over channels.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

# MATLAB rgb2ycbcr luma row for RGB inputs in [0, 1]; output in [16, 235]
_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def rgb2ycbcr_y(img: np.ndarray) -> np.ndarray:
    """Y of an HxWx3 RGB image in [0, 255] (uint8 or float), as float64 in [16, 235]."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb2ycbcr_y expects an HxWx3 image, got shape {img.shape}")
    return img @ _Y_COEFFS / 255.0 + 16.0


# Rows per strip: both metrics go through the images a strip of rows at a time, so their float64 working memory
# depends on the image width, not on its size (a 24-megapixel pair would otherwise take GBs of temporaries).
# Every per-pixel value is the one-pass value; only the order of the final sums differs (~1e-12 relative).
STRIP_ROWS = 256


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str):
    """Both images as HxWxC views (unconverted), border cropped, shapes checked."""
    img, img2 = np.asarray(img), np.asarray(img2)
    if img.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {img2.shape}")
    if input_order not in ("HWC", "CHW"):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}")
    if img.ndim == 2:
        img, img2 = img[:, :, None], img2[:, :, None]
    elif input_order == "CHW":
        img, img2 = img.transpose(1, 2, 0), img2.transpose(1, 2, 0)
    if img.ndim != 3:
        raise ValueError(f"expected an HxWxC image, got shape {img.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    if img.size == 0:
        raise ValueError(f"nothing left after cropping {crop_border} px from images of shape {np.shape(img2)}")
    return img, img2


def _channels(rows: np.ndarray, test_y_channel: bool) -> np.ndarray:
    """A strip of rows as the float64 channels scored: Y (HxWx1) or all channels."""
    if test_y_channel and rows.shape[2] == 3:
        return rgb2ycbcr_y(rows)[:, :, None]
    return rows.astype(np.float64)


def calculate_psnr(img, img2, crop_border: int, input_order: str = "HWC", test_y_channel: bool = True) -> float:
    """PSNR in dB for peak 255; identical images give inf."""
    a, b = _prepare(img, img2, crop_border, input_order)
    sse, n = 0.0, 0
    for s in range(0, a.shape[0], STRIP_ROWS):
        d = _channels(a[s:s + STRIP_ROWS], test_y_channel) - _channels(b[s:s + STRIP_ROWS], test_y_channel)
        sse += float(np.sum(d * d))
        n += d.size
    mse = sse / n
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 * 255.0 / mse))


def gaussian_kernel_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised sampled Gaussian, as cv2.getGaussianKernel(size, sigma)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x**2) / (2.0 * sigma * sigma))
    return k / k.sum()


def _filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """'valid' 2-D correlation with the separable window outer(k, k)."""
    r = len(k) // 2
    y = correlate1d(x, k, axis=0, mode="constant")
    y = correlate1d(y, k, axis=1, mode="constant")
    return y[r:-r, r:-r]


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM map over the 'valid' region of two single-channel float64 arrays."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = gaussian_kernel_1d(11, 1.5)
    mu1, mu2 = _filter_valid(a, k), _filter_valid(b, k)
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = _filter_valid(a * a, k) - mu1_sq
    sigma2_sq = _filter_valid(b * b, k) - mu2_sq
    sigma12 = _filter_valid(a * b, k) - mu1_mu2
    return ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))


def calculate_ssim(img, img2, crop_border: int, input_order: str = "HWC", test_y_channel: bool = True) -> float:
    """SSIM (BasicSR's definition); needs at least 11x11 pixels after cropping. Computed a strip of map rows
    at a time, each strip read with the 10 rows of context the 11x11 window needs (so its values are exact)."""
    a, b = _prepare(img, img2, crop_border, input_order)
    h, w = a.shape[:2]
    if h < 11 or w < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {h}x{w}")
    total = None
    for s in range(0, h - 10, STRIP_ROWS):
        x, y = _channels(a[s:s + STRIP_ROWS + 10], test_y_channel), _channels(b[s:s + STRIP_ROWS + 10], test_y_channel)
        sums = np.array([_ssim_map(x[:, :, c], y[:, :, c]).sum() for c in range(x.shape[2])])
        total = sums if total is None else total + sums
    return float(np.mean(total / ((h - 10) * (w - 10))))
