"""Seeded synthetic camera degradations: HR uint8 image -> target-domain LR uint8 image.

Each entry of DEGRADATIONS models one imaging pipeline, chosen so that the demo target domains differ
from the clean bicubic source domain in the ways real cameras do (optics blur, signal-dependent sensor
noise, in-camera processing, compression). A dataset names one with a spec
`{"type": name, **params}`; missing params take the defaults below, unknown ones are refused.

All noise comes from `np.random.default_rng(seed)`, and JPEG goes through Pillow's deterministic
encoder, so `degrade(hr, spec, seed)` is a pure function of its arguments.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from ioda.data.imresize import imresize
from ioda.errors import IodaError


@dataclass(frozen=True)
class Degradation:
    name: str
    fn: Callable[..., np.ndarray]  # fn(hr_float01, rng, **params) -> lr float in [0, 1] or uint8
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip()


DEGRADATIONS: dict[str, Degradation] = {}


def register(name: str, **defaults: Any) -> Callable:
    def wrap(fn: Callable) -> Callable:
        DEGRADATIONS[name] = Degradation(name, fn, {"scale": 4, **defaults})
        return fn

    return wrap


# ---------------------------------------------------------------- building blocks (float RGB in [0, 1])


def gaussian_kernel(sigma_x: float, sigma_y: float, angle_deg: float) -> np.ndarray:
    """Anisotropic Gaussian PSF: std sigma_x along the direction `angle_deg`, sigma_y across it."""
    radius = int(math.ceil(3 * max(sigma_x, sigma_y)))
    ax = np.arange(-radius, radius + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    t = math.radians(angle_deg)
    u = math.cos(t) * xx + math.sin(t) * yy
    v = -math.sin(t) * xx + math.cos(t) * yy
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return k / k.sum()


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # 'reflect' (symmetric) borders, as MATLAB's imfilter(..., 'symmetric')
    return np.stack([ndimage.convolve(img[:, :, c], kernel, mode="reflect") for c in range(img.shape[2])], 2)


def downscale(img: np.ndarray, scale: int) -> np.ndarray:
    return imresize(img, 1.0 / scale)


def poisson_gaussian(img: np.ndarray, rng: np.random.Generator, photons: float, read_sigma: float) -> np.ndarray:
    """Shot noise (Poisson with `photons` electrons at full scale) plus Gaussian read noise."""
    shot = rng.poisson(np.clip(img, 0, None) * photons) / photons
    return shot + rng.normal(0.0, read_sigma, img.shape)


def quantize(img: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def jpeg(img_u8: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through baseline JPEG with 4:2:0 chroma subsampling (what cameras write)."""
    buf = io.BytesIO()
    Image.fromarray(img_u8).save(buf, format="JPEG", quality=int(quality), subsampling=2, optimize=False)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


# BT.601 full-range RGB <-> YCbCr (what JPEG uses), in [0, 1] with chroma centred on 0
_RGB2YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC2RGB = np.linalg.inv(_RGB2YCC)


def rgb_to_ycc(img: np.ndarray) -> np.ndarray:
    return img @ _RGB2YCC.T


def ycc_to_rgb(img: np.ndarray) -> np.ndarray:
    return img @ _YCC2RGB.T


# ---------------------------------------------------------------- the degradations


@register("bicubic")
def bicubic(hr: np.ndarray, rng: np.random.Generator, scale: int) -> np.ndarray:
    """Clean MATLAB bicubic downsampling (antialiased imresize of the uint8 image), the source domain.

    Params: scale (4)."""
    return imresize(quantize(hr), 1.0 / scale)


