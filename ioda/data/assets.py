"""Pinned public files (URL + SHA-256 + size) and the offline mirror that can serve them.

Every real file ioda uses beyond the CLIP/SAM weights is recorded here or in a per-dataset manifest
(`ioda/data/pinned/<name>.json`: base URL at a fixed commit, then one row per file), never committed.
`fetch_pinned` puts one such file at a destination, verified:

- with `IODA_MIRROR=DIR`, the URL `https://HOST/PATH` is read from `DIR/PATH` (no network), so a copy of
  the raw.githubusercontent.com tree (e.g. `../shared/assets/raw`) serves every pinned file;
- otherwise, or when the mirror lacks the file, it is downloaded (resumable, see ioda.data.download).

Either way the bytes are checked against the recorded size and SHA-256 before they are renamed into place.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import urllib.parse
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ioda.data.download import DownloadFailed, download, verify_file
from ioda.errors import IodaError
from ioda.files import removed_on_failure

MIRROR_VAR = "IODA_MIRROR"


@dataclass(frozen=True)
class PinnedFile:
    url: str
    sha256: str
    size: int | None = None


def cache_dir() -> Path:
    """$IODA_CACHE, else ~/.cache/ioda (the same cache the built-in source domain uses)."""
    return Path(os.environ.get("IODA_CACHE") or Path.home() / ".cache" / "ioda")


def mirror_path(url: str, mirror: str | os.PathLike | None = None) -> Path | None:
    """DIR/PATH for https://HOST/PATH under $IODA_MIRROR (or `mirror`); None when no mirror is set."""
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_VAR)
    if not mirror:
        return None
    path = urllib.parse.urlsplit(url).path.lstrip("/")
    parts = Path(path).parts
    if not parts or ".." in parts:
        raise IodaError(f"{url}: cannot map this URL into the mirror {mirror} (expected https://HOST/PATH)")
    return Path(mirror) / path


def fetch_pinned(f: PinnedFile, dest: str | os.PathLike) -> Path:
    """Place the pinned file at `dest`, verified (kept as is if already there and intact); return dest."""
    dest = Path(dest)
    if dest.is_file():
        try:
            verify_file(dest, dest, f.sha256, f.size)
            return dest
        except IodaError:
            dest.unlink()
    local = mirror_path(f.url)
    if local is not None and local.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with removed_on_failure(part):
            shutil.copyfile(local, part)
            verify_file(part, local, f.sha256, f.size)  # a mirror file with other bytes is refused, naming it
        os.replace(part, dest)
        return dest
    try:
        return download(f.url, dest, f.sha256, f.size, retries=2, timeout=30.0)
    except DownloadFailed as err:  # unreachable (an HTTP error or a bad checksum says all in its own message)
        tried = f"no file at the mirror path {local}" if local is not None else f"{MIRROR_VAR} is not set"
        raise IodaError(f"{f.url}: no network ({err.reason[:120]}) and {tried} "
                        f"(set {MIRROR_VAR}=DIR to read https://HOST/PATH from DIR/PATH)") from None


# ------------------------------------------------------------------------------------------ datasets


@functools.lru_cache(maxsize=None)
def dataset_files(name: str) -> tuple[tuple[str, PinnedFile], ...]:
    """(local path, pinned file) rows of the packaged manifest ioda/data/pinned/<name>.json."""
    try:
        text = resources.files("ioda.data").joinpath("pinned", f"{name}.json").read_text()
    except FileNotFoundError:
        raise IodaError(f"ioda/data/pinned/{name}.json: no pinned manifest for {name!r}") from None
    doc = json.loads(text)
    base = doc["base_url"]
    return tuple((local, PinnedFile(base + path, sha, size)) for local, path, size, sha in doc["files"])


# ------------------------------------------------------------------------------------------ weights


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    file: PinnedFile
    description: str
    license: str

    @property
    def filename(self) -> str:
        return f"{self.name}{Path(urllib.parse.urlsplit(self.file.url).path).suffix}"


WEIGHTS: dict[str, WeightsEntry] = {
    w.name: w
    for w in [
        WeightsEntry(
            "craft_x4",
            PinnedFile("https://raw.githubusercontent.com/Amazingren/NTIRE2024_ESR/6404fa48dde4a4adbf241a51debdc661aef20449/"
                       "model_zoo/team34_craft.pth",
                       "a3d57001df7e856be6b4e3553d77be3b038609f34db5d41b43c3e6c67756a381", 3426465),
            "CRAFT x4 (753 K params), bicubic degradation; NTIRE 2024 efficient-SR entry (team 34)",
            "MIT",
        ),
        WeightsEntry(
            "ditn_real_x4",
            PinnedFile("https://raw.githubusercontent.com/yongliuy/DITN/98352a85ab2ac19e97c86c87a2a907021c814a5d/"
                       "checkpoints/DITN_Real_x4.pth",
                       "989dc21e2379c6924a6bd32696df0f1fa8cfd43dd557e1ae4126b97708695b5a", 1811277),
            "DITN x4 (444 K params) trained for real-world degradations",
            "Apache-2.0",
        ),
    ]
}


def fetch_weights(name: str, dest: str | os.PathLike | None = None) -> Path:
    """The verified file of registered weights `name`, in the cache (default) or at `dest`."""
    if name not in WEIGHTS:
        raise IodaError(f"weights {name!r} are not registered (expected one of {', '.join(WEIGHTS)})")
    w = WEIGHTS[name]
    return fetch_pinned(w.file, dest if dest is not None else cache_dir() / "weights" / w.filename)


def resolve_checkpoint(model: str | os.PathLike) -> str:
    """A checkpoint argument as a file path: an existing path is kept, a registered weights name (craft_x4 ...)
    becomes its verified file in the cache (fetched on first use); anything else is left for the loader to
    refuse with its own message."""
    text = str(model)
    if text in WEIGHTS and not Path(text).exists():
        return str(fetch_weights(text))
    return text


def weights_listing() -> str:
    width = max(map(len, WEIGHTS))
    return "\n".join(f"{n.ljust(width)}  weights   {w.description} ({w.license})" for n, w in WEIGHTS.items())


def pinned_files(entry):
    """[(path relative to the entry's folder, PinnedFile)] of a pinned registry entry (ioda.data.registry)."""
    if len(entry.pinned) == 1:
        return [(local, f) for local, f in dataset_files(entry.pinned[0])]
    return [(f"{m}/{m}_{local}", f) for m in entry.pinned for local, f in dataset_files(m)]
