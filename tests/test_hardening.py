"""What a hostile but fair new user broke, one test (or more) per row: each ends in one clear line,
a non-zero exit, nothing lost, and is checked before any work where it can be."""

import io
import json
import os
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

from ioda.adapt.cli import main as adapt_main
from ioda.archs import build_model, load_model, save_model, upscale
from ioda.cli import main as ioda_main
from ioda.data.download import safe_extract
from ioda.data.imresize import imresize
from ioda.errors import IodaError
from ioda.evaluate import main as evaluate_main
from ioda.files import write_json
from ioda.imageio import image_to_tensor, read_image, tensor_to_image, write_image
from ioda.masks import cached_label_map, load_label_map, save_label_map
from ioda.train.pretrain import checkpoint_path
from ioda.train.pretrain import main as pretrain_main

PATCH = 16
TEAM15 = Path("../shared/assets/raw/sunny2109/SAFMN/68c2182e4f8829a979886b0a1cab8f269f91b321/NTIRE2023_ESR/"
              "model_zoo/team15_SAFMN.pth")


def _split(root: Path, images, scale: int) -> Path:
    for i, hr in enumerate(images):
        write_image(root / "HR" / f"im{i}.png", hr)
        write_image(root / f"LR_x{scale}" / f"im{i}.png", imresize(hr, 1 / scale))
    return root


def _photo(path: Path, seed: int) -> Path:
    cat = skdata.chelsea()[:256, :256]
    rng = np.random.default_rng(seed)
    noisy = np.clip(imresize(cat, 1 / 4).astype(float) + rng.normal(0, 8, (64, 64, 3)), 0, 255).astype(np.uint8)
    write_image(path, noisy)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    astro, coffee = skdata.astronaut(), skdata.coffee()
    hrs = [astro[:128, :128], astro[256:384, 256:384], coffee[:128, 200:328]]
    ckpt = root / "safmn_tiny.safetensors"
    save_model(build_model("safmn_tiny", seed=0), ckpt, preset="safmn_tiny")
    other = root / "safmn_tiny_seed1.safetensors"
    save_model(build_model("safmn_tiny", seed=1), other, preset="safmn_tiny")
    labels = np.zeros((64, 64), np.int32)
    labels[:32, :40], labels[32:, :], labels[:32, 40:] = 1, 2, 3
    save_label_map(root / "labels.npz", labels, {"source": "test"})
    save_label_map(root / "labels_other.npz", np.roll(labels, 7, axis=1), {"source": "test"})
    return {"root": root, "x4": _split(root / "x4", hrs, 4), "x2": _split(root / "x2", hrs, 2),
            "photo": _photo(root / "photo.png", 0), "photo2": _photo(root / "photo2.png", 1),
            "ckpt": ckpt, "other": other, "labels": root / "labels.npz", "labels_other": root / "labels_other.npz"}


def _args(world, out, *extra, model=None, photo=None, source=None):
    return [str(photo or world["photo"]), "--model", str(model or world["ckpt"]), "--out-dir", str(out),
            "--source-data", str(source or world["x4"]), "--encoder", "tiny", "--steps", "2", "--lr-patch",
            str(PATCH), "--device", "cpu", *extra]