@register(
    "canon_like",
    blur_sigma_x=2.5,
    blur_sigma_y=1.5,
    blur_angle=30.0,
    photons=800.0,
    read_sigma=0.004,
    jpeg_quality=75,
)
def canon_like(
    hr: np.ndarray,
    rng: np.random.Generator,
    scale: int,
    blur_sigma_x: float,
    blur_sigma_y: float,
    blur_angle: float,
    photons: float,
    read_sigma: float,
    jpeg_quality: int,
) -> np.ndarray:
    """A DSLR at a short focal length (as RealSR's LR shots): lens blur, sensor noise, JPEG.

    1. anisotropic Gaussian PSF on the HR scene (std blur_sigma_x / blur_sigma_y HR pixels, rotated by
       blur_angle degrees): the zoom lens at its wide end is softer than bicubic assumes;
    2. MATLAB bicubic x`scale` down (the sensor's coarser sampling);
    3. Poisson-Gaussian noise: shot noise with `photons` electrons at full scale (variance grows with
       the signal) plus Gaussian read noise of std `read_sigma` (in [0, 1] units);
    4. 8-bit quantisation and JPEG at quality `jpeg_quality` (4:2:0).
    Defaults: sigma 2.5 / 1.5 at 30 degrees, 800 photons, read 0.004, quality 75."""
    img = blur(hr, gaussian_kernel(blur_sigma_x, blur_sigma_y, blur_angle))
    img = downscale(img, scale)
    img = poisson_gaussian(img, rng, photons, read_sigma)
    return jpeg(quantize(img), jpeg_quality)


@register("low_light", exposure=0.15, gamma=2.2, photons=300.0, read_sigma=0.003)
def low_light(
    hr: np.ndarray,
    rng: np.random.Generator,
    scale: int,
    exposure: float,
    gamma: float,
    photons: float,
    read_sigma: float,
) -> np.ndarray:
    """An under-exposed shot brightened in camera: strong noise, most visible in the shadows.

    1. undo the display gamma (linear light = value ** gamma) and scale by `exposure` (the fraction of
       light that reached the sensor);
    2. MATLAB bicubic x`scale` down;
    3. shot noise with `photons` electrons at full well (few photons: strong, signal-dependent) and read
       noise `read_sigma`, both on the dark linear signal, where the sensor sees them;
    4. digital gain 1 / exposure, re-apply the gamma, clip to [0, 1] and quantise to 8 bit.
    Defaults: exposure 0.15, gamma 2.2, 300 photons, read 0.003."""
    lin = np.clip(hr, 0, 1) ** gamma * exposure
    lin = np.clip(downscale(lin, scale), 0, None)
    lin = poisson_gaussian(lin, rng, photons, read_sigma)
    out = np.clip(lin / exposure, 0, 1) ** (1.0 / gamma)
    return quantize(out)


@register(
    "sensor_halo",
    chroma_sigma=0.03,
    chroma_blob=1.5,
    luma_sigma=0.006,
    sharpen_amount=1.2,
    sharpen_radius=1.5,
    jpeg_quality=70,
)
def sensor_halo(
    hr: np.ndarray,
    rng: np.random.Generator,
    scale: int,
    chroma_sigma: float,
    chroma_blob: float,
    luma_sigma: float,
    sharpen_amount: float,
    sharpen_radius: float,
    jpeg_quality: int,
) -> np.ndarray:
    """A small phone sensor with aggressive in-camera processing: colour blotches and sharpening halos.

    1. MATLAB bicubic x`scale` down;
    2. chroma noise in YCbCr: Gaussian noise of std `chroma_sigma` on Cb and Cr, low-pass filtered with
       a Gaussian of `chroma_blob` LR pixels (demosaicing spreads it into blotches) and renormalised to
       keep its std, plus weak luma noise `luma_sigma`;
    3. unsharp masking on all channels: out = img + sharpen_amount * (img - gauss(img, sharpen_radius)),
       which makes bright/dark halos along edges;
    4. 8-bit quantisation and JPEG at quality `jpeg_quality`.
    Defaults: chroma 0.03 with 1.5 px blobs, luma 0.006, sharpening 1.2 at radius 1.5, quality 70."""
    img = downscale(hr, scale)
    ycc = rgb_to_ycc(img)
    h, w = ycc.shape[:2]
    for c in (1, 2):
        n = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (h, w)), chroma_blob, mode="reflect")
        ycc[:, :, c] += chroma_sigma * n / max(float(n.std()), 1e-12)
    ycc[:, :, 0] += rng.normal(0.0, luma_sigma, (h, w))
    img = ycc_to_rgb(ycc)
    smooth = np.stack([ndimage.gaussian_filter(img[:, :, c], sharpen_radius, mode="reflect") for c in range(3)], 2)
    img = img + sharpen_amount * (img - smooth)
    return jpeg(quantize(img), jpeg_quality)


