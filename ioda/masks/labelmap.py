"""Label-map arithmetic shared by every instance source (SAM, superpixels): int32 HxW, 0 = no instance,
1..N = instances. No files here (ioda.masks.labels caches label maps); the sources import this module."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_MIN_AREA = 100  # px of the LR image; the paper drops SAM instances under 100 px


def relabel(labels: np.ndarray, min_area: int = DEFAULT_MIN_AREA) -> np.ndarray:
    """Drop instances with fewer than `min_area` pixels, renumber the rest 1..N keeping their order."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError("label map has negative labels")
    counts = np.bincount(labels.ravel().astype(np.int64))
    keep = np.flatnonzero(counts >= max(int(min_area), 1))
    keep = keep[keep != 0]
    lut = np.zeros(counts.size, dtype=np.int32)
    lut[keep] = np.arange(1, keep.size + 1, dtype=np.int32)
    return lut[labels]


PAINT_ORDERS = ("largest_first", "sam_order")


def masks_to_label_map(masks: Sequence[np.ndarray], shape: tuple[int, int],
                       min_area: int = DEFAULT_MIN_AREA, paint: str = "largest_first") -> np.ndarray:
    """Paint possibly overlapping binary masks into one label map.

    largest_first (protocol `paper`): masks are painted from the largest to the smallest area (ties keep input
    order), so a small object lying on a large one stays visible; `min_area` is then applied to the visible
    pixels of each instance (renumbered 1..N).
    sam_order (protocol `authors`, their Deal_mask.py): masks are painted in the given (SAM output) order, a
    later mask overwriting earlier ones; `min_area` is applied to each raw mask before painting; the i-th kept
    mask gets label i (a label may end up with few or no visible pixels, as in theirs)."""
    if paint not in PAINT_ORDERS:
        raise ValueError(f"paint order must be one of {PAINT_ORDERS}, got {paint!r}")
    h, w = shape
    masks = [np.asarray(m, dtype=bool) for m in masks]
    for i, m in enumerate(masks):
        if m.shape != (h, w):
            raise ValueError(f"mask {i} has shape {m.shape}, expected {(h, w)}")
    areas = [int(np.count_nonzero(m)) for m in masks]
    labels = np.zeros((h, w), dtype=np.int32)
    if paint == "sam_order":
        kept = [m for m, a in zip(masks, areas) if a >= max(int(min_area), 1)]
        for label, m in enumerate(kept, start=1):
            labels[m] = label
        return labels
    order = sorted(range(len(masks)), key=lambda i: (-areas[i], i))
    for label, i in enumerate(order, start=1):
        labels[masks[i]] = label
    return relabel(labels, min_area)
