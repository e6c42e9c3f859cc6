"""Downloads with resume and checksums, safe archive extraction, and checks of hand-placed datasets.

Only the standard library talks to the network (urllib). A download goes to `<dest>.part`, resumes
with an HTTP Range request after an interruption (and restarts cleanly if the server ignores Range),
is verified (size, SHA-256) and only then renamed onto `dest`. The `.part` file is kept after a network
failure so the next run resumes; it is deleted when the finished file fails verification.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import socket
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ioda.errors import IodaError
from ioda.files import make_temp_dir, removed_on_failure, sha256_file
from ioda.imageio import find_files
from ioda.runtime import progress_enabled

LOG = logging.getLogger("ioda")
CHUNK = 1 << 20
USER_AGENT = "ioda-downloader/0.1 (+https://github.com/ZaizuoTang/IODA reproduction)"


class DownloadFailed(IodaError):
    """The server could not be reached or the transfer kept breaking (not an HTTP error or a bad checksum)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def verify_file(path: Path, dest: Path, sha256: str | None, expected_size: int | None) -> None:
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise IodaError(f"{dest}: size {size} bytes does not match the expected {expected_size} bytes")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual.lower() != sha256.lower():
            raise IodaError(f"{dest}: SHA-256 mismatch (expected {sha256.lower()}, got {actual})")


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _content_range_start(resp) -> int | None:
    m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return int(m.group(1)) if m else None


def _fetch_once(url: str, part: Path, timeout: float, expected_size: int | None) -> None:
    """One HTTP request that appends to (or restarts) `part`; raises OSError-like errors when cut off."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # our .part is already complete or bigger than the file: restart
            part.unlink()
            resp = _open(url, 0, timeout)
            offset = 0
        else:
            raise
    with resp:
        if offset and (resp.status != 206 or _content_range_start(resp) != offset):
            LOG.info("%s: server ignored the Range request; restarting from byte 0", url)
            offset = 0  # a 200 reply carries the whole file: overwrite the .part
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else expected_size
        mode = "ab" if offset else "wb"
        got = 0
        with open(part, mode) as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5],
            disable=not progress_enabled(),
        ) as bar:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                f.write(block)
                got += len(block)
                bar.update(len(block))
        if length is not None and got < int(length):
            raise http.client.IncompleteRead(b"", int(length) - got)


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    expected_size: int | None = None,
    retries: int = 5,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `dest` (resuming a previous `.part`), verify it, rename atomically; return dest.

    An existing `dest` that passes verification is kept as is (no network access)."""
    dest = Path(dest)
    if not url.startswith(("http://", "https://")):
        raise IodaError(f"{dest}: refusing to download from {url!r} (expected an http:// or https:// URL)")
    if url.startswith("http://") and sha256 is None:
        LOG.warning("%s: plain http and no pinned sha256: the file's integrity cannot be checked", url)
    if dest.exists():
        try:
            verify_file(dest, dest, sha256, expected_size)
            return dest
        except IodaError as err:
            LOG.warning("%s; downloading it again", err)
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last: Exception | None = None
    for attempt in range(retries):
        try:
            _fetch_once(url, part, timeout, expected_size)
            break
        except urllib.error.HTTPError as err:
            raise IodaError(f"{url}: HTTP {err.code} {err.reason} (while downloading {dest})") from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as err:
            last = err
            LOG.warning("%s: transfer interrupted (%s); resuming (attempt %d/%d)", url, err, attempt + 2, retries)
    else:
        raise DownloadFailed(
            f"{url}: download failed after {retries} attempts ({last}); partial data kept in {part} for resuming",
            reason=str(last),
        )
    with removed_on_failure(part):
        verify_file(part, dest, sha256, expected_size)
    os.replace(part, dest)
    return dest


# ------------------------------------------------------------------------------------------ extraction


def _member_target(name: str, root: Path, archive: Path, member: str | None = None) -> Path:
    """Where a member named `name` lands; refuse absolute paths, drive letters and '..' escapes.

    `member` names the archive member in the message when `name` is its link target."""
    label = repr(member or name) + (f" (link to {name!r})" if member else "")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in pure.parts:
        raise IodaError(f"{archive}: member {label} would be written outside the target folder (absolute path or '..')")
    out = (root / pure).resolve()
    if out != root and root not in out.parents:
        raise IodaError(f"{archive}: member {label} would be written outside the target folder")
    return out


# Caps checked before anything is written: images and weights compress little (ratio ~1), so an archive that
# claims to expand more than MAX_RATIO times its size is treated as a decompression bomb.
MAX_EXTRACT_BYTES = 256 << 30  # 256 GiB: above every dataset the registry knows (GTA5 ~60 GB)
MAX_RATIO = 100
FREE_SPACE_MARGIN = 64 << 20


def _check_size(archive: Path, total: int, target: Path, max_bytes: int, max_ratio: float) -> None:
    packed = max(archive.stat().st_size, 1)
    if total > max_bytes:
        raise IodaError(f"{archive}: would expand to {total} bytes, above the {max_bytes}-byte cap (refused)")
    if total > max_ratio * packed and total > FREE_SPACE_MARGIN:
        raise IodaError(f"{archive}: would expand {total / packed:.0f} times its size ({total} bytes from {packed}), "
                        f"above the {max_ratio:g}x cap: refused as a likely decompression bomb")
    free = shutil.disk_usage(target).free
    if total + FREE_SPACE_MARGIN > free:
        raise IodaError(f"{archive}: needs {total} bytes to extract, only {free} free in {target}")


