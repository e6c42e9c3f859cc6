"""Region-range masks for Alpha-CLIP's alpha channel, drawn per LR crop (Table 3's variants).

Registry: `full`, `grid`, `box`, `instance`; `sample_region(kind, labels_crop or (h, w), rng, **opts)`
returns (mask bool hxw on the LR crop, fell_back). Masks are in LR pixels; `upsample_mask(mask, scale)`
gives the HR mask that covers exactly the same content (nearest, each LR pixel -> scale x scale block).

- full: all ones (source images always use it).
- grid: a grid of `cell` x `cell` LR pixels (default 16 LR px = 64 HR px at x4; the paper says 16-px
  cells without saying which image, we read LR) from the crop's top-left; each cell is on with
  probability `p` (0.5). An all-off draw is replaced by one random cell so the region is never empty.
- box: one axis-aligned rectangle; height and width uniform in [min_frac, 1] of the crop (min_frac 0.25),
  position uniform.
- instance: instances of the cached label map with at least `min_in_crop` pixels inside the crop
  (1000 px for a 128x128 LR crop as in the paper; for other crop sizes the threshold scales with the crop
  area: round(min_in_crop * h * w / 128**2)); k ~ uniform{1..N}, k distinct instances chosen uniformly,
  their union is the mask. If no instance qualifies: full mask and fell_back=True (the trainer counts it).
  The authors' rule (protocol `authors`): scale_threshold=False (1000 px whatever the crop size) and
  include_unlabelled=True (label 0, the pixels no SAM mask covers, is a candidate like any instance); with no
  candidate their code crashes (random.randint(1, 0)), we keep the counted full-mask fallback.

HR masks (`upsample_mask(mask, scale, mode)`): "nearest" (each LR pixel -> scale x scale block, same content)
or "bilinear_eq", the authors' cv2.resize(mask * 255, INTER_LINEAR) == 255: an HR pixel is on only if every LR
pixel with a non-zero bilinear weight is on, which erodes foreground by about scale/2 HR px at each edge
(2 px at x4), nothing at the image border (clamped sampling).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

REFERENCE_CROP = 128  # LR crop side for which the paper's 1000-px threshold is stated
DEFAULT_MIN_IN_CROP = 1000

Sampler = Callable[..., tuple[np.ndarray, bool]]
REGION_SAMPLERS: dict[str, Sampler] = {}


def register(name: str) -> Callable[[Sampler], Sampler]:
    def deco(fn: Sampler) -> Sampler:
        REGION_SAMPLERS[name] = fn
        return fn

    return deco


def _shape(labels_or_hw) -> tuple[int, int]:
    if isinstance(labels_or_hw, np.ndarray):
        if labels_or_hw.ndim != 2:
            raise ValueError(f"expected a 2-D label crop, got shape {labels_or_hw.shape}")
        return labels_or_hw.shape
    h, w = labels_or_hw
    return int(h), int(w)


@register("full")
def full_region(labels_or_hw, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    return np.ones(_shape(labels_or_hw), dtype=bool), False


@register("grid")
def grid_region(labels_or_hw, rng: np.random.Generator, cell: int = 16, p: float = 0.5) -> tuple[np.ndarray, bool]:
    h, w = _shape(labels_or_hw)
    gh, gw = -(-h // cell), -(-w // cell)
    on = rng.random((gh, gw)) < p
    if not on.any():
        on.flat[rng.integers(on.size)] = True
    return np.repeat(np.repeat(on, cell, axis=0), cell, axis=1)[:h, :w], False


@register("box")
def box_region(labels_or_hw, rng: np.random.Generator, min_frac: float = 0.25) -> tuple[np.ndarray, bool]:
    h, w = _shape(labels_or_hw)
    bh = int(rng.integers(max(1, round(min_frac * h)), h + 1))
    bw = int(rng.integers(max(1, round(min_frac * w)), w + 1))
    y = int(rng.integers(0, h - bh + 1))
    x = int(rng.integers(0, w - bw + 1))
    mask = np.zeros((h, w), dtype=bool)
    mask[y:y + bh, x:x + bw] = True
    return mask, False


def instance_threshold(h: int, w: int, min_in_crop: int = DEFAULT_MIN_IN_CROP) -> int:
    """Pixels an instance needs inside an h x w crop: min_in_crop for 128x128, scaled by area otherwise."""
    return max(1, int(round(min_in_crop * h * w / REFERENCE_CROP**2)))


def eligible_instances(labels_crop: np.ndarray, min_in_crop: int = DEFAULT_MIN_IN_CROP, *,
                       scale_threshold: bool = True, include_unlabelled: bool = False) -> np.ndarray:
    h, w = labels_crop.shape
    counts = np.bincount(labels_crop.ravel().astype(np.int64))
    need = instance_threshold(h, w, min_in_crop) if scale_threshold else max(1, int(min_in_crop))
    ids = np.flatnonzero(counts >= need)
    return ids if include_unlabelled else ids[ids != 0]


@register("instance")
def instance_region(labels_or_hw, rng: np.random.Generator, min_in_crop: int = DEFAULT_MIN_IN_CROP,
                    scale_threshold: bool = True, include_unlabelled: bool = False) -> tuple[np.ndarray, bool]:
    if not isinstance(labels_or_hw, np.ndarray):
        raise ValueError("the 'instance' region needs the label-map crop, not only its size")
    ids = eligible_instances(labels_or_hw, min_in_crop, scale_threshold=scale_threshold,
                             include_unlabelled=include_unlabelled)
    if ids.size == 0:
        return np.ones(labels_or_hw.shape, dtype=bool), True
    k = int(rng.integers(1, ids.size + 1))
    chosen = rng.choice(ids, size=k, replace=False)
    return np.isin(labels_or_hw, chosen), False


def sample_region(kind: str, labels_or_hw, rng: np.random.Generator, **opts) -> tuple[np.ndarray, bool]:
    """(mask bool hxw, fell_back). `labels_or_hw`: the label-map crop (needed by 'instance') or (h, w)."""
    try:
        sampler = REGION_SAMPLERS[kind]
    except KeyError:
        raise ValueError(f"region kind {kind!r}: unknown (expected one of {', '.join(REGION_SAMPLERS)})") from None
    return sampler(labels_or_hw, rng, **opts)


UPSAMPLE_MODES = ("nearest", "bilinear_eq")


def _bilinear_support(n: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of n*scale output positions, the two input indices cv2/torch bilinear (half-pixel centres,
    clamped) reads with a non-zero weight (the same index twice where only one weighs)."""
    src = (np.arange(n * scale, dtype=np.float64) + 0.5) / scale - 0.5
    src = np.maximum(src, 0.0)  # cv2 and torch clamp negative source positions to the first pixel
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    frac = src - np.floor(src)
    i1 = np.where(frac > 0, np.minimum(i0 + 1, n - 1), i0)
    return i0, i1


def upsample_mask(mask: np.ndarray, scale: int, mode: str = "nearest") -> np.ndarray:
    """Upsampling by an integer factor. nearest: HR pixel (y, x) takes LR pixel (y // scale, x // scale).
    bilinear_eq: the authors' cv2.resize(bilinear) == 255, i.e. on where all contributing LR pixels are on."""
    mask = np.asarray(mask)
    if mode == "nearest":
        return np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)
    if mode != "bilinear_eq":
        raise ValueError(f"upsample mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    m = mask.astype(bool)
    y0, y1 = _bilinear_support(m.shape[0], scale)
    x0, x1 = _bilinear_support(m.shape[1], scale)
    rows = m[y0] & m[y1]
    return rows[:, x0] & rows[:, x1]