# ---------------------------------------------------------------- entry point

# limits that keep each parameter physically meaningful: (low, high) inclusive
_RANGES = {
    "scale": (1, 16),
    "blur_sigma_x": (0.1, 20.0),
    "blur_sigma_y": (0.1, 20.0),
    "blur_angle": (-360.0, 360.0),
    "photons": (1.0, 1e7),
    "read_sigma": (0.0, 1.0),
    "jpeg_quality": (1, 95),
    "exposure": (1e-3, 1.0),
    "gamma": (0.1, 5.0),
    "chroma_sigma": (0.0, 1.0),
    "chroma_blob": (0.1, 10.0),
    "luma_sigma": (0.0, 1.0),
    "sharpen_amount": (0.0, 10.0),
    "sharpen_radius": (0.1, 10.0),
}
_INTS = {"scale", "jpeg_quality"}


def resolve_spec(spec: dict, where: str = "degradation") -> tuple[Degradation, dict[str, Any]]:
    """Validate a spec and return the degradation with its full parameter set (defaults filled in)."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise IodaError(f"{where}: expected a mapping with a 'type' key (one of {', '.join(DEGRADATIONS)})")
    name = spec["type"]
    if name not in DEGRADATIONS:
        raise IodaError(f"{where}.type: unknown degradation {name!r} (expected one of {', '.join(DEGRADATIONS)})")
    deg = DEGRADATIONS[name]
    params = dict(deg.defaults)
    for key, value in spec.items():
        if key == "type":
            continue
        if key not in deg.defaults:
            raise IodaError(
                f"{where}.{key}: unknown parameter for degradation {name!r} (expected {', '.join(deg.defaults)})"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise IodaError(f"{where}.{key}: expected a number, got {value!r}")
        if key in _INTS and float(value) != int(value):
            raise IodaError(f"{where}.{key}: expected an integer, got {value!r}")
        lo, hi = _RANGES[key]
        if not lo <= value <= hi:
            raise IodaError(f"{where}.{key}: {value!r} is outside [{lo}, {hi}]")
        params[key] = int(value) if key in _INTS else float(value)
    return deg, params


def degrade(hr: np.ndarray, spec: dict, seed: int, where: str = "degradation") -> np.ndarray:
    """Apply the degradation `spec` to an HxWx3 uint8 HR image; returns the LR image (uint8).

    HR height and width must be divisible by the spec's scale (so LR * scale == HR exactly)."""
    deg, params = resolve_spec(spec, where)
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise IodaError(f"{where}: expected an HxWx3 uint8 HR image, got {hr.shape} {hr.dtype}")
    scale = params["scale"]
    if hr.shape[0] % scale or hr.shape[1] % scale:
        raise IodaError(
            f"{where}: HR size {hr.shape[1]}x{hr.shape[0]} is not divisible by scale {scale} (crop it first)"
        )
    rng = np.random.default_rng(seed)
    out = deg.fn(hr.astype(np.float64) / 255.0, rng, **params)
    # every registered fn ends by quantising; a new one that forgets is a programming error
    assert out.dtype == np.uint8 and out.shape == (hr.shape[0] // scale, hr.shape[1] // scale, 3), out.shape
    return out
