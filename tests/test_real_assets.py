"""Real inputs end to end: pinned files (mirror or network), the pinned datasets and weights, paired folders,
and numbers checked against an independent computation (spandrel directly + BasicSR-convention metrics
written here from BasicSR's definitions, not ioda.metrics)."""

from __future__ import annotations

import json
import math
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.signal import correlate2d

from ioda.data.assets import WEIGHTS, PinnedFile, dataset_files, fetch_pinned, mirror_path, resolve_checkpoint
from ioda.errors import IodaError
from real_assets import prepared, real, real_env  # noqa: F401  (fixtures)

# ------------------------------------------------------------------------------------------ mirror unit tests


def test_mirror_path_maps_host_path_to_folder(tmp_path):
    url = "https://raw.githubusercontent.com/o/r/0123/a/b.png"
    assert mirror_path(url, tmp_path) == tmp_path / "o/r/0123/a/b.png"
    assert mirror_path(url, "") is None
    with pytest.raises(IodaError, match="cannot map"):
        mirror_path("https://host/a/../../etc/passwd", tmp_path)


def _pinned(tmp_path, data: bytes, url="https://example.org/x/y/file.bin"):
    import hashlib

    return PinnedFile(url, hashlib.sha256(data).hexdigest(), len(data))


def test_mirror_file_is_copied_and_verified(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "x/y").mkdir(parents=True)
    (mirror / "x/y/file.bin").write_bytes(b"real bytes")
    monkeypatch.setenv("IODA_MIRROR", str(mirror))
    f = _pinned(tmp_path, b"real bytes")
    assert fetch_pinned(f, tmp_path / "out/f.bin").read_bytes() == b"real bytes"
    # a mirror file with other bytes is refused like a bad download, naming the mirror file; nothing left behind
    (mirror / "x/y/file.bin").write_bytes(b"other bytes")
    with pytest.raises(IodaError, match=r"mirror/x/y/file.bin: (size|SHA-256)"):
        fetch_pinned(f, tmp_path / "out/g.bin")
    assert not list((tmp_path / "out").glob("g.bin*"))


def test_no_mirror_and_no_network_names_url_mirror_path_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("IODA_MIRROR", str(tmp_path / "empty"))
    f = PinnedFile("http://127.0.0.1:9/o/r/c/w.pth", "0" * 64, 3)  # port 9 (discard): refused, no network needed
    with pytest.raises(IodaError) as err:
        fetch_pinned(f, tmp_path / "w.pth")
    msg = str(err.value)
    assert "\n" not in msg and f.url in msg and str(tmp_path / "empty/o/r/c/w.pth") in msg and "IODA_MIRROR" in msg
    monkeypatch.delenv("IODA_MIRROR")
    with pytest.raises(IodaError, match="IODA_MIRROR is not set"):
        fetch_pinned(f, tmp_path / "w.pth")
    assert not (tmp_path / "w.pth").exists()


def test_every_pinned_url_is_a_fixed_commit():
    from ioda.data.assets import pinned_files
    from ioda.data.registry import REGISTRY

    urls = [f.url for e in REGISTRY.values() if e.kind == "pinned" for _, f in pinned_files(e)]
    urls += [w.file.url for w in WEIGHTS.values()]
    assert len(urls) > 500
    for u in urls:
        parts = urllib.parse.urlsplit(u).path.split("/")
        assert u.startswith("https://raw.githubusercontent.com/") and len(parts[3]) == 40, u  # owner/repo/<sha>/


# ------------------------------------------------------------------------------------------ pinned datasets


def test_realsr_crops_prepare_to_the_pair_layout(real):
    out = prepared(real, "realsr_canon_crops")
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "pinned" and list(m["splits"]) == ["test"] and m["splits"]["test"]["count"] == 50
    hr, lr = sorted((out / "test/HR").glob("*.png")), sorted((out / "test/LR_x4").glob("*.png"))
    assert [p.name for p in hr] == [p.name for p in lr] and hr[0].name == "Canon_001.png" and len(hr) == 50
    assert Image.open(hr[0]).size == (512, 512) and Image.open(lr[0]).size == (128, 128)
    # bytes as published: the LR crop is the mirror's file, pixel for pixel
    src = real["raw"] / "pinned/realsr_canon_crops/test_LR/Canon_001_LR4.png"
    assert np.array_equal(np.asarray(Image.open(src).convert("RGB")), np.asarray(Image.open(lr[0])))


