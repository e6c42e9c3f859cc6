"""Downloads against a loopback HTTP server (127.0.0.1 only), archive safety, manual-dataset checks."""

import dataclasses
import hashlib
import io
import os
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from ioda.data import imresize
from ioda.data.download import download, safe_extract, verify_manual
from ioda.data.prepare import prepare
from ioda.data.registry import REGISTRY, DatasetEntry, KnownChecksum, RemoteFile, SplitSource
from ioda.errors import IodaError
from ioda.imageio import read_image, write_image


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PAYLOAD = _tar_bytes({f"pics/{i}.txt": os.urandom(20000) for i in range(8)})
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        if rng and srv.mode != "ignore_range":
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.mode == "cut_first" and len(srv.requests) == 1:
            self.wfile.write(body[: len(body) // 2])  # then drop the connection mid-body
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests, srv.mode, srv.files = [], "normal", {"/data.tar.gz": PAYLOAD}
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_good_checksum(server, tmp_path):
    dest = download(server.url + "/data.tar.gz", tmp_path / "d.tar.gz", sha256=DIGEST, expected_size=len(PAYLOAD),
                    timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "d.tar.gz.part").exists()
    # a verified existing file is kept without asking the server again
    n = len(server.requests)
    download(server.url + "/data.tar.gz", dest, sha256=DIGEST, timeout=5)
    assert len(server.requests) == n


def test_bad_checksum_removes_file_and_names_digests(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(IodaError) as err:
        download(server.url + "/data.tar.gz", tmp_path / "d.tar.gz", sha256=wrong, timeout=5)
    msg = str(err.value)
    assert "d.tar.gz" in msg and wrong in msg and DIGEST in msg
    assert list(tmp_path.iterdir()) == []  # neither dest nor .part left


def test_size_mismatch(server, tmp_path):
    with pytest.raises(IodaError, match="does not match the expected 5 bytes"):
        download(server.url + "/data.tar.gz", tmp_path / "d.bin", expected_size=5, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    server.mode = "cut_first"
    dest = download(server.url + "/data.tar.gz", tmp_path / "d.tar.gz", sha256=DIGEST, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0] is None
    assert server.requests[1] == f"bytes={len(PAYLOAD) // 2}-"  # resumed where the cut happened
    assert len(server.requests) == 2


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.mode = "ignore_range"
    part = tmp_path / "d.tar.gz.part"
    part.write_bytes(b"x" * 1000)  # stale partial data that does not match the file
    dest = download(server.url + "/data.tar.gz", tmp_path / "d.tar.gz", sha256=DIGEST, timeout=5)
    assert server.requests == ["bytes=1000-"]
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()


def test_http_error_and_bad_scheme(server, tmp_path):
    with pytest.raises(IodaError, match="HTTP 404"):
        download(server.url + "/missing.zip", tmp_path / "m.zip", timeout=5)
    with pytest.raises(IodaError, match="expected an http"):
        download("file:///etc/passwd", tmp_path / "p", timeout=5)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ archives


def test_safe_extract_tar_and_zip(tmp_path):
    tar = tmp_path / "a.tar.gz"
    tar.write_bytes(PAYLOAD)
    out = safe_extract(tar, tmp_path / "t")
    assert sorted(p.name for p in (out / "pics").iterdir()) == [f"{i}.txt" for i in range(8)]
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("dir/x.txt", "hello")
    safe_extract(z, tmp_path / "t")
    assert (tmp_path / "t" / "dir" / "x.txt").read_text() == "hello"
    assert (tmp_path / "t" / "pics" / "0.txt").exists()  # earlier content kept
    assert [p.name for p in (tmp_path / "t").iterdir() if p.name.startswith(".")] == []


def _evil_tar(path, kind):
    with tarfile.open(path, "w") as tf:
        good = tarfile.TarInfo("ok.txt")
        good.size = 2
        tf.addfile(good, io.BytesIO(b"ok"))
        if kind == "dotdot":
            m = tarfile.TarInfo("../escape.txt")
            m.size = 4
            tf.addfile(m, io.BytesIO(b"evil"))
        elif kind == "absolute":
            m = tarfile.TarInfo(str(path.parent / "abs.txt"))
            m.size = 4
            tf.addfile(m, io.BytesIO(b"evil"))
        elif kind == "symlink":
            m = tarfile.TarInfo("link")
            m.type = tarfile.SYMTYPE
            m.linkname = "../../outside"
            tf.addfile(m)
        elif kind == "hardlink":
            m = tarfile.TarInfo("hard")
            m.type = tarfile.LNKTYPE
            m.linkname = "../outside"
            tf.addfile(m)


@pytest.mark.parametrize("kind,member", [("dotdot", "../escape.txt"), ("absolute", "abs.txt"),
                                         ("symlink", "link"), ("hardlink", "hard")])
def test_malicious_tar_refused(tmp_path, kind, member):
    arc = tmp_path / "evil.tar"
    _evil_tar(arc, kind)
    target = tmp_path / "t"
    with pytest.raises(IodaError) as err:
        safe_extract(arc, target)
    assert member in str(err.value) and "evil.tar" in str(err.value)
    assert list(target.iterdir()) == []  # nothing extracted, not even ok.txt
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "abs.txt").exists()


@pytest.mark.parametrize("name", ["../zip_escape.txt", "/tmp/zip_abs.txt", "C:/win.txt"])
def test_malicious_zip_refused(tmp_path, name):
    arc = tmp_path / "evil.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("ok.txt", "ok")
        zf.writestr(zipfile.ZipInfo(name), "evil")  # ZipInfo keeps the name as given
    target = tmp_path / "t"
    with pytest.raises(IodaError, match="outside"):
        safe_extract(arc, target)
    assert list(target.iterdir()) == []
    assert not (tmp_path / "zip_escape.txt").exists()


def test_zip_symlink_refused(tmp_path):
    arc = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(IodaError, match="symlink"):
        safe_extract(arc, tmp_path / "t")


def test_not_an_archive(tmp_path):
    bad = tmp_path / "x.tar"
    bad.write_bytes(b"not an archive at all" * 10)
    with pytest.raises(IodaError, match="not a tar or zip"):
        safe_extract(bad, tmp_path / "t")


# ------------------------------------------------------------------------------------------ manual sets


def _png(path, h, w, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)
    write_image(path, img)
    return img


def test_verify_manual_realsr_instructions(tmp_path):
    entry = REGISTRY["RealSR_Canon"]
    with pytest.raises(IodaError) as err:
        verify_manual(entry, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "RealSR_V3/Canon/Test/4/*_HR.png matches 0 files, expected 50" in msg
    assert "github.com/csjcai/RealSR" in msg and str(tmp_path / "RealSR_V3") in msg


def test_realsr_layout_verifies_and_prepares(tmp_path):
    base = tmp_path / "raw" / "RealSR_V3" / "Canon"
    for split, n in (("Train", 2), ("Test", 50)):
        for i in range(1, n + 1):
            _png(base / split / "4" / f"Canon_{i:03d}_HR.png", 16, 12, i)
            _png(base / split / "4" / f"Canon_{i:03d}_LR4.png", 4, 3, 1000 + i)
    found = verify_manual(REGISTRY["RealSR_Canon"], tmp_path / "raw")
    assert len(found["test"]) == 50 and len(found["train"]) == 2
    out = tmp_path / "realsr"
    prepare("RealSR_Canon", out, root=tmp_path / "raw")
    assert read_image(out / "test" / "LR_x4" / "Canon_007.png").shape == (4, 3, 3)
    assert np.array_equal(read_image(out / "test" / "HR" / "Canon_007.png"),
                          read_image(base / "Test" / "4" / "Canon_007_HR.png"))
    # a missing LR counterpart is named
    (base / "Train" / "4" / "Canon_002_LR4.png").unlink()
    with pytest.raises(IodaError, match="Canon_002"):
        prepare("RealSR_Canon", tmp_path / "again", root=tmp_path / "raw")
    assert not (tmp_path / "again").exists()


def test_verify_manual_checksum(tmp_path, monkeypatch):
    base = tmp_path / "Tiny"
    _png(base / "hr" / "a.png", 8, 8, 0)
    entry = DatasetEntry("tiny", "manual", "tiny", "Tiny", "https://example.org/tiny",
                         splits={"train": SplitSource(hr=("hr/*.png",), count=1)},
                         checksums=(KnownChecksum("hr/a.png", "f" * 64),))
    with pytest.raises(IodaError, match=r"a\.png: SHA-256 mismatch \(expected f{64}"):
        verify_manual(entry, tmp_path)


def test_download_dataset_end_to_end(server, tmp_path, monkeypatch):
    """A `download` entry: fetched from the loopback server, unpacked, LR made by MATLAB bicubic."""
    hrs = {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            img = np.random.default_rng(i).integers(0, 256, (18, 21, 3)).astype(np.uint8)  # not divisible by 4
            p = tmp_path / f"src{i}.png"
            write_image(p, img)
            hrs[f"{i:04d}"] = img
            zf.write(p, f"Set/HR/{i:04d}.png")
    server.files["/set.zip"] = buf.getvalue()
    entry = DatasetEntry(
        "tinyset", "download", "tiny", "Tinyset", server.url,
        files=(RemoteFile(server.url + "/set.zip", "set.zip", hashlib.sha256(buf.getvalue()).hexdigest()),),
        splits={"train": SplitSource(hr=("Set/HR/*.png",), count=3)},
        degradation={"type": "bicubic", "scale": 4},
    )
    monkeypatch.setitem(REGISTRY, "tinyset", entry)
    manifest = prepare("tinyset", tmp_path / "out", root=tmp_path / "raw", seed=0)
    out = tmp_path / "out" / "train"
    for stem, img in hrs.items():
        hr = read_image(out / "HR" / f"{stem}.png")
        assert hr.shape == (16, 20, 3)  # mod-cropped to a multiple of 4
        assert np.array_equal(hr, img[:16, :20])
        assert np.array_equal(read_image(out / "LR_x4" / f"{stem}.png"), imresize(img[:16, :20], 0.25))
    assert manifest.is_file()
    # a second run reuses the verified download and the unpacked files
    n = len(server.requests)
    prepare("tinyset", tmp_path / "out", root=tmp_path / "raw", seed=0)
    assert len(server.requests) == n
    assert dataclasses.is_dataclass(entry)
    assert Path(tmp_path / "raw" / "Tinyset" / "downloads" / "set.zip").is_file()
