"""Offline instance source: superpixels from scikit-image, in the same label-map format as SAM.

Superpixels are not objects, but they give region masks of similar sizes without any weights, so the
pipeline and the tests run offline. Both methods are deterministic for a given image and parameters.
- slic (default): compactness=10, sigma=1 (Gaussian pre-smoothing), in Lab space; regions of similar area.
  n_segments defaults to H*W / segment_area (the params schema's masks.segment_area: 2500 px, about 50x50),
  so a 128x128 LR crop (16384 px) overlaps a handful of regions of which several keep >= 1000 px inside the crop, whatever the
  image size. An explicit n_segments overrides it.
- felzenszwalb: scale=100, sigma=0.8, min_size=50 (graph-based; sizes follow the image content).
Regions smaller than min_area (default 100 px) are dropped, as SAM instances are.
"""

from __future__ import annotations

import numpy as np

from ioda.config import defaults
from ioda.errors import IodaError
from ioda.masks.labelmap import DEFAULT_MIN_AREA, relabel

METHODS = ("slic", "felzenszwalb")


def superpixel_label_map(image: np.ndarray, method: str = "slic", n_segments: int | None = None,
                         segment_area: int = defaults("masks")["segment_area"], compactness: float = 10.0,
                         sigma: float | None = None, scale: float = 100.0, min_size: int = 50,
                         min_area: int = DEFAULT_MIN_AREA) -> np.ndarray:
    """HxWx3 uint8 RGB -> int32 HxW label map (0 = none, 1..N)."""
    from skimage.segmentation import felzenszwalb, slic

    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got {image.shape}")
    if method == "slic":
        if n_segments is None:
            if segment_area < 1:
                raise IodaError(f"masks segment_area: expected a positive number of pixels, got {segment_area}")
            n_segments = max(1, round(image.shape[0] * image.shape[1] / segment_area))
        if n_segments < 1:
            raise IodaError(f"masks n_segments: expected a positive integer, got {n_segments}")
        seg = slic(image, n_segments=int(n_segments), compactness=float(compactness),
                   sigma=1.0 if sigma is None else float(sigma), start_label=1, channel_axis=-1)
    elif method == "felzenszwalb":
        seg = felzenszwalb(image, scale=float(scale), sigma=0.8 if sigma is None else float(sigma),
                           min_size=int(min_size), channel_axis=-1) + 1
    else:
        raise IodaError(f"masks superpixel method {method!r}: unknown (expected one of {', '.join(METHODS)})")
    return relabel(seg.astype(np.int64), min_area)
