"""A packed patch store: a source split's LR/HR pairs decoded once into two uint8 .npy files (read as memory maps)
plus an index, so pre-training crops patches without decoding a PNG per sample and without holding the split in
memory (GTA5's 1914x1052 frames would need both).

Layout of a store folder (`ioda pretrain --pack SPLIT --out STORE`, or `pack_split` from Python):
    lr.npy, hr.npy   every image's pixels, flattened and concatenated (uint8, one 1-D array each)
    index.json       format, scale, per image its name, offsets and shapes, the SHA-256 of every input file and
                     one checksum over them (`inputs_sha256`: a pre-training resume must continue on the same data),
                     and the SHA-256 of each array file (`sha256`), computed once at pack time

Opening a store verifies each array against its SHA-256 (`read_index(verify=True)`, the default): one read of the
whole store, about 1 s per GB on one core (GTA5's ~160 GB: a few minutes, once per pre-training start or
resume), so flipped bytes or another store's same-size array are refused instead of training silently.

`open_store(folder, lr_patch, seed, length)` returns a PairedPatches reading from the memory maps: item i is the
same patch, bit for bit, as PairedPatches over the split's files gives for the same seed (same image, crop,
flip and rotation). The store takes the pixels' size on disk (GTA5: about 3 bytes per HR pixel, ~160 GB for
the whole set); a memory map is opened per DataLoader worker, so workers share the page cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ioda.data.pairs import PairedPatches, list_pairs, load_pair
from ioda.errors import IodaError
from ioda.files import make_temp_dir, read_json, sha256_file, write_json
from ioda.runtime import progress_enabled

FORMAT = "ioda-patch-store/2"  # /2: the arrays' SHA-256 in the index
FILES = ("lr.npy", "hr.npy")


def pack_split(split_dir: str | os.PathLike, scale: int, out: str | os.PathLike) -> Path:
    """Decode every pair of `split_dir` (HR/ and LR_x<scale>/) once into a store folder `out` (replaced whole,
    atomically: an interrupted pack leaves no store behind). Returns the index path."""
    out = Path(out)
    _check_out(Path(split_dir), out)
    pairs = list_pairs(split_dir, scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    shapes, inputs = [], {}
    for p in pairs:  # sizes first (headers only), so the two arrays are allocated once
        for f in (p.lr, p.hr):
            try:
                with Image.open(f) as im:
                    w, h = im.size
            except OSError as err:
                raise IodaError(f"{f}: not a readable image ({err})") from None
            shapes.append((h, w, 3))
    lr_total = sum(int(np.prod(s)) for s in shapes[0::2])
    hr_total = sum(int(np.prod(s)) for s in shapes[1::2])
    tmp = make_temp_dir(out.parent, f".{out.name}.")
    try:
        lr_all = np.lib.format.open_memmap(tmp / "lr.npy", mode="w+", dtype=np.uint8, shape=(lr_total,))
        hr_all = np.lib.format.open_memmap(tmp / "hr.npy", mode="w+", dtype=np.uint8, shape=(hr_total,))
        images, lr_off, hr_off = [], 0, 0
        for p in tqdm(pairs, desc=f"pack {Path(split_dir).name}", disable=not progress_enabled()):
            lr, hr = load_pair(p, scale)
            if lr.ndim != 3 or lr.shape[2] != 3:
                raise IodaError(f"{p.lr}: expected an RGB image, got shape {lr.shape}")
            lr_all[lr_off:lr_off + lr.size] = lr.reshape(-1)
            hr_all[hr_off:hr_off + hr.size] = hr.reshape(-1)
            images.append({"name": p.stem, "lr": [lr_off, *lr.shape[:2]], "hr": [hr_off, *hr.shape[:2]]})
            lr_off, hr_off = lr_off + lr.size, hr_off + hr.size
            inputs[p.stem] = [sha256_file(p.lr), sha256_file(p.hr)]
        if (lr_off, hr_off) != (lr_total, hr_total):
            raise IodaError(f"{split_dir}: image sizes changed while packing; pack again")
        lr_all.flush(), hr_all.flush()
        del lr_all, hr_all
        index = {"format": FORMAT, "scale": scale, "split": str(split_dir), "count": len(images),
                 "inputs_sha256": _checksum(inputs), "inputs": inputs, "images": images,
                 "bytes": {"lr.npy": lr_total, "hr.npy": hr_total},
                 "sha256": {name: sha256_file(tmp / name) for name in FILES}}
        write_json(tmp / "index.json", index)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.json"


def _check_out(split: Path, out: Path) -> None:
    """--out is replaced whole: refuse a folder holding the split it packs, and any non-empty folder that is not
    an earlier store (its index.json names the store format)."""
    s, o = split.resolve(), out.resolve()
    if o == s or o in s.parents:
        raise IodaError(f"--out {out}: holds the split {split} being packed (replacing it would delete the input); "
                        f"choose a store folder outside it")
    if o.exists() and not o.is_dir():
        raise IodaError(f"--out {out}: exists and is not a folder (expected a store folder to write)")
    if o.is_dir() and any(o.iterdir()):
        index = o / "index.json"
        try:
            earlier = index.is_file() and str(read_json(index).get("format", "")).startswith("ioda-patch-store/")
        except (IodaError, AttributeError):
            earlier = False
        if not earlier:
            raise IodaError(f"--out {out}: a non-empty folder that is no patch store (it would be replaced whole); "
                            f"choose a new or empty folder, or an earlier store")


def _checksum(inputs: dict[str, list[str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(inputs.items())).encode()).hexdigest()


def read_index(folder: str | os.PathLike, verify: bool = True) -> dict:
    """The store's index, checked against its files (format, sizes and, with `verify`, each array's SHA-256:
    one read of the store); a one-line error naming the file otherwise."""
    folder = Path(folder)
    index = read_json(folder / "index.json")
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise IodaError(f"{folder / 'index.json'}: not a patch store index (expected format {FORMAT!r}); pack the "
                        f"split again")
    for name in FILES:
        f = folder / name
        want = index["bytes"][name]
        try:
            arr = np.load(f, mmap_mode="r") if f.is_file() else None
        except (ValueError, OSError, EOFError):  # a truncated file or an overwritten header
            arr = None
        if arr is None or arr.dtype != np.uint8 or arr.shape != (want,):
            raise IodaError(f"{f}: missing, damaged or not the {want}-byte uint8 array index.json describes; pack the "
                            f"split again")
        del arr
        if verify and sha256_file(f) != index["sha256"][name]:
            raise IodaError(f"{f}: content differs from the SHA-256 index.json records (damaged, or another store's "
                            f"array); pack the split again")
    if _checksum(index["inputs"]) != index["inputs_sha256"]:
        raise IodaError(f"{folder / 'index.json'}: inputs_sha256 does not match its inputs list; pack the split again")
    return index


class StoreImages(Sequence):
    """The (lr, hr) uint8 HxWx3 arrays of a store, as views of its memory maps (opened on first use in each
    process, so a DataLoader worker opens its own; copy-on-write, so the file is never written)."""

    def __init__(self, folder: str | os.PathLike, index: dict):
        self.folder, self.entries = Path(folder), index["images"]
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._maps is None:
            self._maps = tuple(np.load(self.folder / name, mmap_mode="c") for name in FILES)
        e = self.entries[k]
        return tuple(m[off:off + h * w * 3].reshape(h, w, 3)
                     for m, (off, h, w) in zip(self._maps, (e["lr"], e["hr"])))

    def shapes(self) -> list[tuple[int, int]]:
        """LR height and width of each image (from the index; no pixel is read)."""
        return [(e["lr"][1], e["lr"][2]) for e in self.entries]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}  # workers reopen the maps instead of pickling pixels


def open_store(folder: str | os.PathLike, lr_patch: int, seed: int = 0, length: int | None = None,
               scale: int | None = None) -> PairedPatches:
    """PairedPatches over a store (same patches as over the split's files for the same seed)."""
    index = read_index(folder)
    if scale is not None and index["scale"] != scale:
        raise IodaError(f"{Path(folder) / 'index.json'}: packed at scale {index['scale']}, this model's scale is "
                        f"{scale}")
    images = StoreImages(folder, index)
    return PairedPatches.from_images(images, [e["name"] for e in index["images"]], index["scale"], lr_patch,
                                     seed=seed, length=length, shapes=images.shapes())


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ioda.runtime import setup_logging

    ap = argparse.ArgumentParser(prog="ioda pack", description=__doc__.splitlines()[0])
    ap.add_argument("split", help="split folder with HR/ and LR_x<scale>/ (e.g. data/GTA5/train)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--out", required=True, help="store folder to write (replaced whole)")
    ap.add_argument("--log", help="log file")
    args = ap.parse_args(argv)
    log = setup_logging(args.log)
    index = pack_split(args.split, args.scale, args.out)
    info = read_index(index.parent, verify=False)  # just written
    log.info("packed %d pairs of %s into %s (%.1f MB; inputs sha256 %s)", info["count"], args.split, args.out,
             sum(info["bytes"].values()) / 1e6, info["inputs_sha256"][:12])
    return 0
