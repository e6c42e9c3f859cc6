"""ioda/imageio.py and ioda/data/pairs.py on odd and broken inputs."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ioda.data.pairs import PairedPatches, list_pairs, load_pair
from ioda.errors import IodaError
from ioda.imageio import (image_arg, image_to_tensor, list_images, pick_image, read_image, tensor_to_image,
                          write_image)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 10, 3)).astype(np.uint8)


def test_roundtrip_png_and_tensor(tmp_path):
    write_image(tmp_path / "a.png", RGB)
    back = read_image(tmp_path / "a.png")
    assert back.dtype == np.uint8 and np.array_equal(back, RGB)
    assert np.array_equal(tensor_to_image(image_to_tensor(RGB)), RGB)
    with pytest.raises(ValueError):
        write_image(tmp_path / "b.png", RGB[:, :, 0])


def test_missing_corrupt_truncated_empty(tmp_path):
    with pytest.raises(IodaError, match="file not found"):
        read_image(tmp_path / "none.png")
    (tmp_path / "junk.png").write_bytes(b"this is not a png")
    with pytest.raises(IodaError, match=r"junk\.png: corrupt or truncated"):
        read_image(tmp_path / "junk.png")
    write_image(tmp_path / "full.png", RNG.integers(0, 256, (64, 64, 3)).astype(np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(IodaError, match=r"cut\.png: corrupt or truncated"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(IodaError, match=r"empty\.jpg"):
        read_image(tmp_path / "empty.jpg")


def test_grayscale_replicated(tmp_path):
    g = RGB[:, :, 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (12, 10, 3) and all(np.array_equal(out[:, :, c], g) for c in range(3))
    Image.fromarray(g > 127).save(tmp_path / "bw.png")  # mode "1"
    bw = read_image(tmp_path / "bw.png")
    assert set(np.unique(bw)) <= {0, 255}


def test_rgba_opaque_kept_transparent_refused(tmp_path):
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    assert np.array_equal(read_image(tmp_path / "opaque.png"), RGB)
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "transp.png")
    with pytest.raises(IodaError, match=r"transp\.png: has transparent pixels"):
        read_image(tmp_path / "transp.png")
    la = np.dstack([RGB[:, :, 0], np.full(RGB.shape[:2], 255, np.uint8)])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").shape == (12, 10, 3)


def test_16bit_png_scaled_like_im2uint8(tmp_path):
    g16 = np.array([[0, 257, 65535, 33025, 128]], np.uint16)  # 33025 / 257 = 128.502 -> 129; 128 / 257 -> 0
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out[0, :, 0].tolist() == [0, 1, 255, 129, 0]
    assert out.shape == (1, 5, 3)


def test_palette_png(tmp_path):
    idx = (np.arange(12 * 10).reshape(12, 10) % 4).astype(np.uint8)
    colours = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]
    pal = Image.fromarray(idx, "P")
    pal.putpalette(colours)
    pal.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    want = np.array(colours, np.uint8).reshape(4, 3)[idx]
    assert np.array_equal(out, want)
    pal.save(tmp_path / "pt.png", transparency=0)  # palette entry 0 is transparent and used
    with pytest.raises(IodaError, match=r"pt\.png: has transparent pixels"):
        read_image(tmp_path / "pt.png")


def test_list_images_skips_hidden_and_other_files(tmp_path):
    write_image(tmp_path / "b.png", RGB)
    write_image(tmp_path / "a.jpg", RGB)
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png"]
    with pytest.raises(IodaError, match="folder not found"):
        list_images(tmp_path / "nope")


def _split(tmp_path, stems, hr_size=(16, 16), lr_size=(4, 4)):
    for s in stems:
        write_image(tmp_path / "HR" / f"{s}.png", RNG.integers(0, 256, (*hr_size, 3)).astype(np.uint8))
        write_image(tmp_path / "LR_x4" / f"{s}.png", RNG.integers(0, 256, (*lr_size, 3)).astype(np.uint8))
    return tmp_path


def test_pairs_match_and_missing_counterpart(tmp_path):
    d = _split(tmp_path, ["a", "b"])
    assert [p.stem for p in list_pairs(d, 4)] == ["a", "b"]
    (d / "HR" / "b.png").unlink()
    with pytest.raises(IodaError, match=r"LR_x4/b\.png: no HR counterpart"):
        list_pairs(d, 4)
    write_image(d / "HR" / "b.png", RNG.integers(0, 256, (16, 16, 3)).astype(np.uint8))
    write_image(d / "HR" / "c.png", RNG.integers(0, 256, (16, 16, 3)).astype(np.uint8))
    with pytest.raises(IodaError, match=r"HR/c\.png: no LR counterpart"):
        list_pairs(d, 4)


def test_lr_only_split_and_empty_lr(tmp_path):
    write_image(tmp_path / "LR_x4" / "x.png", RGB)
    pairs = list_pairs(tmp_path, 4, require_hr=False)
    assert len(pairs) == 1 and pairs[0].hr is None
    (tmp_path / "empty" / "LR_x4").mkdir(parents=True)
    with pytest.raises(IodaError, match="no images"):
        list_pairs(tmp_path / "empty", 4)


def test_size_mismatch_named(tmp_path):
    d = _split(tmp_path, ["a"], hr_size=(16, 20), lr_size=(4, 4))
    with pytest.raises(IodaError, match=r"HR size 20x16 does not match LR .*a\.png 4x4 times scale 4 \(expected 16x16\)"):
        load_pair(list_pairs(d, 4)[0], 4)


def test_lr_smaller_than_patch(tmp_path):
    d = _split(tmp_path, ["a"])
    with pytest.raises(IodaError, match="smaller than the LR patch size 8"):
        PairedPatches(list_pairs(d, 4), 4, lr_patch=8)
    ds = PairedPatches(list_pairs(d, 4), 4, lr_patch=4, seed=1, length=3)
    lr, hr = ds[0]
    assert lr.shape == (3, 4, 4) and hr.shape == (3, 16, 16)
    lr2, _ = ds[0]
    assert (lr == lr2).all()  # same index, same patch


def test_pick_image_is_the_index_th_by_name(tmp_path):
    for name in ("b.png", "a.png", "C.png", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [pick_image(tmp_path, i).name for i in range(3)] == ["C.png", "a.png", "b.png"]  # byte order, as LC_ALL=C
    with pytest.raises(IodaError, match=r"fewer than 4 images \(target image 3 requested\)"):
        pick_image(tmp_path, 3)
    with pytest.raises(IodaError, match="--index -1"):
        pick_image(tmp_path, -1)
    with pytest.raises(IodaError, match="folder not found"):
        pick_image(tmp_path / "none", 0)
    assert image_arg(None, str(tmp_path), 1) == tmp_path / "a.png"
    assert image_arg("x.png", None, None) == Path("x.png")
    assert image_arg(None, str(tmp_path), None) == tmp_path / "C.png"  # no --index: image 0
    with pytest.raises(IodaError, match="--index 0: picks an image of --pool DIR"):
        image_arg("x.png", None, 0)
    with pytest.raises(IodaError, match="not both"):
        image_arg("x.png", str(tmp_path), 0)
    with pytest.raises(IodaError, match="not neither"):
        image_arg(None, None, 0)
