"""Stand-in raw datasets: the official folder layout and file names of each paper dataset (what
`ioda prepare NAME --root DIR` expects, see ioda/data/registry.py and docs/datasets.md), filled with a few
small seeded synthetic photos. DF2K comes as its three official archives in `DF2K/downloads/`, which the
prepare step unpacks as it does a real download."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ioda.data.imresize import imresize
from ioda.data.registry import get_entry, split_files
from ioda.errors import IodaError
from ioda.files import atomic_path
from ioda.standin_mark import png_bytes

HR_SIZE = (128, 192)  # (height, width): small, a multiple of 4, larger than the CI's patches


# Every image is written as a marked PNG (ioda.standin_mark): recognised as a stand-in wherever it is copied.
def synthetic_photo(seed: int, size: tuple[int, int] = HR_SIZE) -> np.ndarray:
    """A seeded HxWx3 uint8 image with smooth regions and edges (segmenters and SR losses have structure to see)."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = (rng.random((4, 6, 3)) * 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.float64)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(4):  # a few flat discs: instances with sharp borders
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, max(9, h // 3))
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---- official names, per dataset: {split: [(HR path, LR path or None)]} relative to the dataset folder ----
def _realsr(cam: str, n_train: int, n_test: int) -> dict:
    def pairs(folder: str, first: int, n: int):
        return [(f"{cam}/{folder}/4/{cam}_{i:03d}_HR.png", f"{cam}/{folder}/4/{cam}_{i:03d}_LR4.png")
                for i in range(first, first + n)]

    return {"train": pairs("Train", 1, n_train), "test": pairs("Test", 1, n_test)}


def _acdc(cond: str, n_train: int, n_test: int) -> dict:
    def files(split: str, seq: str, n: int):
        return [(f"rgb_anon/{cond}/{split}/{seq}/{seq}_frame_{i:06d}_rgb_anon.png", None) for i in range(n)]

    return {"train": files("train", "GOPR0400", n_train), "test": files("val", "GOPR0475", n_test)}


def official_files(name: str, n_train: int, n_test: int) -> dict[str, list[tuple[str, str | None]]]:
    """Each split's files of a stand-in for registry dataset `name`, named as the official release names them."""
    if name.startswith("RealSR_"):
        return _realsr(name.split("_", 1)[1], n_train, n_test)
    if name.startswith("ACDC_"):
        return _acdc(name.split("_", 1)[1], n_train, n_test)
    if name == "DF2K":
        div2k = [(f"DIV2K_train_HR/{i:04d}.png", None) for i in range(1, n_train)]
        flickr = [(f"Flickr2K/Flickr2K_HR/{i:06d}.png", None) for i in range(1, 2)]
        return {"train": div2k + flickr, "val": [(f"DIV2K_valid_HR/{801 + i:04d}.png", None) for i in range(n_test)]}
    if name == "GTA5":
        return {"train": [(f"images/{i:05d}.png", None) for i in range(1, n_train + 1)]}
    if name == "Cityscapes":
        return {
            "train": [(f"leftImg8bit/train/aachen/aachen_{i:06d}_000019_leftImg8bit.png", None) for i in range(n_train)],
            "test": [(f"leftImg8bit/val/frankfurt/frankfurt_000000_{i:06d}_leftImg8bit.png", None)
                     for i in range(n_test)],
        }
    raise IodaError(f"stand-ins: no official layout known for dataset {name!r} "
                    f"(expected DF2K, RealSR_Canon, RealSR_Nikon, GTA5, Cityscapes, ACDC_rain or ACDC_snow)")


# DF2K's archives: which top-level folder goes into which official archive
DF2K_ARCHIVES = {"DIV2K_train_HR": "DIV2K_train_HR.zip", "DIV2K_valid_HR": "DIV2K_valid_HR.zip",
                 "Flickr2K": "Flickr2K.tar"}


def _write_archives(base: Path, images: dict[str, np.ndarray]) -> list[Path]:
    """DF2K: the images packed into the official archives under base/downloads/ (unpacked by the prepare step)."""
    groups: dict[str, list[str]] = {}
    for rel in images:
        groups.setdefault(DF2K_ARCHIVES[rel.split("/", 1)[0]], []).append(rel)
    out = []
    for archive, rels in sorted(groups.items()):
        path = base / "downloads" / archive
        path.parent.mkdir(parents=True, exist_ok=True)
        if archive.endswith(".zip"):
            with zipfile.ZipFile(path, "w") as z:
                for rel in sorted(rels):
                    z.writestr(rel, png_bytes(images[rel]))
        else:
            with tarfile.open(path, "w") as t:
                for rel in sorted(rels):
                    data = png_bytes(images[rel])
                    info = tarfile.TarInfo(rel)
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        out.append(path)
    return out


def write_dataset(name: str, root: str | Path, seed: int = 0, n_train: int = 3, n_test: int = 2,
                  size: tuple[int, int] = HR_SIZE) -> list[Path]:
    """Write a stand-in of dataset `name` under root/<its folder>; returns the files written."""
    entry = get_entry(name)
    base = Path(root) / entry.folder
    scale = entry.scale
    images: dict[str, np.ndarray] = {}
    written: list[Path] = []
    for split, files in official_files(name, n_train, n_test).items():
        for i, (hr_rel, lr_rel) in enumerate(files):
            hr = synthetic_photo(_seed(seed, name, split, i), size)
            images[hr_rel] = hr
            if lr_rel is not None:
                images[lr_rel] = imresize(hr, 1 / scale)
    if entry.kind == "download":
        return _write_archives(base, images)
    for rel, img in images.items():
        with atomic_path(base / rel) as tmp:
            tmp.write_bytes(png_bytes(img))
        written.append(base / rel)
    return written


def _seed(seed: int, *parts) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(repr((seed, *parts)).encode()).digest()[:4], "little")


def check_layout(name: str, root: str | Path) -> dict[str, int]:
    """{split: pairs the registry finds} in a placed stand-in (the prepare step's own file matching)."""
    entry = get_entry(name)
    return {split: len(items) for split, items in split_files(entry, root).items()}