def _truncated(archive: Path, err: BaseException) -> IodaError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return IodaError(f"{archive}: truncated archive or corrupt data ({first[:160]})")


def _check_tar(tf: tarfile.TarFile, root: Path, archive: Path) -> None:
    for m in tf.getmembers():
        where = _member_target(m.name, root, archive)
        if m.issym():
            link = PurePosixPath(m.linkname)
            dest = (where.parent / link).resolve()
            if link.is_absolute() or (dest != root and root not in dest.parents):
                raise IodaError(f"{archive}: member {m.name!r} is a symlink to {m.linkname!r} outside the target folder")
        elif m.islnk():
            _member_target(m.linkname, root, archive, member=m.name)
        elif not (m.isfile() or m.isdir()):
            raise IodaError(f"{archive}: member {m.name!r} is a device or FIFO (refused)")


def _check_zip(zf: zipfile.ZipFile, root: Path, archive: Path) -> None:
    for info in zf.infolist():
        _member_target(info.filename, root, archive)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise IodaError(f"{archive}: member {info.filename!r} is a symlink (refused in zip archives)")


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike, max_bytes: int = MAX_EXTRACT_BYTES,
                 max_ratio: float = MAX_RATIO) -> Path:
    """Extract a .tar(.gz/.bz2/.xz) or .zip into `target`, refusing any member that could escape it.

    Everything is checked before anything is written (paths, links, total size against `max_bytes`, expansion
    ratio against `max_ratio`, free disk space), then extracted into a temporary folder inside `target` and
    moved into place, so a refused, truncated or broken archive leaves `target` as it was."""
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise IodaError(f"{archive}: archive not found")
    target.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(target, prefix=".extract-")
    with removed_on_failure(staging):
        root = staging.resolve()
        if zipfile.is_zipfile(archive):
            try:
                with zipfile.ZipFile(archive) as zf:
                    _check_zip(zf, root, archive)
                    _check_size(archive, sum(i.file_size for i in zf.infolist()), target, max_bytes, max_ratio)
                    bad = zf.testzip()
                    if bad is not None:
                        raise IodaError(f"{archive}: member {bad!r} is corrupt (CRC mismatch)")
                    zf.extractall(root)
            except (zipfile.BadZipFile, EOFError, zlib.error) as err:
                raise _truncated(archive, err) from None
        else:
            if archive.suffix.lower() == ".zip":  # a zip cut short loses its central directory (at the end)
                raise IodaError(f"{archive}: truncated archive or not a zip file (no central directory found)")
            try:
                tf = tarfile.open(archive)
            except (tarfile.TarError, EOFError, zlib.error) as err:
                if archive.stat().st_size and isinstance(err, (EOFError, zlib.error)):
                    raise _truncated(archive, err) from None
                raise IodaError(f"{archive}: not a tar or zip archive ({err})") from None
            with tf:
                try:  # reading the member list decompresses the whole stream: truncation shows up here
                    _check_tar(tf, root, archive)
                except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
                    raise _truncated(archive, err) from None
                _check_size(archive, sum(m.size for m in tf.getmembers() if m.isfile()), target, max_bytes,
                            max_ratio)
                try:
                    if hasattr(tarfile, "data_filter"):  # Python >= 3.12 (and security backports)
                        tf.extractall(root, filter="data")
                    else:  # older Pythons without the filter: the members were checked above
                        tf.extractall(root)
                except (tarfile.TarError, EOFError, zlib.error) as err:
                    raise _truncated(archive, err) from None
                except OSError as err:
                    raise IodaError(f"{archive}: extraction failed ({err})") from None
    try:
        for child in sorted(staging.iterdir()):
            dest = target / child.name
            if dest.is_dir() and child.is_dir() and not dest.is_symlink():
                shutil.copytree(child, dest, dirs_exist_ok=True, symlinks=True)
            else:
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                os.replace(child, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ------------------------------------------------------------------------------------------ manual sets


def verify_manual(entry, root: str | os.PathLike) -> dict[str, list[Path]]:
    """Check a hand-placed dataset under `root`: every file set of every split present in the expected
    number (and checksums where known). Returns {split: [HR files]}. Otherwise raises one IodaError
    that says which files to put where and where to get them."""
    base = Path(root) / entry.folder
    problems = []
    found: dict[str, list[Path]] = {}
    for split, src in entry.splits.items():
        for fs in src.file_sets():
            files = find_files(base, fs.pattern)
            n = len(files)
            ok = n == fs.count if fs.count is not None else n >= fs.min_count
            if not ok:
                want = f"{fs.count}" if fs.count is not None else f"at least {fs.min_count}"
                problems.append(f"{split}: {base / fs.pattern} matches {n} files, expected {want}")
        found[split] = find_files(base, "|".join(src.hr))
    if problems:
        raise IodaError(
            f"dataset {entry.name!r} is not in place ({'; '.join(problems)}). {entry.instructions.strip()} "
            f"Get it from {entry.page} and place it under {base}"
        )
    for f in entry.checksums:
        path = base / f.path
        if not path.is_file():
            raise IodaError(f"{path}: missing (expected the file from {entry.page})")
        actual = sha256_file(path)
        if actual != f.sha256:
            raise IodaError(f"{path}: SHA-256 mismatch (expected {f.sha256}, got {actual})")
    return found
