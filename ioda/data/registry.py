"""The dataset registry: what each dataset is, where its files come from and how LR/HR pairs are made.

Kinds:
- `demo`: built offline from photos shipped inside scikit-image (see ioda/data/demo.py);
- `download`: fetched from direct URLs (resumable, verified) and unpacked under `--root`;
- `manual`: behind a registration page or Google Drive; placed by hand under `--root`, then verified;
- `pinned`: public files at a fixed commit, each with its URL, size and SHA-256 in a packaged manifest
  (ioda/data/pinned/<name>.json); fetched under `--root` from the network or the offline mirror
  (`IODA_MIRROR`, see ioda/data/assets.py) and verified file by file;
- `paired`: your own LR/HR folders (`ioda prepare paired_folders --spec '{hr: DIR, lr: DIR, scale: 4}'`).

Checksums: a SHA-256 is listed only where it is known from the publisher. Where it is not (None), the
download is checked by its byte size when known and the unpacked data by its expected image counts.
No checksum here is made up.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ioda.errors import IodaError
from ioda.imageio import find_files


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str  # saved as <root>/<folder>/downloads/<filename>
    sha256: str | None = None  # None: not published; counts are checked after unpacking instead
    size: int | None = None  # bytes; None: unknown
    extract: bool = True


@dataclass(frozen=True)
class KnownChecksum:
    path: str  # relative to <root>/<folder>
    sha256: str


@dataclass(frozen=True)
class FileSet:
    pattern: str  # glob relative to <root>/<folder>; '**' crosses folders
    count: int | None = None  # exact number expected; None: at least min_count
    min_count: int = 1


@dataclass(frozen=True)
class SplitSource:
    """Where one split's images are, relative to the dataset folder.

    HR files come from `hr` (one or more globs). If `lr` is given, LR files are given by the dataset and
    matched to HR by stem after removing `hr_suffix` / `lr_suffix` (RealSR: `_HR`, `_LR4`); otherwise
    LR is made from HR with the entry's degradation."""

    hr: tuple[str, ...]
    count: int | None = None  # total HR images expected (exact); None: at least min_count
    min_count: int = 1
    lr: str | None = None
    hr_suffix: str = ""
    lr_suffix: str = ""

    def file_sets(self) -> list[FileSet]:
        """What must be present: the HR files (all globs together) and, if given, the LR files."""
        sets = [FileSet("|".join(self.hr), self.count, self.min_count)]
        if self.lr:
            sets.append(FileSet(self.lr, self.count, self.min_count))
        return sets


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str  # demo | download | manual
    description: str
    folder: str  # under --root (download/manual) ; unused for demo
    page: str  # where a person gets it
    splits: dict[str, SplitSource] = field(default_factory=dict)
    scale: int = 4
    degradation: dict[str, Any] | None = None  # how LR is made where the dataset gives none
    files: tuple[RemoteFile, ...] = ()
    checksums: tuple[KnownChecksum, ...] = ()
    instructions: str = ""
    license: str = ""
    demo: dict[str, Any] | None = None  # demo recipe (photos per split, tile size), see demo.py
    pinned: tuple[str, ...] = ()  # pinned manifests (ioda/data/pinned/<name>.json) the files come from
    resplit: dict[str, int] | None = None  # --spec splits: re-cut the one published split, in name order
    paired: dict[str, Any] | None = None  # paired_folders: {hr, lr, scale}
    camera: bool = False  # LR shot by a real camera (a target domain), not made from HR by a known kernel

    @property
    def source_domain(self) -> bool:
        """Clean HR whose LR is the bicubic kernel's: what a source-domain-only step (encoder training) accepts."""
        return not self.camera and self.kind != "paired" and (
            self.degradation is None or self.degradation.get("type") == "bicubic")


BICUBIC_X4 = {"type": "bicubic", "scale": 4}

_REALSR_PAGE = "https://github.com/csjcai/RealSR (Version 3: Google Drive or Baidu Drive, code 2n93)"
_REALSR_HOWTO = (
    "Download 'RealSR(V3)' and unpack it so that the camera folders sit directly in the dataset folder, "
    "e.g. {base}/{cam}/Test/4/{cam}_001_HR.png and {base}/{cam}/Test/4/{cam}_001_LR4.png "
    "(x4 pairs named *_HR.png / *_LR4.png in {cam}/Train/4 and {cam}/Test/4)."
)