def _refused(argv, main=adapt_main) -> str:
    with pytest.raises(IodaError) as err:
        main(argv)
    msg = str(err.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    return msg


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- row 1: every network spandrel loads adapts, saves, reloads and evaluates ---------------


def _spandrel_nets():
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.SAFMN import SAFMN

    torch.manual_seed(0)
    return {
        "safmn_x2": (SAFMN(dim=8, n_blocks=2, upscaling_factor=2), "SAFMN", 2),
        "safmn_dim12_x4": (SAFMN(dim=12, n_blocks=2, upscaling_factor=4), "SAFMN", 4),
        "compact_x4": (Compact(num_feat=16, num_conv=2, upscale=4), "Compact", 4),
    }


@pytest.mark.parametrize("name", ["safmn_x2", "safmn_dim12_x4", "compact_x4"])
def test_row1_any_spandrel_network_adapts_saves_reloads_and_evaluates(world, tmp_path, name):
    from ioda.archs.tiling import upscale_image

    net, arch, scale = _spandrel_nets()[name]
    src = tmp_path / f"{name}.pth"
    torch.save({"params": net.state_dict()}, src)  # the BasicSR layout users bring
    out = tmp_path / "run"
    assert adapt_main(_args(world, out, "--labels", str(world["labels"]), model=src,
                            source=world[f"x{scale}"])) == 0
    report = json.loads((out / "adapt.json").read_text())
    assert report["model"]["preset"] is None and report["model"]["arch"] == arch
    # reloads with no preset: spandrel recognises the saved state dict as the same network
    again = load_model(out / "model.safetensors")
    assert (again.arch, again.scale, again.preset) == (arch, scale, None)
    assert again.meta["arch"] == arch and again.meta["scale"] == scale
    moved = [k for k, v in again.module.state_dict().items() if not torch.equal(v, net.state_dict()[k])]
    assert moved, "the adapted weights equal the source: nothing was trained"
    # the reloaded network is the one that wrote sr.png
    photo = read_image(world["photo"])
    assert np.array_equal(upscale_image(again.module, photo, scale), read_image(out / "sr.png"))
    # and it evaluates
    csv, js = tmp_path / "e.csv", tmp_path / "e.json"
    assert evaluate_main(["--model", str(out / "model.safetensors"), "--data", str(world[f"x{scale}"]),
                          "--out-csv", str(csv), "--out-json", str(js), "--device", "cpu"]) == 0
    summary = json.loads(js.read_text())
    assert summary["n"] == 3 and np.isfinite(summary["mean_psnr"]) and summary["arch"] == arch


def test_row1_unrecognised_checkpoint_refused_before_any_work(world, tmp_path):
    if not TEAM15.is_file():
        pytest.skip(f"real unsupported checkpoint not found at {TEAM15} (the offline asset mirror ../shared/assets)")
    out = tmp_path / "run"
    msg = _refused(_args(world, out, model=TEAM15))
    assert "team15_SAFMN.pth" in msg and "architecture not recognised" in msg
    assert not out.exists()
    # the command line exits non-zero with the same single line
    assert ioda_main(["adapt", *_args(world, out, model=TEAM15)]) == 2
    assert not out.exists()


def test_row1_grey_network_refused_before_any_work(world, tmp_path):
    from spandrel.architectures.Compact import Compact

    grey = tmp_path / "grey.pth"
    torch.save(Compact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=1, upscale=4).state_dict(), grey)
    out = tmp_path / "run"
    assert "grey.pth: Compact maps 1-channel to 1-channel images" in _refused(_args(world, out, model=grey))
    assert not out.exists()


# -- row 2: a failed rerun removes only what it created ------------------------------------------------------


def test_row2_failed_rerun_keeps_the_earlier_finished_run(world, tmp_path):
    out = tmp_path / "run"
    assert adapt_main(_args(world, out)) == 0  # computes labels.npz/json into out
    before = _snapshot(out)
    assert {"model.safetensors", "sr.png", "adapt.json", "labels.npz", "labels.json"} <= set(before)
    msg = _refused(_args(world, out, source=tmp_path / "nonexistent"))
    assert "nonexistent" in msg
    assert _snapshot(out) == before


# -- row 3: --resume checks that the inputs are the checkpoint's ---------------------------------------------


def test_row3_resume_refuses_other_photo_model_or_labels(world, tmp_path):
    out = tmp_path / "run"
    base = ["--labels", str(world["labels"]), "--keep-checkpoint"]
    assert adapt_main(_args(world, out, *base)) == 0
    assert (out / "checkpoint.pt").exists()
    before = _snapshot(out)
    more = ["--resume", "--steps", "4"]
    msg = _refused(_args(world, out, *base, *more, photo=world["photo2"]))
    assert "checkpoint.pt" in msg and "photo" in msg
    msg = _refused(_args(world, out, *base, *more, model=world["other"]))
    assert "checkpoint.pt" in msg and "model" in msg
    msg = _refused(_args(world, out, "--labels", str(world["labels_other"]), "--keep-checkpoint", *more))
    assert "checkpoint.pt" in msg and "labels" in msg
    assert _snapshot(out) == before
    # the same inputs resume and are credited
    assert adapt_main(_args(world, out, *base, *more)) == 0
    report = json.loads((out / "adapt.json").read_text())
    assert report["stats"]["steps"] == 4 and report["photo"]["sha256"] == report["photo"]["sha256"]


