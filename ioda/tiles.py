"""When a photo is super-resolved in tiles (sr.png of `ioda adapt`, `ioda evaluate`): pure arithmetic, no torch,
so the commands can state it in their --help before any network is imported."""

from __future__ import annotations

# Photos above this many LR pixels are super-resolved in tiles of AUTO_TILE LR px unless a tile size is given:
# memory bounded by the tile, not by the photo.
AUTO_TILE_PIXELS, AUTO_TILE = 512 * 512, 256
# The smallest tile `ioda evaluate --tile` accepts: below it a tile's network sees too little of the photo and the
# scores move (tiles of 1-8 LR px moved PSNR by up to +0.41 dB); a network may need more (asked of it).
MIN_TILE = 16


def auto_tile(h: int, w: int) -> int:
    """The default tile size for an h x w LR image: 0 (one pass) up to AUTO_TILE_PIXELS, AUTO_TILE above."""
    return AUTO_TILE if h * w > AUTO_TILE_PIXELS else 0