def _realsr(cam: str) -> DatasetEntry:
    return DatasetEntry(
        name=f"RealSR_{cam}",
        kind="manual",
        description=f"RealSR V3, {cam} camera, x4: real LR/HR pairs shot at two focal lengths (the paper's target).",
        folder="RealSR_V3",
        page=_REALSR_PAGE,
        splits={
            # README: 559 scenes, 459 train / 100 test over both cameras; the V3 test set has 50 x4 pairs
            # per camera. The per-camera train count is not published, so train is checked as non-empty.
            "train": SplitSource(
                hr=(f"{cam}/Train/4/*_HR.png",), lr=f"{cam}/Train/4/*_LR4.png", hr_suffix="_HR", lr_suffix="_LR4"
            ),
            "test": SplitSource(
                hr=(f"{cam}/Test/4/*_HR.png",),
                lr=f"{cam}/Test/4/*_LR4.png",
                count=50,
                hr_suffix="_HR",
                lr_suffix="_LR4",
            ),
        },
        instructions=_REALSR_HOWTO.format(base="<root>/RealSR_V3", cam=cam),
        license="research use (see the RealSR page)",
        camera=True,
    )


def _bicubic_manual(name: str, description: str, folder: str, page: str, splits: dict, howto: str) -> DatasetEntry:
    return DatasetEntry(
        name=name,
        kind="manual",
        description=description,
        folder=folder,
        page=page,
        splits=splits,
        degradation=dict(BICUBIC_X4),
        instructions=howto,
        license="registration required; research use",
    )


def _demo(name: str, description: str, degradation: dict, splits: dict[str, list[str]], tile: int = 192) -> DatasetEntry:
    return DatasetEntry(
        name=name,
        kind="demo",
        description=description,
        folder="",
        page="built offline from scikit-image's bundled photos (skimage.data)",
        degradation=degradation,
        demo={"tile": tile, "min_std": 8.0, "splits": splits},
        license="scikit-image sample images (public domain / CC, see skimage.data docs)",
    )


# Photos: the source domain and the target domains never share a photo; in each target domain the
# pool and test photos differ (stereo_motorcycle's two views show one scene, so both stay in `pool`).
SOURCE_PHOTOS = {
    "train": ["astronaut", "coffee", "hubble_deep_field", "retina"],
    "val": ["rocket"],
}
TARGET_PHOTOS = {
    "pool": ["stereo_motorcycle_left", "stereo_motorcycle_right"],
    "test": ["chelsea", "immunohistochemistry", "colorwheel"],
}

REGISTRY: dict[str, DatasetEntry] = {}


def _add(entry: DatasetEntry) -> None:
    REGISTRY[entry.name] = entry


_add(_demo("demo_source", "Clean source domain: HR tiles -> MATLAB bicubic x4.", dict(BICUBIC_X4), SOURCE_PHOTOS))
_add(
    _demo(
        "demo_canon",
        "Target domain like a DSLR's wide end: anisotropic lens blur, Poisson-Gaussian noise, JPEG q75.",
        {"type": "canon_like"},
        TARGET_PHOTOS,
    )
)
_add(
    _demo(
        "demo_lowlight",
        "Target domain of under-exposed, re-brightened shots: strong signal-dependent noise in the shadows.",
        {"type": "low_light"},
        TARGET_PHOTOS,
    )
)
_add(
    _demo(
        "demo_halo",
        "Target domain of a small sensor with heavy processing: chroma blotches, sharpening halos, JPEG q70.",
        {"type": "sensor_halo"},
        TARGET_PHOTOS,
    )
)

