"""`ioda masks IMAGE --out labels.npz`: the instance label map of one target LR image, cached with a sidecar."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ioda.config import defaults
from ioda.errors import IodaError
from ioda.imageio import IMAGE_SUFFIXES, image_arg, read_image, write_image
from ioda.masks.labelmap import DEFAULT_MIN_AREA, PAINT_ORDERS
from ioda.masks.labels import cached_label_map, load_label_map, sidecar_path
from ioda.masks.sam import SAM_CHECKPOINTS
from ioda.masks.superpixel import METHODS
from ioda.runtime import setup_logging

LOG = logging.getLogger("ioda.masks")


def colour_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The label map coloured over the image (fixed palette per label id; label 0 keeps the image)."""
    palette = np.random.default_rng(0).integers(40, 256, size=(int(labels.max(initial=0)) + 1, 3)).astype(np.float64)
    out = image.astype(np.float64)
    on = labels > 0
    out[on] = (1 - alpha) * out[on] + alpha * palette[labels[on]]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ioda masks", description=__doc__)
    p.add_argument("image", nargs="?", help="target LR image")
    p.add_argument("--pool", help="instead of IMAGE: the --index-th image (by sorted name) of this folder")
    p.add_argument("--index", type=int, help="with --pool: which image, from 0 (default 0)")
    p.add_argument("--out", required=True, help="label map to write (.npz; a .json sidecar is written next to it)")
    p.add_argument("--source", choices=("superpixel", "sam"), default="superpixel",
                   help="instance source (default superpixel: offline; sam needs a checkpoint)")
    p.add_argument("--min-area", type=int, default=DEFAULT_MIN_AREA, help="drop instances under this many px")
    p.add_argument("--sam-model", choices=tuple(SAM_CHECKPOINTS), default="vit_h")
    p.add_argument("--sam-checkpoint", help="SAM weights file (e.g. sam_vit_h_4b8939.pth)")
    p.add_argument("--allow-untrained-sam", action="store_true", help="tests/CI only: random SAM weights")
    p.add_argument("--paint", choices=PAINT_ORDERS, default="largest_first",
                   help="SAM overlaps: largest_first (smaller masks on top, min area on visible px; protocol paper) "
                   "or sam_order (SAM's order, later on top, min area on the raw mask; the authors' Deal_mask.py)")
    p.add_argument("--points-per-side", type=int, default=32, help="SAM automatic-mask grid (default 32)")
    p.add_argument("--superpixel-method", choices=METHODS, default="slic")
    p.add_argument("--n-segments", type=int, help="SLIC: approximate number of superpixels (overrides --segment-area)")
    p.add_argument("--segment-area", type=int, default=defaults("masks")["segment_area"],
                   help="SLIC: mean superpixel area in px (default: the params schema's masks.segment_area)")
    p.add_argument("--seed", type=int, default=0, help="seed of an untrained SAM's initialisation")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="recompute even if a matching cache exists")
    p.add_argument("--preview", help="also write the label map coloured over the image (PNG)")
    p.add_argument("--reuse-labels", metavar="NPZ", help="stand-in runs only: take this label map (resized to the "
                   "image) instead of computing one; the sidecar records it")
    p.add_argument("--log", help="append the log to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    image = image_arg(args.image, args.pool, args.index)
    out = Path(args.out)
    if out.suffix != ".npz":
        raise IodaError(f"--out {out}: expected a path ending in .npz")
    if args.preview and Path(args.preview).suffix.lower() not in IMAGE_SUFFIXES:
        raise IodaError(f"--preview {args.preview}: expected an image path ({', '.join(IMAGE_SUFFIXES)})")
    if args.min_area < 0:
        raise IodaError(f"--min-area: expected a non-negative number of pixels, got {args.min_area}")
    if args.source == "sam":
        from ioda.runtime import resolve_device

        params = {"model_type": args.sam_model, "checkpoint": args.sam_checkpoint,
                  "allow_untrained": args.allow_untrained_sam, "min_area": args.min_area,
                  "points_per_side": args.points_per_side, "seed": args.seed, "paint": args.paint,
                  "device": str(resolve_device(args.device))}
    else:
        params = {"method": args.superpixel_method, "n_segments": args.n_segments,
                  "segment_area": args.segment_area, "min_area": args.min_area}
    if args.reuse_labels:
        from ioda.masks.reuse import reuse_label_map

        meta = reuse_label_map(image, args.reuse_labels, out)
        labels = load_label_map(out)
        LOG.warning("%s: label map reused from %s (stand-in run)", out, args.reuse_labels)
    else:
        labels, meta = cached_label_map(image, out, args.source, params, reuse=not args.force)
    LOG.info("%s: %d instances (%s) -> %s + %s", image, meta["count"], args.source, out, sidecar_path(out).name)
    if args.preview:
        write_image(args.preview, colour_labels(read_image(image), labels))
    return 0
