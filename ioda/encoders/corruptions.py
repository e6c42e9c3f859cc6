"""A wide family of camera degradations for training the degradation encoder (not the demo's target domains:
those are ioda.data.degradations, which the encoder never trains on).

`sample(rng)` draws one degradation's parameters (a plain dict, JSON-safe); `apply(hr, params, scale, rng)` applies
it to a 1x3xHxW float HR tensor in [0,1] and returns the image at 1/scale (scale 4: an LR photo; scale 1: the same
camera at the SR scale). Order: white balance / gamma, optics blur, downsampling, sensor noise, sharpening, JPEG,
8-bit rounding. A `PURE_BICUBIC` share of draws is the source domain itself (MATLAB-like bicubic only).
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PURE_BICUBIC = 0.2
KERNEL_SIZE = 21  # at the HR scale, as DASR's
DOWN_KERNELS = ("bicubic", "bilinear", "area", "nearest")
PROBE_KEYS = ("blur", "noise")  # the strengths a linear probe reads back (ioda.encoders.probes)


def sample(rng: np.random.Generator) -> dict:
    """One degradation's parameters."""
    if rng.random() < PURE_BICUBIC:
        return {"bicubic": True, "blur": 0.0, "sigma": [0.0, 0.0], "theta": 0.0, "down": "bicubic", "noise": 0.0,
                "poisson": 0.0, "gain": [1.0, 1.0, 1.0], "gamma": 1.0, "sharpen": 0.0, "jpeg": 0}
    p: dict = {"bicubic": False}
    if rng.random() < 0.8:
        s1 = float(rng.uniform(0.2, 4.0))
        s2 = s1 if rng.random() < 0.5 else float(rng.uniform(0.2, 4.0))
        p.update(sigma=[s1, s2], theta=float(rng.uniform(0, math.pi)))
    else:
        p.update(sigma=[0.0, 0.0], theta=0.0)
    p["blur"] = float(math.sqrt(p["sigma"][0] * p["sigma"][1]))  # geometric mean: one strength for the probe
    p["down"] = str(rng.choice(DOWN_KERNELS, p=[0.55, 0.2, 0.15, 0.1]))
    p["noise"] = float(rng.uniform(0, 25) / 255) if rng.random() < 0.6 else 0.0
    p["poisson"] = float(10 ** rng.uniform(2.0, 3.5)) if rng.random() < 0.25 else 0.0  # photons at full scale
    p["gain"] = ([float(g) for g in rng.uniform(0.8, 1.2, 3)] if rng.random() < 0.4 else [1.0, 1.0, 1.0])
    p["gamma"] = float(rng.uniform(0.7, 1.45)) if rng.random() < 0.3 else 1.0
    p["sharpen"] = float(rng.uniform(0.3, 1.5)) if rng.random() < 0.2 else 0.0
    p["jpeg"] = int(rng.integers(30, 96)) if rng.random() < 0.35 else 0
    return p


def _kernel(sigma: list[float], theta: float) -> torch.Tensor:
    r = KERNEL_SIZE // 2
    ax = torch.arange(-r, r + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    u = math.cos(theta) * xx + math.sin(theta) * yy
    v = -math.sin(theta) * xx + math.cos(theta) * yy
    k = torch.exp(-0.5 * ((u / sigma[0]) ** 2 + (v / sigma[1]) ** 2))
    return (k / k.sum()).float()


def _conv_same(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    pad = k.shape[-1] // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(x, k.expand(3, 1, *k.shape[-2:]).to(x), groups=3)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    arr = (x[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(out).permute(2, 0, 1)[None].contiguous()


def apply(hr: torch.Tensor, p: dict, scale: int, rng: np.random.Generator) -> torch.Tensor:
    """1x3xHxW HR in [0,1] -> 1x3x(H/scale)x(W/scale) degraded, 8-bit rounded, in [0,1]."""
    x = hr.float()
    if p["gain"] != [1.0, 1.0, 1.0]:
        x = x * torch.tensor(p["gain"]).view(1, 3, 1, 1)
    if p["gamma"] != 1.0:
        x = x.clamp(0, 1) ** p["gamma"]
    if p["sigma"][0] > 0:
        x = _conv_same(x, _kernel(p["sigma"], p["theta"]))
    if scale > 1:
        size = (x.shape[-2] // scale, x.shape[-1] // scale)
        if p["down"] in ("bicubic", "bilinear"):
            x = F.interpolate(x, size=size, mode=p["down"], align_corners=False, antialias=True)
        else:
            x = F.interpolate(x, size=size, mode=p["down"])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    if p["poisson"] > 0:
        x = torch.poisson(x.clamp(0, 1) * p["poisson"], generator=gen) / p["poisson"]
    if p["noise"] > 0:
        x = x + torch.randn(x.shape, generator=gen) * p["noise"]
    if p["sharpen"] > 0:
        x = x + p["sharpen"] * (x - _conv_same(x, _kernel([1.0, 1.0], 0.0)))
    x = x.clamp(0, 1)
    if p["jpeg"]:
        x = _jpeg(x, p["jpeg"])
    return torch.round(x * 255) / 255


def probe_targets(p: dict) -> list[float]:
    return [float(p[k]) for k in PROBE_KEYS]
