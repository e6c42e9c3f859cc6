"""LR/HR pairs on disk and random training patches from them.

On-disk layout of one split (what `ioda prepare` writes and what users place by hand):
    <split_dir>/HR/<stem>.png
    <split_dir>/LR_x<scale>/<stem>.png        (same stem; LR size * scale == HR size)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ioda.errors import IodaError
from ioda.imageio import list_images, read_image


@dataclass(frozen=True)
class Pair:
    stem: str
    lr: Path
    hr: Path | None


def lr_dir(split_dir: str | os.PathLike, scale: int) -> Path:
    return Path(split_dir) / f"LR_x{scale}"


def list_pairs(split_dir: str | os.PathLike, scale: int, require_hr: bool = True) -> list[Pair]:
    """Match LR and HR files by stem; a missing counterpart is an error naming the file."""
    split_dir = Path(split_dir)
    lrs = {p.stem: p for p in list_images(lr_dir(split_dir, scale))}
    if not lrs:
        raise IodaError(f"{lr_dir(split_dir, scale)}: no images (expected LR images for scale x{scale})")
    hr_folder = split_dir / "HR"
    if not require_hr and not hr_folder.is_dir():
        return [Pair(s, p, None) for s, p in sorted(lrs.items())]
    hrs = {p.stem: p for p in list_images(hr_folder)}
    for stem in lrs:
        if stem not in hrs:
            raise IodaError(f"{lrs[stem]}: no HR counterpart named {stem}.* in {hr_folder}")
    for stem in hrs:
        if stem not in lrs:
            raise IodaError(f"{hrs[stem]}: no LR counterpart named {stem}.* in {lr_dir(split_dir, scale)}")
    return [Pair(s, lrs[s], hrs[s]) for s in sorted(lrs)]


def check_pair_sizes(lr: np.ndarray, hr: np.ndarray, scale: int, pair: Pair) -> None:
    want = (lr.shape[0] * scale, lr.shape[1] * scale)
    if hr.shape[:2] != want:
        raise IodaError(
            f"{pair.hr}: HR size {hr.shape[1]}x{hr.shape[0]} does not match LR {pair.lr} "
            f"{lr.shape[1]}x{lr.shape[0]} times scale {scale} (expected {want[1]}x{want[0]})"
        )


def load_pair(pair: Pair, scale: int) -> tuple[np.ndarray, np.ndarray]:
    lr, hr = read_image(pair.lr), read_image(pair.hr)
    check_pair_sizes(lr, hr, scale, pair)
    return lr, hr


def augment(arrays: list[np.ndarray], flip: int, rot: int) -> list[np.ndarray]:
    """The 8 dihedral transforms: flip in {0,1} (horizontal), rot in {0..3} (quarter turns)."""
    out = []
    for a in arrays:
        if flip:
            a = a[:, ::-1]
        a = np.rot90(a, rot, axes=(0, 1))
        out.append(np.ascontiguousarray(a))
    return out


def random_crop_box(h: int, w: int, patch: int, rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))


class PairedPatches(Dataset):
    """Random aligned LR/HR patches with flips and rotations, for supervised training.

    Images are decoded once and kept in memory (the demo and ZSSR sets are small; for DF2K use a
    subset or a larger machine). Randomness comes from `seed` and the index, so an epoch is the same
    on every run whatever the worker count."""

    def __init__(self, pairs: list[Pair], scale: int, lr_patch: int, seed: int = 0, length: int | None = None):
        self._setup([load_pair(p, scale) for p in pairs], [str(p.lr) for p in pairs], scale, lr_patch, seed, length)

    @classmethod
    def from_images(cls, images: Sequence, names: list[str], scale: int, lr_patch: int, seed: int = 0,
                    length: int | None = None, shapes: list[tuple[int, int]] | None = None) -> "PairedPatches":
        """Over (lr, hr) arrays from elsewhere (e.g. a packed store's memory maps: ioda.data.patch_store); the
        same item for the same seed as over the files. shapes: the LR sizes, when reading them costs."""
        self = cls.__new__(cls)
        self._setup(images, names, scale, lr_patch, seed, length, shapes)
        return self

    def _setup(self, images, names, scale, lr_patch, seed, length, shapes=None) -> None:
        self.scale, self.lr_patch, self.seed = scale, lr_patch, seed
        self.images = images
        for name, (h, w) in zip(names, shapes or [lr.shape[:2] for lr, _ in images]):
            if h < lr_patch or w < lr_patch:
                raise IodaError(f"{name}: LR image {w}x{h} is smaller than the LR patch size {lr_patch}")
        self.length = length or len(self.images)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, idx])
        lr, hr = self.images[int(rng.integers(len(self.images)))]
        y, x = random_crop_box(lr.shape[0], lr.shape[1], self.lr_patch, rng)
        s, p = self.scale, self.lr_patch
        lr_p = lr[y : y + p, x : x + p]
        hr_p = hr[y * s : (y + p) * s, x * s : (x + p) * s]
        lr_p, hr_p = augment([lr_p, hr_p], int(rng.integers(2)), int(rng.integers(4)))
        to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0)  # noqa: E731
        return to_t(lr_p), to_t(hr_p)
