"""`paired_folders`: your own LR/HR camera pairs from two folders, paired by file name, no code.

A pair is an HR and an LR file with the same name, or (for the rest) with the same stem once common
suffixes are stripped (`_HR`, `_LR`, `_LR4`, `_LRx4`, `_x1`, `_x4`, `_SRF_4_HR`, DIV2K's `0801x4`, ...).
Every HR must be exactly `scale` times its LR. Problems are reported all at once, one line naming the files.

`lr_size: hr_size` is for sets that store each LR upsampled to its HR's size (RealSR versions 1 and 2, the
NTIRE 2019 Real-SR challenge; RealSR version 3, the paper's, ships true-size LR): LR and HR must then have the
same size; both are cropped to a multiple of `scale` from the top left and the LR is brought to its true size
with MATLAB bicubic (`ioda.data.imresize`, antialiased, 1/scale).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PIL import Image

from ioda.errors import IodaError
from ioda.imageio import list_images

# one trailing suffix; applied until nothing changes ("foo_LR_x4" -> "foo_LR" -> "foo")
_SUFFIX = re.compile(r"(?:_SRF_\d+)?(?:[_-](?:HR|LR|hr|lr)(?:_?[xX]?\d+)?|[_-][xX]\d+|(?<=\d)[xX]\d+)$")


def strip_suffixes(stem: str) -> str:
    while True:
        new = _SUFFIX.sub("", stem)
        if new == stem or not new:
            return stem
        stem = new


def _names(files: list[Path], limit: int = 6) -> str:
    shown = ", ".join(p.name for p in files[:limit])
    return shown + (f" and {len(files) - limit} more" if len(files) > limit else "")


LR_SIZES = ("true_size", "hr_size")  # LR stored at its true size (HR / scale), or upsampled to the HR's size


def parse_paired_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Check --spec {hr: DIR, lr: DIR, scale: N, lr_size: true_size|hr_size}; return it with paths as strings."""
    allowed = {"hr", "lr", "scale", "lr_size"}
    for key in spec:
        if key not in allowed:
            raise IodaError(f"--spec.{key}: not a parameter of 'paired_folders' (expected hr, lr, scale, lr_size)")
    for key in ("hr", "lr"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise IodaError(f"--spec.{key}: required, the folder of the {key.upper()} images "
                            "(e.g. --spec '{hr: HR_DIR, lr: LR_DIR, scale: 4}')")
    scale = spec.get("scale", 4)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise IodaError(f"--spec.scale: expected a positive integer, got {scale!r}")
    lr_size = spec.get("lr_size", "true_size")
    if lr_size not in LR_SIZES:
        raise IodaError(f"--spec.lr_size: expected true_size (LR is HR / scale, the default) or hr_size (LR stored "
                        f"at HR size: RealSR v1/v2, NTIRE 2019), got {lr_size!r}")
    return {"hr": spec["hr"], "lr": spec["lr"], "scale": scale, "lr_size": lr_size}


def _folder(path: str, role: str) -> list[Path]:
    folder = Path(path)
    if not folder.is_dir():
        raise IodaError(f"--spec.{role}: {folder} is not a folder (expected the {role.upper()} images)")
    files = [p for p in list_images(folder) if not p.name.startswith(".")]
    if not files:
        raise IodaError(f"{folder}: no images (expected {role.upper()} images: png, jpg, bmp, tif, webp)")
    return files


def _keyed(files: list[Path], folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        key = strip_suffixes(p.stem)
        if key in out:
            raise IodaError(f"{folder}: {out[key].name} and {p.name} have the same stem {key!r} once suffixes are "
                            "stripped (expected one file per image)")
        out[key] = p
    return out


def match_folders(hr_dir: str, lr_dir: str, scale: int, lr_size: str = "true_size") -> list[tuple[str, Path, Path]]:
    """[(stem, hr, lr)] sorted by stem; raises one IodaError naming unpaired files or size mismatches."""
    hrs, lrs = _folder(hr_dir, "hr"), _folder(lr_dir, "lr")
    lr_by_name = {p.name: p for p in lrs}
    pairs: dict[str, tuple[Path, Path]] = {}
    rest_hr = []
    for p in hrs:
        if p.name in lr_by_name:
            pairs[p.stem] = (p, lr_by_name.pop(p.name))
        else:
            rest_hr.append(p)
    by_hr, by_lr = _keyed(rest_hr, Path(hr_dir)), _keyed(list(lr_by_name.values()), Path(lr_dir))
    for key in sorted(set(by_hr) & set(by_lr)):
        if key in pairs:
            raise IodaError(f"{by_hr[key]}: pairs with {by_lr[key].name} under the stem {key!r}, which "
                            f"{pairs[key][0].name} already uses (rename one of them)")
        pairs[key] = (by_hr[key], by_lr[key])
    lone_hr = [by_hr[k] for k in sorted(set(by_hr) - set(by_lr))]
    lone_lr = [by_lr[k] for k in sorted(set(by_lr) - set(by_hr))]
    if lone_hr or lone_lr:
        parts = ([f"HR {_names(lone_hr)} in {hr_dir}"] if lone_hr else []) + (
            [f"LR {_names(lone_lr)} in {lr_dir}"] if lone_lr else [])
        raise IodaError(f"unpaired files: {'; '.join(parts)} (no counterpart with the same name, or the same stem "
                        "once suffixes such as _HR, _LR4, _x4, _SRF_4_HR are stripped)")
    bad, same = [], 0
    for stem, (hr, lr) in sorted(pairs.items()):
        with Image.open(hr) as a, Image.open(lr) as b:
            (hw, hh), (lw, lh) = a.size, b.size
        same += (hw, hh) == (lw, lh)
        if lr_size == "hr_size":
            wrong = (lw, lh) != (hw, hh) or min(hw, hh) < scale
        else:
            wrong = (hw, hh) != (lw * scale, lh * scale)
        if wrong:
            bad.append(f"{hr.name} {hw}x{hh} vs {lr.name} {lw}x{lh}")
    if bad:
        more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
        listed = f"{'; '.join(bad[:4])}{more}"
        if lr_size == "hr_size":
            raise IodaError(f"LR is not at HR size for {len(bad)} pair(s) in {hr_dir} / {lr_dir} (--spec lr_size: "
                            f"hr_size expects LR stored at HR size): {listed}")
        hint = (f"; LR and HR have the same size in {same} of them: for sets that store LR at HR size (RealSR "
                f"v1/v2, NTIRE 2019) add lr_size: hr_size to --spec" if same else "")
        raise IodaError(f"HR is not {scale}x LR for {len(bad)} pair(s) in {hr_dir} / {lr_dir}: {listed}{hint}")
    return [(stem, hr, lr) for stem, (hr, lr) in sorted(pairs.items())]