def test_classic_sets_and_resplit(real):
    out = prepared(real, "set5")
    assert sorted(p.name for p in (out / "test/HR").glob("*.png")) == [f"img_00{i}.png" for i in range(1, 6)]
    cut = prepared(real, "realsr_nikon_crops", {"splits": {"train": 3, "test": 2}}, tag="_cut")
    assert sorted(p.stem for p in (cut / "train/HR").iterdir()) == ["Nikon_001", "Nikon_002", "Nikon_003"]
    assert sorted(p.stem for p in (cut / "test/LR_x4").iterdir()) == ["Nikon_004", "Nikon_005"]
    from ioda.data.prepare import prepare

    with pytest.raises(IodaError, match=r"--spec.splits: asks for 60 pairs"):
        prepare("realsr_nikon_crops", real["data"] / "bad", root=real["raw"], spec={"splits": {"test": 60}})
    assert not (real["data"] / "bad").exists()


def test_registered_weights_resolve_to_verified_cached_files(real):
    from ioda.archs import load_model
    from ioda.files import sha256_file

    for name, arch in (("craft_x4", "CRAFT"), ("ditn_real_x4", "DITN")):
        path = Path(resolve_checkpoint(name))
        assert path.parent == real["cache"] / "weights" and sha256_file(path) == WEIGHTS[name].file.sha256
        loaded = load_model(path)
        assert loaded.arch == arch and loaded.scale == 4
    assert resolve_checkpoint("no_such_file.pth") == "no_such_file.pth"  # left to the loader's own message
    from ioda.data.prepare import main as prepare_main

    out = real["data"] / "w" / "craft.pth"  # what the workflow's fetch_weights rule runs
    assert prepare_main(["craft_x4", "--out", str(out)]) == 0
    assert sha256_file(out) == WEIGHTS["craft_x4"].file.sha256


# ------------------------------------------------------------------------------------------ independent numbers


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _y(img: np.ndarray) -> np.ndarray:
    """BasicSR to_y_channel: bgr2ycbcr(img / 255, y_only=True) * 255, i.e. 16 + (65.481 R + 128.553 G + 24.966 B)."""
    x = img.astype(np.float64) / 255.0
    return 16.0 + x[..., 0] * 65.481 + x[..., 1] * 128.553 + x[..., 2] * 24.966


def _psnr_ssim(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> tuple[float, float]:
    a, b = _y(sr)[border:-border, border:-border], _y(hr)[border:-border, border:-border]
    psnr = 10 * math.log10(255.0**2 / np.mean((a - b) ** 2))
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g / g.sum(), g / g.sum())  # cv2.getGaussianKernel(11, 1.5) outer itself; 'valid' = filter2D[5:-5]
    f = lambda x: correlate2d(x, w, mode="valid")  # noqa: E731
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = f(a), f(b)
    s1, s2, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
    ssim = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return psnr, float(ssim.mean())


def _matlab_bicubic_up(img: np.ndarray, s: int) -> np.ndarray:
    """MATLAB imresize(img, s, 'bicubic') for an integer upscale (Keys a = -0.5, symmetric borders)."""

    def cubic(x):
        ax = np.abs(x)
        return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
                + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))

    def along(x, axis):
        n = x.shape[axis]
        u = np.arange(1, n * s + 1) / s + 0.5 * (1 - 1 / s)
        idx = np.floor(u - 2)[:, None] + np.arange(6)[None, :]
        wts = cubic(u[:, None] - idx)
        wts /= wts.sum(1, keepdims=True)
        mirror = np.concatenate([np.arange(n), np.arange(n)[::-1]])
        idx = mirror[((idx - 1) % (2 * n)).astype(int)]
        moved = np.moveaxis(x, axis, 0)
        out = np.einsum("ok,ok...->o...", wts, moved[idx])
        return np.moveaxis(out, 0, axis)

    to_u8 = lambda x: np.clip(np.round(x), 0, 255)  # noqa: E731  (MATLAB keeps uint8 between the two passes)
    return to_u8(along(to_u8(along(img.astype(np.float64), 0)), 1)).astype(np.uint8)


