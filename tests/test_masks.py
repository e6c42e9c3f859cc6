"""Label maps (relabelling, overlaps, cache), region-range samplers, occlusion, superpixels and the CLI."""

import json

import numpy as np
import pytest
import skimage.data

from ioda import cli
from ioda.errors import IodaError
from ioda.imageio import read_image, write_image
from ioda.masks import labels as labels_mod
from ioda.masks import (cached_label_map, instance_threshold, load_label_map, masks_to_label_map,
                        maybe_occlusion, occlusion_keep_mask, relabel, sample_region, save_label_map,
                        upsample_mask)
from ioda.masks.cli import main as masks_main
from ioda.masks.superpixel import superpixel_label_map


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(skimage.data.astronaut()[::2, ::2])  # 256x256 scikit-image photo


def test_relabel_drops_small_and_renumbers():
    lab = np.zeros((20, 20), np.int64)
    lab[:10, :10] = 7    # 100 px: kept
    lab[10:, :9] = 3     # 90 px: dropped
    lab[10:, 10:] = 12   # 100 px: kept
    out = relabel(lab, min_area=100)
    assert out.dtype == np.int32 and sorted(np.unique(out)) == [0, 1, 2]
    assert (out[:10, :10] == 1).all() and (out[10:, 10:] == 2).all() and (out[10:, :9] == 0).all()


def test_overlapping_masks_smaller_on_top():
    big, small = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    big[:30, :30] = True
    small[10:25, 10:25] = True
    out = masks_to_label_map([small, big], (40, 40), min_area=100)
    assert out.max() == 2
    assert (out[10:25, 10:25] == 2).all() and out[0, 0] == 1  # big painted first, small stays visible
    assert np.array_equal(out, masks_to_label_map([small, big], (40, 40), min_area=100))


def _crop_with(counts, size=128):
    """A size x size label crop holding instance i+1 with counts[i] pixels (row-major strips)."""
    lab = np.zeros(size * size, np.int32)
    start = 0
    for i, c in enumerate(counts):
        lab[start:start + c] = i + 1
        start += c
    return lab.reshape(size, size)


def test_instance_threshold_respected():
    crop = _crop_with([999, 1000])
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask, fell_back = sample_region("instance", crop, rng)
        assert not fell_back
        assert np.array_equal(mask, crop == 2)  # only the 1000-px instance ever qualifies
    mask, fell_back = sample_region("instance", _crop_with([999, 500]), rng)
    assert fell_back and mask.all()
    # other crop sizes: the threshold scales with the crop area (1000 px per 128x128)
    assert instance_threshold(128, 128) == 1000 and instance_threshold(64, 64) == 250
    assert instance_threshold(256, 256) == 4000
    small = _crop_with([249, 250], size=64)
    assert all(np.array_equal(sample_region("instance", small, rng)[0], small == 2) for _ in range(20))


def test_instance_k_in_1_to_n_and_union():
    crop = _crop_with([1500, 2000, 3000, 1200, 50])  # 4 qualify, instance 5 never
    rng = np.random.default_rng(1)
    ks = []
    for _ in range(400):
        mask, fell_back = sample_region("instance", crop, rng)
        chosen = set(np.unique(crop[mask]).tolist())
        assert not fell_back and 0 not in chosen and 5 not in chosen
        assert np.array_equal(mask, np.isin(crop, list(chosen)))  # whole instances, nothing else
        ks.append(len(chosen))
    assert set(ks) == {1, 2, 3, 4}
    counts = np.bincount(ks)[1:] / len(ks)
    assert np.all(np.abs(counts - 0.25) < 0.08)  # k uniform in [1, N]


def test_fallback_counting():
    rng = np.random.default_rng(2)
    crops = [_crop_with([2000]), _crop_with([10]), np.zeros((128, 128), np.int32), _crop_with([1000, 999])]
    flags = [sample_region("instance", c, rng)[1] for c in crops]
    assert flags == [False, True, True, False] and sum(flags) == 2


