"""Reading and writing images with one policy for odd inputs.

Every image inside ioda is a HxWx3 uint8 RGB numpy array (values 0..255, channel order R, G, B).
`read_image` converts or refuses other files, always naming the file:
- grayscale (L, LA) -> replicated to three channels;
- RGBA / LA -> alpha dropped if fully opaque, refused otherwise (transparency has no meaning for SR);
- 16-bit (PNG/TIFF) -> scaled to 8 bit with rounding (v * 255 / 65535), as MATLAB's im2uint8 does (16-bit
  colour PNGs are decoded by torchvision's libpng reader: Pillow would truncate them to their high byte);
- palette images -> converted to RGB;
- animations and multi-page files (GIF, TIFF, ...) -> refused (which frame is the photo is the user's call);
- more pixels than Pillow's decompression-bomb limit -> refused before decoding (16-bit PNGs by their header);
- corrupt, truncated, empty or missing files -> IodaError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from ioda.errors import IodaError
from ioda.files import atomic_path

if TYPE_CHECKING:  # torch is imported where tensors are made: reading and writing images does not need it
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def to_rgb_uint8(arr: np.ndarray, name: str = "image") -> np.ndarray:
    """Apply the module's conversion policy to an array (HxW, HxWx1/2/3/4; uint8, uint16 or bool)."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16 or arr.dtype == np.int32 or arr.dtype == np.uint32:
        if arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:
            raise IodaError(f"{name}: integer values outside 0..65535 (expected 8- or 16-bit image)")
        arr = np.floor(arr.astype(np.float64) * 255.0 / 65535.0 + 0.5).astype(np.uint8)
    if arr.dtype != np.uint8:
        raise IodaError(f"{name}: unsupported pixel type {arr.dtype} (expected 8- or 16-bit integers)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise IodaError(f"{name}: unsupported shape {arr.shape} (expected HxW or HxWxC with C in 1..4)")
    if arr.shape[2] in (2, 4):
        alpha = arr[:, :, -1]
        if alpha.min() < 255:
            raise IodaError(f"{name}: has transparent pixels (alpha < 255); flatten it onto a background first")
        arr = arr[:, :, :-1]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise IodaError(f"{name}: empty image {arr.shape}")
    return np.ascontiguousarray(arr)


def _png_16bit_colour(path: Path) -> tuple[int, int] | None:
    """(width, height) of a 16-bit RGB or RGBA PNG (IHDR bit depth 16, colour type 2 or 6), else None."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[24] == 16 and head[25] in (2, 6):
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def max_pixels() -> int:
    """The most pixels a photo may have: Pillow's decompression-bomb limit (twice MAX_IMAGE_PIXELS)."""
    return 2 * Image.MAX_IMAGE_PIXELS


def _too_many_pixels(path: Path, detail: str) -> IodaError:
    return IodaError(f"{path}: too many pixels ({detail}); ioda reads photos up to {max_pixels()} pixels")


def _read_png16(path: Path, size: tuple[int, int]) -> np.ndarray:
    # Pillow decodes 16-bit colour PNGs to 8 bit by dropping the low byte (truncation); torchvision's libpng
    # decoder keeps all 16 bits, so the rounding below is the documented one. libpng allocates what the header
    # claims, so the header's size passes the same decompression-bomb guard as Pillow's files first.
    import warnings

    w, h = size
    if w * h > max_pixels():
        raise _too_many_pixels(path, f"16-bit PNG of {w}x{h} = {w * h} pixels")
    if w * h > Image.MAX_IMAGE_PIXELS:  # Pillow's warning for 8-bit files of that size
        warnings.warn(f"{path}: {w}x{h} = {w * h} pixels, could be a decompression bomb",
                      Image.DecompressionBombWarning, stacklevel=3)

    with warnings.catch_warnings():  # torchvision 0.29 announces a move of its codecs to torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_png, read_file

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            t = decode_png(read_file(str(path)), mode=ImageReadMode.UNCHANGED)
    except RuntimeError as err:
        raise IodaError(f"{path}: corrupt or truncated image ({' '.join(str(err).split())[:200]})") from None
    return to_rgb_uint8(t.permute(1, 2, 0).numpy().astype(np.uint16), str(path))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (see the module doc for conversions and refusals)."""
    path = Path(path)
    if not path.is_file():
        raise IodaError(f"{path}: file not found (expected an image)")
    png16 = _png_16bit_colour(path)
    if png16:
        return _read_png16(path, png16)
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:  # Pillow would silently give the first frame
                raise IodaError(f"{path}: has {im.n_frames} frames (an animation or multi-page file); ioda reads one "
                                f"still photo: save the frame you mean as PNG")
            im.load()  # forces full decode: truncated files fail here, not later
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.uint16 if im.mode != "I" else np.int32)
                return to_rgb_uint8(arr, str(path))
            elif im.mode == "F":
                raise IodaError(f"{path}: floating-point image (expected 8- or 16-bit integers)")
            elif im.mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
    except IodaError:
        raise
    except Image.DecompressionBombError as err:
        raise _too_many_pixels(path, str(err)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise IodaError(f"{path}: corrupt or truncated image ({err})") from None
    return to_rgb_uint8(arr, str(path))


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write a HxWx3 uint8 RGB array atomically (format from the suffix; PNG recommended)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"write_image expects HxWx3 uint8, got {img.shape} {img.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format=Image.registered_extensions().get(Path(path).suffix.lower()))


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW float32 in [0, 1]."""
    import torch

    return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """(1x)3xHxW float in [0, 1] -> HxWx3 uint8, rounded (as BasicSR's tensor2img)."""
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"tensor_to_image expects one image, got batch {t.shape[0]}")
        t = t[0]
    import torch

    arr = t.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(arr)


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise IodaError(f"{folder}: folder not found (expected a folder of images)")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def find_files(base: Path, pattern: str) -> list[Path]:
    """Image files under `base` matching a glob, or several globs joined by '|'; sorted."""
    out: set[Path] = set()
    for pat in pattern.split("|"):
        out.update(p for p in base.glob(pat) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(out)


def pick_image(pool: str | os.PathLike, index: int) -> Path:
    """The index-th image of a folder, sorted by name: how the workflow names a run's target image (the one
    image picker; `ioda adapt/masks --pool DIR --index I`)."""
    if index < 0:
        raise IodaError(f"--index {index}: expected an image number >= 0")
    images = list_images(pool)
    if index >= len(images):
        raise IodaError(f"{pool}: fewer than {index + 1} images (target image {index} requested)")
    return images[index]


def image_arg(path: str | None, pool: str | None, index: int | None) -> Path:
    """A command's image: the path given, or --pool DIR --index I (exactly one of the two; index None: not given,
    image 0 of the pool). An --index next to a path would be ignored, so it is refused."""
    if (path is None) == (pool is None):
        raise IodaError("expected either an image path or --pool DIR (with --index I), not " + ("both" if path else "neither"))
    if path is not None and index is not None:
        raise IodaError(f"--index {index}: picks an image of --pool DIR, not of the photo path {path} (drop one)")
    return Path(path) if path is not None else pick_image(pool, index or 0)
