"""Offline demo datasets cut from the RGB photos bundled with scikit-image (no network needed).

Each photo is cut into non-overlapping square HR tiles of `tile` pixels (default 192, divisible by
the scale 4, so LR tiles are 48x48), on a grid centred in the photo. Nearly flat tiles (per-channel
std below `min_std` grey levels: the black sky of hubble_deep_field, the border of retina) carry no
texture to super-resolve and are dropped. LR tiles come from `degrade(hr, spec, seed)` with a seed
derived from (dataset seed, dataset name, split, tile stem), so a tile's LR does not change when other
tiles are added or removed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ioda.errors import IodaError

# name -> loader; all ship inside the scikit-image wheel (no pooch download)
PHOTOS = {
    "astronaut": lambda d: d.astronaut(),
    "coffee": lambda d: d.coffee(),
    "chelsea": lambda d: d.chelsea(),
    "rocket": lambda d: d.rocket(),
    "stereo_motorcycle_left": lambda d: d.stereo_motorcycle()[0],
    "stereo_motorcycle_right": lambda d: d.stereo_motorcycle()[1],
    "hubble_deep_field": lambda d: d.hubble_deep_field(),
    "immunohistochemistry": lambda d: d.immunohistochemistry(),
    "retina": lambda d: d.retina(),
    "colorwheel": lambda d: d.colorwheel(),
}


@dataclass(frozen=True)
class Tile:
    stem: str
    photo: str
    box: tuple[int, int, int, int]  # y, x, height, width in the photo
    hr: np.ndarray


def load_photo(name: str) -> np.ndarray:
    if name not in PHOTOS:
        raise IodaError(f"demo photo {name!r} is not available offline (expected one of {', '.join(PHOTOS)})")
    import skimage.data

    img = np.asarray(PHOTOS[name](skimage.data))
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise IodaError(f"demo photo {name!r}: expected HxWx3 uint8, got {img.shape} {img.dtype}")
    return img


def cut_tiles(img: np.ndarray, photo: str, tile: int, min_std: float) -> list[Tile]:
    """Non-overlapping tile x tile crops on a grid centred in the photo, dropping nearly flat ones."""
    h, w = img.shape[:2]
    rows, cols = h // tile, w // tile
    y0, x0 = (h - rows * tile) // 2, (w - cols * tile) // 2
    out = []
    for r in range(rows):
        for c in range(cols):
            y, x = y0 + r * tile, x0 + c * tile
            hr = np.ascontiguousarray(img[y : y + tile, x : x + tile])
            if hr.reshape(-1, 3).std(axis=0).max() < min_std:
                continue
            out.append(Tile(f"{photo}_r{r}c{c}", photo, (y, x, tile, tile), hr))
    return out


def tile_seed(seed: int, *parts: str) -> int:
    """A stable per-tile seed (crc32, not Python's salted hash)."""
    key = zlib.crc32("/".join(parts).encode())
    return int(np.random.SeedSequence([seed, key]).generate_state(1)[0])


def demo_tiles(recipe: dict, scale: int) -> dict[str, list[Tile]]:
    """{split: tiles} for a demo recipe {"tile": int, "min_std": float, "splits": {split: [photos]}}."""
    tile = recipe["tile"]
    if not isinstance(tile, int) or tile <= 0 or tile % scale:
        raise IodaError(f"demo.tile: {tile!r} must be a positive integer divisible by the scale {scale}")
    seen: dict[str, str] = {}
    out = {}
    for split, photos in recipe["splits"].items():
        tiles = []
        for photo in photos:
            if photo in seen:
                raise IodaError(f"demo.splits.{split}: photo {photo!r} is already used by split {seen[photo]!r}")
            seen[photo] = split
            tiles += cut_tiles(load_photo(photo), photo, tile, float(recipe["min_std"]))
        if not tiles:
            raise IodaError(f"demo.splits.{split}: no tiles of {tile} px with texture in photos {photos}")
        out[split] = tiles
    return out