def _independent(model_path, hr_paths, lr_paths) -> tuple[float, float]:
    """Mean PSNR/SSIM with spandrel's own loader (or MATLAB bicubic for None) on the given files."""
    model = None
    if model_path is not None:
        import spandrel

        model = spandrel.ModelLoader().load_from_file(str(model_path)).model.eval()
    scores = []
    for hp, lp in zip(hr_paths, lr_paths, strict=True):
        hr, lr = _rgb(hp), _rgb(lp)
        if model is None:
            sr = _matlab_bicubic_up(lr, 4)
        else:
            with torch.no_grad():
                out = model(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255.0)
            sr = (out[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)  # tensor2img
        scores.append(_psnr_ssim(sr, hr))
    return float(np.mean([p for p, _ in scores])), float(np.mean([s for _, s in scores]))


def _ioda_evaluate(model: str, split_dir: Path, out: Path) -> dict:
    from ioda.evaluate import main

    assert main(["--model", model, "--data", str(split_dir), "--out-csv", str(out / f"{model}.csv"),
                 "--out-json", str(out / f"{model}.json"), "--device", "cpu"]) == 0
    return json.loads((out / f"{model}.json").read_text())


def _mirror_pair_files(real, names):
    """The published HR/LR files of RealSR crops, fetched as pinned files (from the mirror when there is one)."""
    rows = dict(dataset_files("realsr_canon_crops") + dataset_files("realsr_nikon_crops"))
    get = lambda local: fetch_pinned(rows[local], real["raw"] / "direct" / local)  # noqa: E731
    return [get(f"test_HR/{n}") for n in names], [get(f"test_LR/{n}") for n in names]


def test_registry_evaluation_matches_an_independent_computation(real, tmp_path):
    """craft_x4 (first 6 pairs: CPU time) and bicubic (all 50) on realsr_canon_crops, to 0.01 dB."""
    sub = prepared(real, "realsr_canon_crops", {"splits": {"test": 6}}, tag="_6")
    full = prepared(real, "realsr_canon_crops")
    for model, split, n in (("craft_x4", sub / "test", 6), ("bicubic", full / "test", 50)):
        got = _ioda_evaluate(model, split, tmp_path)
        names = [f"Canon_{i:03d}_LR4.png" for i in range(1, n + 1)]
        hr, lr = _mirror_pair_files(real, names)
        psnr, ssim = _independent(None if model == "bicubic" else resolve_checkpoint(model), hr, lr)
        assert got["n"] == n and got["crop_border"] == 4 and got["test_y_channel"] is True
        assert abs(got["mean_psnr"] - psnr) < 0.01, (model, got["mean_psnr"], psnr)
        assert abs(got["mean_ssim"] - ssim) < 1e-4, (model, got["mean_ssim"], ssim)
    assert 20 < psnr < 35  # bicubic on real camera crops: a real number, not a degenerate one


def test_paired_folders_from_other_real_pairs_match_independently(real, tmp_path):
    """Nikon camera pairs (the first 4) given as two plain folders: same agreement with craft_x4."""
    names = [f"Nikon_{i:03d}_LR4.png" for i in range(1, 5)]
    hr, lr = _mirror_pair_files(real, names)
    (tmp_path / "hr").mkdir(), (tmp_path / "lr").mkdir()
    for h, l, n in zip(hr, lr, names, strict=True):
        (tmp_path / "hr" / n.replace("_LR4", "_HR")).symlink_to(h)  # stems differ only by suffix
        (tmp_path / "lr" / n).symlink_to(l)
    from ioda.data.prepare import main as prepare_main

    spec = json.dumps({"hr": str(tmp_path / "hr"), "lr": str(tmp_path / "lr"), "scale": 4})
    assert prepare_main(["paired_folders", "--spec", spec, "--out", str(tmp_path / "ds")]) == 0
    assert sorted(p.name for p in (tmp_path / "ds/test/HR").iterdir()) == [f"Nikon_00{i}.png" for i in range(1, 5)]
    got = _ioda_evaluate("craft_x4", tmp_path / "ds/test", tmp_path)
    psnr, ssim = _independent(resolve_checkpoint("craft_x4"), hr, lr)
    assert got["n"] == 4 and abs(got["mean_psnr"] - psnr) < 0.01 and abs(got["mean_ssim"] - ssim) < 1e-4


# ------------------------------------------------------------------------------------------ a real photo, no HR


@pytest.mark.slow
def test_adapt_a_real_photo_with_registered_craft(real, tmp_path):
    """`ioda adapt <real LR photo> --model craft_x4`, with and without --tile, writes sr.png. The photo is a
    96x128 crop of real_testdata/010.png (the full 960x1280 photo takes minutes per SR pass on a CPU)."""
    from ioda.adapt.cli import main as adapt_main

    f = PinnedFile("https://raw.githubusercontent.com/sunny2109/SAFMN/68c2182e4f8829a979886b0a1cab8f269f91b321/"
                   "real_testdata/010.png", "822de7e0cfa95ac3057e15e7fb8be6f55197234f31ad4f168f89411f8cbf297b", 606527)
    full = fetch_pinned(f, tmp_path / "010.png")
    photo = tmp_path / "010_crop.png"
    Image.open(full).convert("RGB").crop((400, 500, 528, 596)).save(photo)
    source = prepared(real, "set5") / "test"
    outs = {}
    for tile in (None, 48):
        out = tmp_path / f"out_{tile}"
        args = [str(photo), "--model", "craft_x4", "--out-dir", str(out), "--encoder", "tiny", "--source-data",
                str(source), "--steps", "1", "--batch-size", "1", "--lr-patch", "32", "--device", "cpu"]
        assert adapt_main(args + (["--tile", str(tile)] if tile else [])) == 0
        assert {"sr.png", "model.safetensors", "adapt.json"} <= {p.name for p in out.iterdir()}
        outs[tile] = _rgb(out / "sr.png")
        assert outs[tile].shape == (96 * 4, 128 * 4, 3)
    # same weights (same seed): tiled inference gives nearly the same picture
    diff = np.abs(outs[None].astype(int) - outs[48].astype(int))
    assert diff.mean() < 2.0


def test_stack_with_real_networks_stacks_craft_and_falls_back_for_ditn(real, tmp_path, capfd):
    """--stack on the two registered networks: CRAFT steps its images together (outputs within the stated
    tolerance of the one-after-another runs); DITN, which vmap cannot run, is adapted one image after another,
    bit-equal to a run without --stack, with a warning."""
    from safetensors.torch import load_file

    from ioda.adapt.cli import main as adapt_main

    crops = prepared(real, "realsr_canon_crops", spec={"splits": {"train": 2, "test": 1}}, tag="-stack")
    source = prepared(real, "set5") / "test"
    for name in ("craft_x4", "ditn_real_x4"):
        common = ["--pool", str(crops / "train" / "LR_x4"), "--index", "0", "1", "--model", name, "--encoder",
                  "tiny", "--source-data", str(source), "--steps", "2", "--batch-size", "1", "--lr-patch", "32",
                  "--device", "cpu", "--no-sr", "--variant", "image_guided"]
        capfd.readouterr()
        assert adapt_main([*common, "--out-dir", str(tmp_path / name / "stack"), "--stack"]) == 0
        err = capfd.readouterr().err
        fell_back = "DITN_Real cannot be stepped under torch.vmap" in err and "one after another instead" in err
        assert fell_back == (name == "ditn_real_x4"), err[-500:]
        assert adapt_main([*common, "--out-dir", str(tmp_path / name / "seq")]) == 0
        for i in (0, 1):
            a = load_file(tmp_path / name / "seq" / f"img{i}" / "model.safetensors")
            b = load_file(tmp_path / name / "stack" / f"img{i}" / "model.safetensors")
            report = json.loads((tmp_path / name / "stack" / f"img{i}" / "adapt.json").read_text())
            assert report["settings"]["stacked_runs"] is not fell_back
            for k in a:  # lr 1e-5: within one Adam step (module docstring of ioda.adapt.stacked)
                torch.testing.assert_close(b[k], a[k], rtol=0, atol=0 if fell_back else 2e-5, msg=k)


# ------------------------------------------------------------------------------------------ paired_folders errors


def _png(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(w * h).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


@pytest.mark.parametrize("hr,lr", [("a_HR.png", "a_LR4.png"), ("img_001_SRF_4_HR.png", "img_001_SRF_4_LR.png"),
                                   ("0801.png", "0801x4.png"), ("b.png", "b_x4.png"), ("c_x1.png", "c_x4.png"),
                                   ("same.png", "same.png")])
def test_paired_folders_pairs_by_name_or_stripped_stem(tmp_path, hr, lr):
    from ioda.data.paired import match_folders

    _png(tmp_path / "hr" / hr, 32, 24)
    _png(tmp_path / "lr" / lr, 8, 6)
    (pair,) = match_folders(str(tmp_path / "hr"), str(tmp_path / "lr"), 4)
    assert pair[1].name == hr and pair[2].name == lr


def _prepare_fails(tmp_path, spec) -> str:
    from ioda.data.prepare import prepare

    with pytest.raises(IodaError) as err:
        prepare("paired_folders", tmp_path / "out", spec=spec)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # no partial output
    assert "\n" not in str(err.value)
    return str(err.value)


def test_paired_folders_errors_name_the_files(tmp_path):
    hr, lr = tmp_path / "hr", tmp_path / "lr"
    (tmp_path / "empty").mkdir()
    spec = {"hr": str(hr), "lr": str(lr), "scale": 4}
    _png(hr / "x_HR.png", 32, 24), _png(lr / "x_LR4.png", 8, 6)
    _png(hr / "lonely_HR.png", 32, 24), _png(lr / "orphan.png", 8, 6)
    msg = _prepare_fails(tmp_path, spec)
    assert "unpaired" in msg and "lonely_HR.png" in msg and "orphan.png" in msg and "x_HR" not in msg
    (hr / "lonely_HR.png").unlink(), (lr / "orphan.png").unlink()
    _png(hr / "big.png", 40, 24), _png(lr / "big.png", 8, 6)
    msg = _prepare_fails(tmp_path, spec)
    assert "not 4x LR" in msg and "big.png 40x24 vs big.png 8x6" in msg
    msg = _prepare_fails(tmp_path, {**spec, "lr": str(tmp_path / "empty")})
    assert str(tmp_path / "empty") in msg and "no images" in msg
    assert "--spec.hr" in _prepare_fails(tmp_path, {"lr": str(lr)})
    assert "--spec.scale" in _prepare_fails(tmp_path, {**spec, "scale": "four"})
    (hr / "big.png").unlink(), (lr / "big.png").unlink()
    from ioda.data.prepare import prepare

    prepare("paired_folders", tmp_path / "ok", spec=spec)
    m = json.loads((tmp_path / "ok/manifest.json").read_text())
    assert m["kind"] == "paired" and m["splits"]["test"]["count"] == 1 and (tmp_path / "ok/test/LR_x4/x.png").is_file()


def test_effective_config_json_round_trips_small_floats(tmp_path):
    """The report commands read results/.../config.json: adapt.lr 1e-05 (JSON without a dot) stays a number."""
    from ioda.config import load_config

    cfg = load_config("config/realsr.yaml")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert load_config(tmp_path / "config.json") == cfg and cfg["adapt"]["lr"] == 1e-05


def test_adapt_json_records_the_registered_name_and_no_machine_paths(real, tmp_path):
    """adapt.json is shared with results: the model is named as given (craft_x4, not the weights cache path) and
    the photo by a path that means something elsewhere, never this machine's absolute paths."""
    from ioda.adapt.cli import main as adapt_main
    from ioda.imageio import write_image

    photo = tmp_path / "photo.png"
    write_image(photo, np.random.default_rng(0).integers(0, 256, (24, 24, 3)).astype(np.uint8))
    out = tmp_path / "o"
    assert adapt_main([str(photo), "--model", "craft_x4", "--variant", "baseline", "--out-dir", str(out),
                       "--device", "cpu"]) == 0
    text = (out / "adapt.json").read_text()
    report = json.loads(text)
    assert report["model"]["path"] == "craft_x4" and report["photo"]["path"] == "photo.png"
    assert str(tmp_path) not in text and str(real["cache"]) not in text


def test_paired_folders_lr_stored_at_hr_size(tmp_path):
    """RealSR v1/v2 and NTIRE 2019 Real-SR store LR at HR size: refused by default with the option named, and
    with `lr_size: hr_size` both are cropped to a multiple of the scale and the LR brought to its true size with
    MATLAB bicubic."""
    from skimage import data as skdata

    from ioda.data.imresize import imresize
    from ioda.data.prepare import prepare
    from ioda.imageio import read_image, write_image

    hr = skdata.astronaut()[100:150, 200:266]  # 66 x 50: not a multiple of 4
    up = imresize(imresize(hr, 1 / 4), output_shape=hr.shape[:2])  # an LR the camera pipeline upsampled to HR size
    write_image(tmp_path / "hr" / "a_HR.png", hr)
    write_image(tmp_path / "lr" / "a_LR4.png", up)
    spec = {"hr": str(tmp_path / "hr"), "lr": str(tmp_path / "lr"), "scale": 4}
    msg = _prepare_fails(tmp_path, spec)
    assert "not 4x LR" in msg and "same size" in msg and "lr_size: hr_size" in msg
    assert "--spec.lr_size" in _prepare_fails(tmp_path, {**spec, "lr_size": "half"})
    prepare("paired_folders", tmp_path / "ds", spec={**spec, "lr_size": "hr_size"})
    got_hr, got_lr = read_image(tmp_path / "ds/test/HR/a.png"), read_image(tmp_path / "ds/test/LR_x4/a.png")
    assert np.array_equal(got_hr, hr[:48, :64])
    assert np.array_equal(got_lr, imresize(up[:48, :64], 1 / 4)) and got_lr.shape == (12, 16, 3)
    m = json.loads((tmp_path / "ds/manifest.json").read_text())
    assert m["lr_size"] == "hr_size" and "imresize" in m["lr_resized"]
    # true-size pairs are refused under hr_size, the other way round
    write_image(tmp_path / "lr2" / "a.png", imresize(hr[:48, :64], 1 / 4))
    msg = _prepare_fails(tmp_path, {**spec, "lr": str(tmp_path / "lr2"), "lr_size": "hr_size"})
    assert "lr_size: hr_size" in msg and "HR size" in msg


@pytest.mark.slow
def test_tiled_evaluation_of_craft_within_the_stated_tolerance(real, tmp_path):
    """ioda evaluate's tiles against one pass with the real CRAFT on a real RealSR crop (128 x 128 LR, tiles of
    48: more tile edges than the default 256 px tiles give a photo): scores within the tolerance README states."""
    import shutil

    from ioda.archs import load_model
    from ioda.evaluate import TILED_PSNR_DB, TILED_SSIM, evaluate_model

    src = prepared(real, "realsr_canon_crops") / "test"
    split = tmp_path / "one"
    for sub in ("HR", "LR_x4"):
        first = sorted((src / sub).iterdir())[0]
        (split / sub).mkdir(parents=True)
        shutil.copy(first, split / sub / first.name)
    model = load_model(resolve_checkpoint("craft_x4")).module
    (one,), _ = evaluate_model(model, split, 4, tile=0)
    (tiled,), _ = evaluate_model(model, split, 4, tile=48)
    assert abs(one["psnr"] - tiled["psnr"]) <= TILED_PSNR_DB and abs(one["ssim"] - tiled["ssim"]) <= TILED_SSIM