# -- row 4: 0 is a value, never "not given" ------------------------------------------------------------------


@pytest.mark.parametrize("flag,expect", [("--steps", "--steps must be at least 1"),
                                         ("--batch-size", "--batch-size must be at least 1"),
                                         ("--lr-patch", "--lr-patch must be at least 8"),
                                         ("--eval-batch", "--eval-batch must be at least 1"),
                                         ("--lr", "--lr must be a positive number")])
def test_row4_zero_is_refused_not_replaced_by_the_preset(world, tmp_path, flag, expect):
    out = tmp_path / "run"
    assert expect in _refused(_args(world, out) + [flag, "0"])
    assert not out.exists()


def test_row4_pretrain_batch_size_zero(world, tmp_path):
    out = tmp_path / "m.safetensors"
    msg = _refused(["--preset", "safmn_tiny", "--out", str(out), "--data", str(world["x4"]), "--steps", "1",
                    "--batch-size", "0", "--device", "cpu"], main=pretrain_main)
    assert "--batch-size must be at least 1" in msg
    assert not out.exists()


# -- row 5: one line each, before step 1 ---------------------------------------------------------------------


def test_row5_negative_numbers(world, tmp_path):
    out = tmp_path / "run"
    assert "--lr must be a positive number, got -1" in _refused(_args(world, out) + ["--lr", "-1"])
    assert "--tile must be 0" in _refused(_args(world, out) + ["--tile", "-4"])
    assert not out.exists()
    msg = _refused(["--model", str(world["ckpt"]), "--data", str(world["x4"]), "--out-csv", str(tmp_path / "a.csv"),
                    "--out-json", str(tmp_path / "a.json"), "--tile", "-4", "--device", "cpu"], main=evaluate_main)
    assert "--tile must be 0" in msg