_add(
    DatasetEntry(
        name="DF2K",
        kind="download",
        description="DIV2K train (800) + Flickr2K (2650) HR photos, LR by MATLAB bicubic x4: the source domain.",
        folder="DF2K",
        page="https://data.vision.ee.ethz.ch/cvl/DIV2K/ and https://cv.snu.ac.kr/research/EDSR/",
        files=(
            # DIV2K and Flickr2K publish no checksums; the unpacked image counts are verified instead.
            RemoteFile("https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip", "DIV2K_train_HR.zip"),
            RemoteFile("https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip", "DIV2K_valid_HR.zip"),
            RemoteFile("https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar", "Flickr2K.tar"),
        ),
        splits={
            "train": SplitSource(hr=("DIV2K_train_HR/*.png", "Flickr2K/Flickr2K_HR/*.png"), count=3450),
            "val": SplitSource(hr=("DIV2K_valid_HR/*.png",), count=100),
        },
        degradation=dict(BICUBIC_X4),
        instructions="The files are downloaded automatically; to place them by hand, unzip DIV2K_train_HR.zip "
        "and DIV2K_valid_HR.zip and untar Flickr2K.tar in the dataset folder.",
        license="DIV2K: research use; Flickr2K: Flickr terms",
    )
)
_add(_realsr("Canon"))
_add(_realsr("Nikon"))
_add(
    _bicubic_manual(
        "GTA5",
        "GTA5 game frames (24966 images of 1914x1052), LR by MATLAB bicubic x4: a synthetic source domain.",
        "GTA5",
        "https://download.visinf.tu-darmstadt.de/data/from_games/ (images in 10 zip parts, 01_images.zip ...)",
        # the site has no official split; every image is used for source pre-training
        {"train": SplitSource(hr=("images/*.png",), count=24966)},
        "Download the ten image zips (01_images.zip .. 10_images.zip) and unzip them so that the frames are "
        "in <root>/GTA5/images/00001.png ... 24966.png (the label zips are not needed).",
    )
)
_add(
    _bicubic_manual(
        "Cityscapes",
        "Cityscapes leftImg8bit (2975 train / 500 val street scenes, 2048x1024), LR by MATLAB bicubic x4.",
        "Cityscapes",
        "https://www.cityscapes-dataset.com/downloads/ (registration; leftImg8bit_trainvaltest.zip)",
        {
            "train": SplitSource(hr=("leftImg8bit/train/*/*_leftImg8bit.png",), count=2975),
            "test": SplitSource(hr=("leftImg8bit/val/*/*_leftImg8bit.png",), count=500),
        },
        "Unzip leftImg8bit_trainvaltest.zip into <root>/Cityscapes so that "
        "<root>/Cityscapes/leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png exists "
        "(the val split serves as the target test set).",
    )
)
for _cond in ("rain", "snow"):
    _add(
        _bicubic_manual(
            f"ACDC_{_cond}",
            f"ACDC {_cond} condition (driving scenes, 1920x1080), LR by MATLAB bicubic x4: an adverse-weather target.",
            "ACDC",
            "https://acdc.vision.ee.ethz.ch/download (registration; rgb_anon_trainvaltest.zip)",
            {
                # ACDC has 1000 images per condition: 400 train, 100 val, 500 test (test has no public labels,
                # but its RGB images are all SR needs). Train and val are checked exactly.
                "train": SplitSource(hr=(f"rgb_anon/{_cond}/train/*/*_rgb_anon.png",), count=400),
                "test": SplitSource(hr=(f"rgb_anon/{_cond}/val/*/*_rgb_anon.png",), count=100),
            },
            f"Unzip rgb_anon_trainvaltest.zip into <root>/ACDC so that <root>/ACDC/rgb_anon/{_cond}/train/<sequence>/"
            f"*_rgb_anon.png and <root>/ACDC/rgb_anon/{_cond}/val/<sequence>/*_rgb_anon.png exist.",
        )
    )


# ---- pinned public sets (URL + SHA-256 of every file in ioda/data/pinned/; served by the mirror offline)
_REALSR_CROPS_NOTE = (
    "RealSR V3 x4 centre crops (HR 512, LR 128; the StableSR/OSEDiff benchmark crop set), {cam} camera, 50 real "
    "LR/HR pairs; not the full RealSR_{cam} images"
)
for _cam in ("Canon", "Nikon"):
    _name = f"realsr_{_cam.lower()}_crops"
    _add(
        DatasetEntry(
            name=_name,
            kind="pinned",
            description=_REALSR_CROPS_NOTE.format(cam=_cam) + ".",
            folder=f"pinned/{_name}",
            page="https://github.com/cswry/OSEDiff (preset/datasets/benchmark_realsr)",
            # the same file name (Canon_001_LR4.png) is the HR crop in test_HR/ and the LR crop in test_LR/
            splits={"test": SplitSource(hr=("test_HR/*.png",), lr="test_LR/*.png", count=50, hr_suffix="_LR4",
                                        lr_suffix="_LR4")},
            pinned=(_name,),
            license="RealSR dataset terms (research use); packaging repo Apache-2.0",
            camera=True,
        )
    )
