"""Stand-in runs only: the label map of one image reused for another (SAM vit_h on a CPU costs minutes per
image; stand-in masks mean nothing anyway). The map is resized (nearest) to the other image's size and its
sidecar says where it came from."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ioda.files import sha256_file
from ioda.imageio import read_image
from ioda.masks.labels import label_meta, load_label_map, save_label_map


def reuse_label_map(image_path: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write `source`'s label map, resized to the image at `image_path`, as `out`; returns its sidecar."""
    image = read_image(image_path)
    labels = load_label_map(source)
    h, w = image.shape[:2]
    if labels.shape != (h, w):
        labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize((w, h), Image.NEAREST), dtype=np.int32)
    src = label_meta(source)
    meta = {"source": f"reused ({src.get('source')})", "reused_from": str(source), "standins": True,
            "parameters": src.get("parameters"), "image": str(image_path), "image_sha256": sha256_file(image_path),
            "image_height": int(h), "image_width": int(w), "seconds": 0.0}
    save_label_map(out, labels, meta)
    return label_meta(out)