def test_row5_bad_resume_checkpoints(world, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    torch.save([1, 2, 3], out / "checkpoint.pt")
    msg = _refused(_args(world, out, "--resume"))
    assert "checkpoint.pt: not an ioda adaptation checkpoint" in msg
    # a checkpoint of another architecture (same recorded inputs): one line, not hundreds of keys
    out2 = tmp_path / "run2"
    assert adapt_main(_args(world, out2, "--labels", str(world["labels"]), "--keep-checkpoint")) == 0
    state = torch.load(out2 / "checkpoint.pt", weights_only=True)
    state["model"] = build_model("hat_tiny", seed=0).state_dict()  # the training loop's checkpoint format
    torch.save(state, out2 / "checkpoint.pt")
    msg = _refused(_args(world, out2, "--labels", str(world["labels"]), "--resume", "--steps", "4"))
    assert "checkpoint.pt: the checkpoint's weights do not fit this model" in msg
    # another architecture as --model: refused naming the model input
    hat = tmp_path / "hat.safetensors"
    save_model(build_model("hat_tiny", seed=0), hat, preset="hat_tiny")
    out3 = tmp_path / "run3"
    assert adapt_main(_args(world, out3, "--labels", str(world["labels"]), "--keep-checkpoint")) == 0
    msg = _refused(_args(world, out3, "--labels", str(world["labels"]), "--resume", "--steps", "4", model=hat))
    assert "checkpoint.pt: cannot resume: this run's model" in msg


def _unwritable(tmp_path: Path) -> tuple[Path, Path]:
    """(an existing folder nobody may write to, a folder inside a parent nobody may write to)."""
    if os.geteuid() == 0:  # root writes through file modes: use a read-only file system instead
        return Path("/proc"), Path("/proc/ioda-out")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro, ro / "out"


def test_row5_read_only_out_dir_or_parent_refused_before_step_1(world, tmp_path):
    ro, below = _unwritable(tmp_path)
    try:
        for out in (ro, below):
            msg = _refused(_args(world, out))
            assert f"--out-dir {out}: cannot write there" in msg
        assert not below.exists()
        msg = _refused(["--preset", "safmn_tiny", "--out", str(below / "m.safetensors"), "--data", str(world["x4"]),
                        "--steps", "1", "--device", "cpu"], main=pretrain_main)
        assert "cannot write there" in msg
    finally:
        if ro != Path("/proc"):
            ro.chmod(0o755)


# -- row 6: big photos: tiles by default, one uint8 buffer, weights kept when sr.png fails --------------------


def test_row6_uint8_tiles_equal_the_float_path_and_big_photos_tile_by_default():
    from ioda.adapt.outputs import tile_for as _tile_for
    from ioda.tiles import AUTO_TILE, AUTO_TILE_PIXELS
    from ioda.archs.tiling import upscale_image

    model = build_model("safmn_tiny", seed=0).eval()
    img = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    for tile in (0, 16):
        want = tensor_to_image(upscale(model, image_to_tensor(img), 4, tile=tile))
        assert np.array_equal(upscale_image(model, img, 4, tile=tile), want)

    class Args:
        tile = None

    assert _tile_for(Args, np.zeros((64, 64, 3), np.uint8)) == 0
    side = int(AUTO_TILE_PIXELS**0.5) + 1
    assert _tile_for(Args, np.zeros((side, side, 3), np.uint8)) == AUTO_TILE
    Args.tile = 0
    assert _tile_for(Args, np.zeros((side, side, 3), np.uint8)) == 0


def test_row6_sr_failure_keeps_the_adapted_weights(world, tmp_path, monkeypatch):
    import ioda.archs.tiling as tiling

    def oom(*a, **k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 13.4 GiB")

    monkeypatch.setattr(tiling, "upscale_image", oom)
    out = tmp_path / "run"
    msg = _refused(_args(world, out, "--labels", str(world["labels"])))
    assert "sr.png: not written" in msg and "weights are kept" in msg
    assert not (out / "sr.png").exists()
    assert load_model(out / "model.safetensors", preset="safmn_tiny").scale == 4
    assert "out of memory" in json.loads((out / "adapt.json").read_text())["sr_error"]


# -- row 7: malicious pickles are refused in words that do not suggest turning the safety off ----------------


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil(path: Path, marker: Path) -> Path:
    torch.save({"params": {"w": torch.zeros(1)}, "x": _Evil(marker)}, path)
    return path


def _says_code(msg: str, name: str) -> None:
    assert msg.startswith("refused: ") and name in msg and "contains code (posix.system), not only tensors" in msg
    assert "weights_only" not in msg and "False" not in msg


def test_row7_malicious_pickles_refused_everywhere(world, tmp_path):
    marker = tmp_path / "pwned"
    evil = _evil(tmp_path / "evil.pth", marker)
    out = tmp_path / "run"
    _says_code(_refused(_args(world, out, model=evil)), "evil.pth")
    _says_code(_refused(_args(world, out, "--alpha-weights", str(evil))), "evil.pth")
    _says_code(_refused(_args(world, out, "--mask-source", "sam", "--sam-model", "vit_b", "--sam-checkpoint",
                              str(evil))), "evil.pth")
    out.mkdir()
    _evil(out / "checkpoint.pt", marker)
    _says_code(_refused(_args(world, out, "--resume")), "checkpoint.pt")
    m = tmp_path / "m.safetensors"
    _evil(checkpoint_path(m), marker)
    _says_code(_refused(["--preset", "safmn_tiny", "--out", str(m), "--data", str(world["x4"]), "--steps", "2",
                         "--batch-size", "1", "--lr-patch", "8", "--resume", "--device", "cpu"], main=pretrain_main),
               "m.safetensors.ckpt")
    assert not marker.exists()


# -- row 8: archives: size and ratio caps before writing, truncation in one line -----------------------------

ZEROS = 200 << 20  # 200 MB of zeros: a few hundred KB packed


class _ZeroReader(io.RawIOBase):
    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def test_row8_zip_and_tar_bombs_refused_before_writing(tmp_path):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, zf.open("zeros.bin", "w") as f:
        block = bytes(1 << 20)
        for _ in range(ZEROS >> 20):
            f.write(block)
    t = tmp_path / "bomb.tar.gz"
    with tarfile.open(t, "w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = ZEROS
        tf.addfile(info, _ZeroReader(ZEROS))
    for archive in (z, t):
        assert archive.stat().st_size < 1 << 20
        target = tmp_path / f"out-{archive.name}"
        msg = _refused_call(safe_extract, archive, target)
        assert archive.name in msg and "decompression bomb" in msg
        assert list(target.iterdir()) == []
    # the total-size cap
    small = tmp_path / "small.zip"
    with zipfile.ZipFile(small, "w") as zf:
        zf.writestr("a.txt", "x" * 1000)
    assert "cap" in _refused_call(safe_extract, small, tmp_path / "o", max_bytes=100)


def _refused_call(fn, *a, **k) -> str:
    with pytest.raises(IodaError) as err:
        fn(*a, **k)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_row8_truncated_archives_in_one_line(tmp_path):
    t = tmp_path / "data.tar.gz"
    payload = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    with tarfile.open(t, "w:gz") as tf:
        info = tarfile.TarInfo("a.bin")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(t.read_bytes()[: t.stat().st_size // 2])
    target = tmp_path / "out"
    msg = _refused_call(safe_extract, cut, target)
    assert "cut.tar.gz: truncated archive" in msg
    assert list(target.iterdir()) == []
    z = tmp_path / "data.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.bin", payload)
    cutz = tmp_path / "cut.zip"
    cutz.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    assert "cut.zip: truncated archive" in _refused_call(safe_extract, cutz, target)
    safe_extract(t, target)  # the whole archive extracts
    assert (target / "a.bin").read_bytes() == payload


def test_row8_dataset_urls_are_https():
    from ioda.data.registry import REGISTRY

    urls = [f.url for e in REGISTRY.values() for f in getattr(e, "files", ())]
    assert urls and all(u.startswith("https://") for u in urls), [u for u in urls if not u.startswith("https://")]


# -- row 9: a cached mask is checked against its sidecar; mostly-fallback runs warn --------------------------


def test_row9_replaced_mask_cache_is_detected(world, tmp_path, caplog):
    out = tmp_path / "labels.npz"
    labels, meta = cached_label_map(world["photo"], out)
    assert meta["npz_sha256"] and meta["count"] == labels.max()
    other = (np.arange(labels.size).reshape(labels.shape) % 3).astype(np.int32)
    np.savez_compressed(out, labels=other)  # valid, but not what the sidecar describes
    msg = _refused_call(load_label_map, out)
    assert "labels.npz: does not match its sidecar labels.json" in msg
    again, _ = cached_label_map(world["photo"], out)  # the cache is recomputed, not reused
    assert np.array_equal(again, labels)
    assert load_label_map(out).max() == labels.max()


def test_row9_run_where_most_instance_draws_fall_back_warns(world, tmp_path, capsys):
    empty = tmp_path / "empty.npz"
    save_label_map(empty, np.zeros((64, 64), np.int32), {"source": "test"})
    assert adapt_main(_args(world, tmp_path / "run", "--labels", str(empty))) == 0
    err = capsys.readouterr().err
    assert "instance-mask draws found no usable instance" in err
    capsys.readouterr()
    assert adapt_main(_args(world, tmp_path / "run2", "--labels", str(world["labels"]))) == 0
    assert "no usable instance" not in capsys.readouterr().err


# -- row 10: 16-bit colour PNGs are rounded, not truncated ---------------------------------------------------


def _png16(path: Path, arr: np.ndarray) -> None:
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_row10_16bit_rgb_png_rounded(tmp_path):
    a = np.random.default_rng(0).integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    _png16(tmp_path / "rgb16.png", a)
    want = np.floor(a.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    assert np.array_equal(read_image(tmp_path / "rgb16.png"), want)
    rgba = np.concatenate([a, np.full((20, 30, 1), 65535, np.uint16)], axis=2)
    _png16(tmp_path / "rgba16.png", rgba)
    assert np.array_equal(read_image(tmp_path / "rgba16.png"), want)
    (tmp_path / "cut16.png").write_bytes((tmp_path / "rgb16.png").read_bytes()[:300])
    assert "cut16.png: corrupt or truncated image" in _refused_call(read_image, tmp_path / "cut16.png")


# -- row 11: outputs follow the umask ------------------------------------------------------------------------


def test_row11_outputs_respect_the_umask(world, tmp_path):
    from ioda.data.prepare import prepare
    from ioda.files import make_temp_dir

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
        assert make_temp_dir(tmp_path, ".t-").stat().st_mode & 0o777 == 0o750
        out = tmp_path / "run"
        assert adapt_main(_args(world, out, "--labels", str(world["labels"]))) == 0
        for name in ("model.safetensors", "sr.png", "adapt.json", "train_log.csv"):
            assert (out / name).stat().st_mode & 0o777 == 0o640, name
        prepare("demo_canon", tmp_path / "ds", seed=0, spec={"splits": {"pool": ["chelsea"], "test": ["colorwheel"]}})
        assert (tmp_path / "ds").stat().st_mode & 0o777 == 0o750
        assert (tmp_path / "ds" / "manifest.json").stat().st_mode & 0o777 == 0o640
        z = tmp_path / "x.zip"
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("d/a.txt", "hello")
        safe_extract(z, tmp_path / "ex")
        assert (tmp_path / "ex" / "d" / "a.txt").read_text() == "hello"
    finally:
        os.umask(old)


# -- second round: what a hostile new user still broke ----------------------------------------------------------


def _png16_header(path: Path, w: int, h: int) -> None:
    """A small 16-bit RGB PNG whose IHDR claims w x h pixels (one short IDAT: nothing near that size is stored)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 6 * min(w, 64)))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [13500, 60000])
def test_16bit_png_above_the_pixel_limit_refused_before_decoding(tmp_path, side):
    from PIL import Image

    f = tmp_path / f"big16_{side}.png"
    _png16_header(f, side, side)
    assert f.stat().st_size < 1000 and side * side > 2 * Image.MAX_IMAGE_PIXELS
    msg = _refused_call(read_image, f)
    assert str(f) in msg and "too many pixels" in msg and f"{side}x{side}" in msg
    # the same words as an 8-bit file above the limit
    with pytest.raises(IodaError, match="too many pixels"):
        Image.MAX_IMAGE_PIXELS, old = 100, Image.MAX_IMAGE_PIXELS
        try:
            write_image(tmp_path / "small8.png", np.zeros((20, 20, 3), np.uint8))
            read_image(tmp_path / "small8.png")
        finally:
            Image.MAX_IMAGE_PIXELS = old


def test_16bit_png_cli_says_one_line_exit_2(tmp_path, capsys):
    f = tmp_path / "big16.png"
    _png16_header(f, 60000, 60000)
    rc = ioda_main(["adapt", str(f), "--model", "x.safetensors", "--out-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "too many pixels" in err and not (tmp_path / "o").exists()


def test_lr_patch_below_what_the_network_accepts_refused_before_any_work(world, tmp_path):
    """Below the schema's minimum: refused by the settings check; above it, a network that cannot run the patch
    (asked of the network: here one that needs 12 px) is refused naming the smallest patch it accepts."""
    from types import SimpleNamespace

    from ioda.adapt.cli import _check_patch
    from ioda.adapt.variants import get_variant

    out = tmp_path / "o"
    msg = _refused(_args(world, out, "--lr-patch", "3"))
    assert "--lr-patch" in msg and "3" in msg and not out.exists()

    class NeedsTwelve(torch.nn.Module):  # a pyramid that pools by 12 (like SAFMN's, deeper)
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)

        def forward(self, x):
            if min(x.shape[-2:]) < 12:
                raise RuntimeError("input smaller than the pooling window")
            return torch.nn.functional.interpolate(self.conv(x), scale_factor=4)

    def runs(p):  # independently of ioda: one forward of a p x p patch, output p x scale
        try:
            with torch.no_grad():
                return NeedsTwelve()(torch.zeros(1, 3, p, p)).shape[-2:] == (4 * p, 4 * p)
        except RuntimeError:
            return False

    loaded = SimpleNamespace(module=NeedsTwelve(), scale=4, path="needs12.pth")
    with pytest.raises(IodaError) as err:
        _check_patch(loaded, get_variant("ioda"), 9)
    msg = str(err.value)
    assert "--lr-patch 9" in msg and "needs12.pth" in msg and "\n" not in msg
    smallest = int(msg.split("smallest patch it accepts is ")[1].split()[0].strip(";,.)"))
    assert smallest == 12 and runs(smallest) and not runs(smallest - 1)
    _check_patch(loaded, get_variant("ioda"), smallest)  # accepted
    _check_patch(loaded, get_variant("baseline"), 9)  # nothing to train: no patch to crop


class _SystemCall:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("protocol", range(0, 6))
def test_plain_pickle_holding_code_is_said_to_contain_code(world, tmp_path, protocol):
    import pickle

    f = tmp_path / f"plain{protocol}.pth"
    f.write_bytes(pickle.dumps({"params": {"w": _SystemCall()}}, protocol=protocol))
    msg = _refused(_args(world, tmp_path / "o", model=f))
    assert f"refused: {f} contains code ({os.system.__module__}.system)" in msg, msg
    benign = tmp_path / f"benign{protocol}.pth"
    benign.write_bytes(pickle.dumps({"params": {"w": [1.0, 2.0]}, "note": "x" * 10}, protocol=protocol))
    with pytest.raises(IodaError) as err:
        load_model(benign)
    assert "contains code" not in str(err.value)


def test_index_with_a_photo_path_is_refused(world, tmp_path):
    from ioda.masks.cli import main as masks_main

    for index in ("0", "2"):
        msg = _refused(_args(world, tmp_path / "o", "--index", index))
        assert "--index" in msg and str(world["photo"]) in msg and not (tmp_path / "o").exists()
        msg = _refused([str(world["photo"]), "--index", index, "--out", str(tmp_path / "l.npz")], main=masks_main)
        assert "--index" in msg and not (tmp_path / "l.npz").exists()


@pytest.mark.parametrize("suffix", [".gif", ".tiff"])
def test_animated_or_multi_page_image_refused(world, tmp_path, suffix):
    from PIL import Image

    f = tmp_path / f"anim{suffix}"
    frames = [Image.fromarray(np.full((64, 64, 3), 60 * k, np.uint8)) for k in range(3)]
    frames[0].save(f, save_all=True, append_images=frames[1:])
    msg = _refused_call(read_image, f)
    assert str(f) in msg and "3 frames" in msg
    msg = _refused(_args(world, tmp_path / "o", photo=f))
    assert "3 frames" in msg and not (tmp_path / "o").exists()
    frames[0].save(tmp_path / f"still{suffix}")
    assert read_image(tmp_path / f"still{suffix}").shape == (64, 64, 3)


def test_wrong_shape_checkpoint_names_the_tensor_and_both_shapes(world, tmp_path):
    sd = build_model("safmn_tiny", seed=0).state_dict()
    key = "feats.0.safm.aggr.weight"
    want = tuple(sd[key].shape)
    bad = tuple(s + 1 for s in want)
    sd[key] = torch.zeros(bad)
    f = tmp_path / "wrong_shape.pth"
    torch.save({"params": sd}, f)
    msg = _refused(_args(world, tmp_path / "o", model=f))
    assert str(f) in msg and key in msg and str(bad) in msg and str(want) in msg, msg


def test_adapt_json_has_no_absolute_machine_paths(world, tmp_path, monkeypatch):
    out = tmp_path / "o"
    args = _args(world, out, "--labels", str(world["labels"]), "--eval-data", str(world["x4"]), "--eval-every", "1")
    assert adapt_main(args) == 0
    text = (out / "adapt.json").read_text()
    assert str(world["root"]) not in text and str(tmp_path) not in text, text
    report = json.loads(text)
    assert report["photo"]["path"] == world["photo"].name and report["model"]["path"] == world["ckpt"].name
    monkeypatch.chdir(world["root"])  # inside the working directory: the path relative to it
    assert adapt_main(_args(world, out, "--labels", str(world["labels"]))) == 0
    assert json.loads((out / "adapt.json").read_text())["photo"]["path"] == "photo.png"


def test_library_warnings_do_not_print_before_the_one_line_error(world, tmp_path):
    """A fresh process (warnings print once per process): stderr holds the error line and nothing else."""
    import pickle
    import subprocess
    import sys

    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"w": _SystemCall()}, protocol=4))  # torch warns about the protocol
    sd = build_model("safmn_tiny", seed=0).state_dict()
    sd["feats.0.safm.aggr.weight"] = torch.zeros(9, 9, 1, 1)
    torch.save({"params": sd}, tmp_path / "shape.pth")  # fails after spandrel's imports (torch.jit warnings)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), IODA_PROGRESS="0")
    env.pop("PYTHONWARNINGS", None)
    for model in (plain, tmp_path / "shape.pth"):
        proc = subprocess.run([sys.executable, "-m", "ioda", "adapt", str(world["photo"]), "--model", str(model),
                               "--out-dir", str(tmp_path / "o"), "--encoder", "tiny", "--device", "cpu"],
                              capture_output=True, text=True, env=env, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("ioda adapt: error:"), proc.stderr
