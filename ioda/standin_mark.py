"""The mark `ioda standins` writes inside every stand-in file, and its reader: a stand-in is recognised by its
content wherever it is copied, not by a record beside it. A base-layer module (no ioda imports) so the layers
that read inputs (data, masks, preflight) can refuse stand-ins without importing ioda.standins.

- PNG: a tEXt chunk `ioda-standin` before the image data (read: the chunks up to the first IDAT);
- torch checkpoints (zip archives): one extra archive member `ioda-standin` that torch.load ignores, so the
  official key layout is unchanged (read: the zip's central directory);
- safetensors: the header metadata key `ioda-standin` (read: the JSON header)."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path

KEY = "ioda-standin"
TEXT = "synthetic image or random weights written by ioda standins; numbers made with it mean nothing"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def png_bytes(img) -> bytes:
    """A uint8 HxWx3 (or HxW) image as marked PNG bytes."""
    import numpy as np
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(KEY, TEXT)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def mark_torch_archive(path: str | os.PathLike) -> None:
    """Add the mark member to a torch.save zip archive (torch.load reads only the members it knows)."""
    with zipfile.ZipFile(path, "a") as z:
        prefix = z.namelist()[0].split("/", 1)[0]
        z.writestr(f"{prefix}/{KEY}", TEXT)


def _png_marked(f) -> bool:
    if f.read(8) != _PNG_SIG:
        return False
    while True:
        head = f.read(8)
        if len(head) < 8:
            return False
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IDAT":
            return False
        data = f.read(length)
        f.seek(4, os.SEEK_CUR)  # CRC
        if kind in (b"tEXt", b"iTXt") and data.split(b"\0", 1)[0] == KEY.encode():
            return True


def _safetensors_marked(f) -> bool:
    head = f.read(8)
    if len(head) < 8:
        return False
    (n,) = struct.unpack("<Q", head)
    if n > 100_000_000:
        return False
    try:
        meta = json.loads(f.read(n)).get("__metadata__") or {}
    except (ValueError, AttributeError):
        return False
    return KEY in meta


def is_marked(path: str | os.PathLike) -> bool:
    """Whether the file at `path` carries the stand-in mark (reads a header only; False for unreadable files)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            start = f.read(8)
            f.seek(0)
            if start == _PNG_SIG:
                return _png_marked(f)
            if start[:4] == b"PK\x03\x04":
                with zipfile.ZipFile(f) as z:
                    return any(n == KEY or n.endswith("/" + KEY) for n in z.namelist())
            if path.suffix == ".safetensors":
                return _safetensors_marked(f)
    except (OSError, zipfile.BadZipFile, struct.error):
        return False
    return False