def test_upsample_aligns_hr_with_lr():
    rng = np.random.default_rng(3)
    lr = rng.random((5, 7)) > 0.5
    hr = upsample_mask(lr, 4)
    assert hr.shape == (20, 28)
    ys, xs = np.mgrid[0:20, 0:28]
    assert np.array_equal(hr, lr[ys // 4, xs // 4])
    # an LR crop at (y, x) and the HR crop at (4y, 4x) see the same mask
    assert np.array_equal(upsample_mask(lr[1:4, 2:6], 4), hr[4:16, 8:24])


def test_grid_box_full_shapes():
    rng = np.random.default_rng(4)
    for _ in range(50):
        g, fb = sample_region("grid", (128, 100), rng)
        assert g.shape == (128, 100) and g.any() and not fb
        blocks = g[:128, :96].reshape(8, 16, 6, 16)
        assert (blocks.all(axis=(1, 3)) == blocks.any(axis=(1, 3))).all()  # 16-px cells, all or nothing
    assert sample_region("grid", (64, 64), rng, p=0.0)[0].sum() == 256  # never empty: one cell
    for _ in range(50):
        b, _ = sample_region("box", np.zeros((96, 128), np.int32), rng)
        ys, xs = np.nonzero(b)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert b.sum() == h * w and 24 <= h <= 96 and 32 <= w <= 128  # one filled rectangle
    f, fb = sample_region("full", (10, 12), rng)
    assert f.all() and f.shape == (10, 12) and not fb
    with pytest.raises(ValueError, match="unknown"):
        sample_region("blob", (8, 8), rng)
    with pytest.raises(ValueError, match="label-map crop"):
        sample_region("instance", (8, 8), rng)


def test_occlusion_statistics_and_seeding():
    rng = np.random.default_rng(5)
    fractions = []
    for _ in range(500):
        keep = occlusion_keep_mask(128, 128, rng)
        cells = keep.reshape(4, 32, 4, 32)
        assert (cells.all(axis=(1, 3)) == cells.any(axis=(1, 3))).all()  # 32-px cells
        fractions.append(keep.mean())
    assert abs(np.mean(fractions) - 0.5) < 0.02
    assert np.array_equal(occlusion_keep_mask(100, 70, np.random.default_rng(9)),
                          occlusion_keep_mask(100, 70, np.random.default_rng(9)))
    assert occlusion_keep_mask(100, 70, rng).shape == (100, 70)
    applied = [maybe_occlusion(64, 64, rng) is not None for _ in range(2000)]
    assert abs(np.mean(applied) - 0.5) < 0.05
    assert occlusion_keep_mask(64, 64, rng, cell_p=0.0).all()


def test_label_map_cache_roundtrip_and_errors(tmp_path, monkeypatch):
    lab = _crop_with([300, 400], size=40)
    out = tmp_path / "lab.npz"
    save_label_map(out, lab, {"source": "test"})
    meta = json.loads((tmp_path / "lab.json").read_text())
    assert meta["count"] == 2 and meta["height"] == 40 and meta["source"] == "test"
    assert np.array_equal(load_label_map(out, (40, 40)), lab)
    with pytest.raises(IodaError, match=r"lab\.npz: label map is 40x40 \(HxW\) but the image is 40x41"):
        load_label_map(out, (40, 41))
    with pytest.raises(IodaError, match="nope.npz: label map not found"):
        load_label_map(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(IodaError, match="bad.npz: not a readable"):
        load_label_map(tmp_path / "bad.npz")
    # both or none: a failing sidecar write leaves no .npz behind
    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(labels_mod, "write_json", broken)
    with pytest.raises(OSError):
        save_label_map(tmp_path / "half.npz", lab, {})
    assert not list(tmp_path.glob("half*")) and not list(tmp_path.glob(".half*"))


def test_cached_label_map_reuses_matching_cache(tmp_path, photo, monkeypatch):
    img_path = tmp_path / "target.png"
    write_image(img_path, photo)
    out = tmp_path / "cache" / "target.npz"
    params = {"method": "slic", "segment_area": 2500, "min_area": 100}
    labels, meta = cached_label_map(img_path, out, "superpixel", params)
    assert meta["image_sha256"] and meta["parameters"] == params and meta["count"] == labels.max() > 0

    def no_compute(*a, **k):
        raise AssertionError("cache should have been reused")

    monkeypatch.setattr(labels_mod, "compute_label_map", no_compute)
    again, _ = cached_label_map(img_path, out, "superpixel", params)
    assert np.array_equal(again, labels)
    with pytest.raises(AssertionError):  # other parameters: recompute
        cached_label_map(img_path, out, "superpixel", dict(params, segment_area=900))


def test_superpixels_on_a_photo(photo):
    lab = superpixel_label_map(photo)
    assert lab.shape == photo.shape[:2] and lab.dtype == np.int32
    counts = np.bincount(lab.ravel())
    n = lab.max()
    assert 10 <= n <= 60 and (counts[1:] >= 100).all() and len(counts) == n + 1  # consecutive, min_area
    assert np.array_equal(lab, superpixel_label_map(photo))  # deterministic
    # the default region size leaves instances usable by the 1000-px rule in a 128-px crop
    assert sample_region("instance", lab[64:192, 64:192], np.random.default_rng(0))[1] is False
    fz = superpixel_label_map(photo, method="felzenszwalb")
    assert fz.max() > 1 and (np.bincount(fz.ravel())[1:] >= 100).all()
    with pytest.raises(IodaError, match="unknown"):
        superpixel_label_map(photo, method="watershed")


def test_cli_writes_label_map_sidecar_and_preview(tmp_path, photo):
    img = tmp_path / "lr.png"
    write_image(img, photo)
    out, preview, log = tmp_path / "m" / "lr.npz", tmp_path / "m" / "lr_preview.png", tmp_path / "masks.log"
    assert masks_main([str(img), "--out", str(out), "--preview", str(preview), "--log", str(log)]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    labels = load_label_map(out, photo.shape[:2])
    assert meta["source"] == "superpixel" and meta["count"] == labels.max() > 0 and meta["image"] == str(img)
    prev = read_image(preview)
    assert prev.shape == photo.shape and not np.array_equal(prev, photo)
    assert "instances (superpixel)" in log.read_text()


def test_cli_pool_index_picks_the_same_image_as_the_path(tmp_path, photo):
    pool = tmp_path / "pool"
    for i, name in enumerate(("b.png", "a.png")):
        write_image(pool / name, np.roll(photo, 7 * i, axis=1))
    assert masks_main(["--pool", str(pool), "--index", "1", "--out", str(tmp_path / "p.npz")]) == 0
    assert masks_main([str(pool / "b.png"), "--out", str(tmp_path / "d.npz")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["image"] == str(pool / "b.png")
    assert np.array_equal(load_label_map(tmp_path / "p.npz", photo.shape[:2]), load_label_map(tmp_path / "d.npz", photo.shape[:2]))
    with pytest.raises(IodaError, match="fewer than 3 images"):
        masks_main(["--pool", str(pool), "--index", "2", "--out", str(tmp_path / "q.npz")])
    assert not (tmp_path / "q.npz").exists()


def test_cli_errors_leave_nothing(tmp_path, photo, capsys):
    img = tmp_path / "lr.png"
    write_image(img, photo)
    assert cli.main(["masks", str(tmp_path / "missing.png"), "--out", str(tmp_path / "a.npz")]) == 2
    assert "missing.png: file not found" in capsys.readouterr().err
    assert cli.main(["masks", str(img), "--out", str(tmp_path / "a.txt")]) == 2
    assert cli.main(["masks", str(img), "--out", str(tmp_path / "b.npz"), "--source", "sam",
                     "--sam-model", "vit_b"]) == 2
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in capsys.readouterr().err
    assert cli.main(["masks", str(img), "--out", str(tmp_path / "c.npz"), "--source", "sam",
                     "--sam-checkpoint", str(tmp_path / "sam_vit_h.pth")]) == 2
    err = capsys.readouterr().err
    assert "sam_vit_h.pth: SAM checkpoint not found" in err and "sam_vit_h_4b8939.pth" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.png"]