_CLASSIC = {"set5": ("Set5", 5), "set14": ("Set14", 14), "bsd100": ("BSD100", 100), "urban100": ("Urban100", 30)}
for _name, (_title, _n) in _CLASSIC.items():
    _add(
        DatasetEntry(
            name=_name,
            kind="pinned",
            description=f"{_title} x4: HR + the published bicubic LR ({_n} pairs"
            + (", img_001..030 only" if _name == "urban100" else "") + ").",
            folder=f"pinned/{_name}",
            page="https://github.com/jbhuang0604/SelfExSR (data/<set>/image_SRF_4)",
            splits={"test": SplitSource(hr=("*_HR.png",), lr="*_LR.png", count=_n, hr_suffix="_SRF_4_HR",
                                        lr_suffix="_SRF_4_LR")},
            pinned=(_name,),
            license="academic benchmark images (no licence file)",
        )
    )
# Two sets in one: a clean bicubic source domain (the DF2K analogue of config/realsr.yaml). Files are stored as
# <set>/<set>_<file> so that BSD100's and Urban100's img_001 stay apart.
_add(
    DatasetEntry(
        name="bsd100_urban100",
        kind="pinned",
        description="BSD100 + Urban100 (img_001..030) x4 with the published bicubic LR: 130 clean source pairs.",
        folder="pinned/bsd100_urban100",
        page="https://github.com/jbhuang0604/SelfExSR",
        splits={"train": SplitSource(hr=("*/*_HR.png",), lr="*/*_LR.png", count=130, hr_suffix="_SRF_4_HR",
                                     lr_suffix="_SRF_4_LR")},
        pinned=("bsd100", "urban100"),
        license="academic benchmark images (no licence file)",
    )
)
_add(
    DatasetEntry(
        name="paired_folders",
        kind="paired",
        description="your own camera pairs: --spec '{hr: HR_DIR, lr: LR_DIR, scale: 4}' (pairs by name / stem).",
        folder="",
        page="your folders",
        license="yours",
    )
)


def get_entry(name: str) -> DatasetEntry:
    if name not in REGISTRY:
        raise IodaError(f"dataset {name!r} is not in the registry (expected one of {', '.join(REGISTRY)})")
    return REGISTRY[name]


def split_files(entry: DatasetEntry, root: str | os.PathLike) -> dict[str, list[tuple[str, Path, Path | None]]]:
    """For download/manual entries: {split: [(stem, hr_path, lr_path or None)]}, matched by stem."""
    base = Path(root) / entry.folder
    out = {}
    for split, src in entry.splits.items():
        hrs = {}
        for p in find_files(base, "|".join(src.hr)):
            stem = p.stem[: -len(src.hr_suffix)] if src.hr_suffix and p.stem.endswith(src.hr_suffix) else p.stem
            if stem in hrs:
                raise IodaError(f"{p}: two HR images share the stem {stem!r} (the other is {hrs[stem]})")
            hrs[stem] = p
        lrs: dict[str, Path] = {}
        if src.lr:
            for p in find_files(base, src.lr):
                stem = p.stem[: -len(src.lr_suffix)] if src.lr_suffix and p.stem.endswith(src.lr_suffix) else p.stem
                lrs[stem] = p
            for stem, p in hrs.items():
                if stem not in lrs:
                    raise IodaError(f"{p}: no LR counterpart {stem}{src.lr_suffix}.* next to it")
            for stem, p in lrs.items():
                if stem not in hrs:
                    raise IodaError(f"{p}: no HR counterpart {stem}{src.hr_suffix}.* next to it")
        out[split] = [(s, hrs[s], lrs.get(s)) for s in sorted(hrs)]
    return out


def relaxed_entry(entry: DatasetEntry) -> DatasetEntry:
    """The entry with its image counts relaxed to "at least one" (the prepare step's stand-in mode)."""
    splits = {k: dataclasses.replace(v, count=None, min_count=1) for k, v in entry.splits.items()}
    return dataclasses.replace(entry, splits=splits)
