"""MAE-like occlusion for target-domain distribution expansion.

A grid of `cell` x `cell` LR pixels is laid over the LR crop from its top-left corner (partial cells at
the right/bottom edges are cells too); each cell is dropped with probability `cell_p`. The trainer applies
it with probability 0.5 per sample, to the target and source pairs; the HR mask is the LR mask upsampled
by the scale (regions.upsample_mask), i.e. cells of scale*cell HR pixels.
partial_cells=False is the authors' grid (range(h // cell)): only whole cells can be dropped, a partial cell at
the right/bottom edge is always kept (no difference for the 128-px crops, whose side is a multiple of 32).
"""

from __future__ import annotations

import numpy as np


def occlusion_keep_mask(h: int, w: int, rng: np.random.Generator, cell: int = 32, cell_p: float = 0.5,
                        partial_cells: bool = True) -> np.ndarray:
    """bool HxW, True = kept pixel, False = occluded (to be zeroed)."""
    if cell < 1 or not 0.0 <= cell_p <= 1.0:
        raise ValueError(f"occlusion needs cell >= 1 and 0 <= cell_p <= 1, got cell={cell}, cell_p={cell_p}")
    gh, gw = (-(-h // cell), -(-w // cell)) if partial_cells else (h // cell, w // cell)
    keep_cells = rng.random((gh, gw)) >= cell_p
    keep = np.ones((max(h, gh * cell), max(w, gw * cell)), dtype=bool)
    keep[:gh * cell, :gw * cell] = np.repeat(np.repeat(keep_cells, cell, axis=0), cell, axis=1)
    return keep[:h, :w]


def maybe_occlusion(h: int, w: int, rng: np.random.Generator, p: float = 0.5, cell: int = 32,
                    cell_p: float = 0.5) -> np.ndarray | None:
    """With probability p an occlusion keep-mask, else None (no occlusion for this sample)."""
    if rng.random() >= p:
        return None
    return occlusion_keep_mask(h, w, rng, cell=cell, cell_p=cell_p)
