"""Instance label maps: int32 HxW, 0 = no instance, 1..N = instances; cached as .npz + .json sidecar.

The cache sits next to the data it describes: `labels.npz` (key `labels`) and `labels.json` (source,
parameters, image path + sha256, image size, instance count, timing). Both are written or neither.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ioda.errors import IodaError
from ioda.files import atomic_path, read_json, removed_on_failure, sha256_file, write_json

LOG = logging.getLogger("ioda")
FORMAT_VERSION = 1
SOURCES = ("superpixel", "sam")  # the instance sources of compute_label_map (the schema's masks.source)


def sidecar_path(npz_path: str | os.PathLike) -> Path:
    return Path(npz_path).with_suffix(".json")


def save_label_map(path: str | os.PathLike, labels: np.ndarray, meta: dict[str, Any]) -> None:
    """Write `path` (.npz) and its .json sidecar atomically: both or neither (an old pair is replaced)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise IodaError(f"{path}: label maps are written as .npz (expected a path ending in .npz)")
    labels = np.asarray(labels, dtype=np.int32)
    meta = {**meta, "format": FORMAT_VERSION, "height": int(labels.shape[0]), "width": int(labels.shape[1]),
            "count": int(labels.max(initial=0))}
    with removed_on_failure(path, sidecar_path(path)):
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, labels=labels)
            meta["npz_sha256"] = sha256_file(tmp)  # ties the sidecar to these exact bytes
            meta["npz_size"] = tmp.stat().st_size
        write_json(sidecar_path(path), meta)


def load_label_map(path: str | os.PathLike, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Read a cached label map; IodaError naming the file if it is unreadable or not `expected_hw` (H, W)."""
    path = Path(path)
    if not path.is_file():
        raise IodaError(f"{path}: label map not found (expected an .npz written by `ioda masks`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "labels" not in data:
                raise IodaError(f"{path}: no 'labels' array (expected an .npz written by `ioda masks`)")
            labels = data["labels"]
    except IodaError:
        raise
    except Exception as err:
        raise IodaError(f"{path}: not a readable .npz label map ({type(err).__name__}: {err})") from None
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise IodaError(f"{path}: 'labels' must be a 2-D array of non-negative integers, "
                        f"got {labels.dtype} {labels.shape}")
    stale = sidecar_mismatch(path, labels)
    if stale:
        raise IodaError(f"{path}: does not match its sidecar {sidecar_path(path).name} ({stale}); recompute it with "
                        f"`ioda masks` or delete the sidecar")
    if expected_hw is not None and tuple(labels.shape) != tuple(expected_hw):
        raise IodaError(f"{path}: label map is {labels.shape[0]}x{labels.shape[1]} (HxW) but the image is "
                        f"{expected_hw[0]}x{expected_hw[1]}; recompute it for this image")
    return labels.astype(np.int32, copy=False)


def sidecar_mismatch(path: str | os.PathLike, labels: np.ndarray | None = None) -> str | None:
    """None if the .json sidecar (when there is one) describes this .npz (size, sha256, count, shape);
    else what differs. A label map without a sidecar is taken as it is."""
    path = Path(path)
    if not sidecar_path(path).is_file():
        return None
    try:
        meta = label_meta(path)
    except IodaError as err:
        return str(err)
    if not isinstance(meta, dict):
        return "the sidecar is not a JSON object"
    if "npz_size" in meta and meta["npz_size"] != path.stat().st_size:
        return f"size {path.stat().st_size} bytes, the sidecar says {meta['npz_size']}"
    if "npz_sha256" in meta and meta["npz_sha256"] != sha256_file(path):
        return "its sha256 differs from the sidecar's"
    if labels is not None:
        if "count" in meta and meta["count"] != int(labels.max(initial=0)):
            return f"{int(labels.max(initial=0))} instances, the sidecar says {meta['count']}"
        if {"height", "width"} <= set(meta) and (meta["height"], meta["width"]) != tuple(labels.shape):
            return f"size {labels.shape[1]}x{labels.shape[0]}, the sidecar says {meta['width']}x{meta['height']}"
    return None


def label_meta(path: str | os.PathLike) -> dict[str, Any]:
    return read_json(sidecar_path(path))


def compute_label_map(image: np.ndarray, source: str = "superpixel", **opts) -> np.ndarray:
    """Dispatch to an instance source: 'superpixel' (offline default) or 'sam'."""
    if source == "superpixel":
        from ioda.masks.superpixel import superpixel_label_map

        return superpixel_label_map(image, **opts)
    if source == "sam":
        from ioda.masks.sam import sam_label_map

        return sam_label_map(image, **opts)
    raise IodaError(f"masks source {source!r}: unknown (expected one of {', '.join(SOURCES)})")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def cached_label_map(image_path: str | os.PathLike, out: str | os.PathLike, source: str = "superpixel",
                     params: dict[str, Any] | None = None, *, reuse: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """Label map of the image at `image_path`, from the cache `out` when its sidecar records the same image
    (sha256), source and parameters; otherwise computed and written. Returns (labels, meta)."""
    from ioda.imageio import read_image

    params = _jsonable(dict(params or {}))
    image = read_image(image_path)
    digest = sha256_file(image_path)
    out = Path(out)
    if reuse and out.is_file() and sidecar_path(out).is_file():
        try:
            meta = label_meta(out)
        except IodaError:
            meta = {}
        if (meta.get("image_sha256") == digest and meta.get("source") == source
                and meta.get("parameters") == params and meta.get("format") == FORMAT_VERSION):
            stale = sidecar_mismatch(out)
            if stale is None:
                try:
                    return load_label_map(out, image.shape[:2]), meta
                except IodaError as err:
                    stale = str(err)
            LOG.warning("%s: cached label map does not match its sidecar (%s); recomputing it", out, stale)
    start = time.perf_counter()
    labels = compute_label_map(image, source=source, **params)
    seconds = time.perf_counter() - start
    meta = {"source": source, "parameters": params, "image": str(image_path), "image_sha256": digest,
            "image_height": int(image.shape[0]), "image_width": int(image.shape[1]), "seconds": round(seconds, 3)}
    save_label_map(out, labels, meta)
    return labels, label_meta(out)
