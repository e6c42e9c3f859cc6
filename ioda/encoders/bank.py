"""Training material of the degradation encoder, made once per run from source-domain HR images: a bank of
entries, each two crops A and B of different images under one sampled degradation d1 (ioda.encoders.corruptions),
A also under a second degradation d2, and B under d1 at the SR scale. So the positives of an entry share only their
degradation (never their content), and A under d2 shares only its content with A under d1. Precomputing it takes
the 21x21 blur out of every step; the bank is a pure function of (images, seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ioda.encoders import corruptions
from ioda.runtime import progress_enabled


@dataclass
class Bank:
    lr1: torch.Tensor  # Nx3xLxL uint8: crop A under degradation 1, at the LR scale
    lr2: torch.Tensor  # Nx3xLxL uint8: crop A under degradation 2
    lr1b: torch.Tensor  # Nx3xLxL uint8: crop B (another image) under degradation 1
    sr1: torch.Tensor  # Nx3xSxS uint8: crop B's centre under degradation 1 at the SR scale (no downsampling)
    params: list[dict]  # degradation 1 of each entry
    params2: list[dict]
    image: list[int]  # which image crop A came from

    def __len__(self) -> int:
        return self.lr1.shape[0]


def _u8(x: torch.Tensor) -> torch.Tensor:
    return (x[0] * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xSxS float in [0,1] (the image must be at least SxS)."""
    h, w = img.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    crop = img[y:y + size, x:x + size]
    return torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255.0


def build_bank(images: list[np.ndarray], n: int, lr_size: int, sr_size: int, scale: int, seed: int,
               desc: str = "degradation bank") -> Bank:
    """`n` entries from `images` (HxWx3 uint8, each at least lr_size*scale px a side), seeded."""
    rng = np.random.default_rng(seed)
    hr_size = lr_size * scale
    lr1, lr2, lr1b, sr1, p1s, p2s, which = [], [], [], [], [], [], []
    off = (hr_size - sr_size) // 2
    for _ in tqdm(range(n), desc=desc, disable=not progress_enabled(), mininterval=2.0):
        i = int(rng.integers(len(images)))
        j = (i + 1 + int(rng.integers(len(images) - 1))) % len(images) if len(images) > 1 else i
        hr_a, hr_b = random_crop(images[i], hr_size, rng), random_crop(images[j], hr_size, rng)
        p1, p2 = corruptions.sample(rng), corruptions.sample(rng)
        lr1.append(_u8(corruptions.apply(hr_a, p1, scale, rng)))
        lr2.append(_u8(corruptions.apply(hr_a, p2, scale, rng)))
        lr1b.append(_u8(corruptions.apply(hr_b, p1, scale, rng)))
        sr1.append(_u8(corruptions.apply(hr_b[..., off:off + sr_size, off:off + sr_size], p1, 1, rng)))
        p1s.append(p1)
        p2s.append(p2)
        which.append(i)
    return Bank(torch.stack(lr1), torch.stack(lr2), torch.stack(lr1b), torch.stack(sr1), p1s, p2s, which)


def crops(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """One random SxS crop (and a random horizontal flip) of each image of a NxCxHxW batch."""
    n, _, h, w = x.shape
    ys = torch.randint(0, h - size + 1, (n,), generator=gen)
    xs = torch.randint(0, w - size + 1, (n,), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    out = torch.stack([x[i, :, ys[i]:ys[i] + size, xs[i]:xs[i] + size] for i in range(n)])
    out[flips] = out[flips].flip(-1)
    return out


def random_masks(n: int, size: int, gen: torch.Generator, grid: int = 5) -> torch.Tensor:
    """N binary Nx1xSxS masks: a smooth random field thresholded at a random quantile, each side >= 25 % area."""
    field = torch.nn.functional.interpolate(torch.rand(n, 1, grid, grid, generator=gen), size=(size, size),
                                            mode="bicubic", align_corners=False)
    q = 0.3 + 0.4 * torch.rand(n, generator=gen)
    thr = torch.stack([torch.quantile(field[i].flatten(), q[i]) for i in range(n)])
    return (field > thr.view(n, 1, 1, 1)).float()
