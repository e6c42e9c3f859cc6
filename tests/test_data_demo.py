"""Demo datasets and `ioda prepare`: registry rules, determinism, layout, overrides, no partial output."""

import json

import numpy as np
import pytest

from ioda import cli
from ioda.data import prepare as prepare_mod
from ioda.data.demo import PHOTOS, cut_tiles, load_photo
from ioda.data.pairs import list_pairs, load_pair
from ioda.data.prepare import main, prepare
from ioda.data.registry import REGISTRY
from ioda.errors import IodaError
from ioda.imageio import read_image

DEMOS = [n for n, e in REGISTRY.items() if e.kind == "demo"]
TARGETS = [n for n in DEMOS if n != "demo_source"]
SMALL = {"splits": {"pool": ["chelsea"], "test": ["colorwheel"]}}  # 2 + 1 tiles: quick builds


def test_demo_photos_are_offline_rgb_and_splits_disjoint():
    source = {p for ps in REGISTRY["demo_source"].demo["splits"].values() for p in ps}
    assert set(REGISTRY["demo_source"].demo["splits"]) == {"train", "val"}
    assert len(TARGETS) >= 3
    degs = {REGISTRY[n].degradation["type"] for n in TARGETS}
    assert degs == {"canon_like", "low_light", "sensor_halo"}
    for name in TARGETS:
        splits = REGISTRY[name].demo["splits"]
        pool, test = set(splits["pool"]), set(splits["test"])
        assert not pool & test
        assert not (pool | test) & source
        # the two stereo views show one scene: never split across pool and test
        assert {"stereo_motorcycle_left", "stereo_motorcycle_right"} <= pool or not (
            {"stereo_motorcycle_left", "stereo_motorcycle_right"} & (pool | test))
        n_pool = sum(len(cut_tiles(load_photo(p), p, 192, 8.0)) for p in pool)
        assert n_pool >= 5
    for p in PHOTOS:
        img = load_photo(p)
        assert img.dtype == np.uint8 and img.shape[2] == 3 and min(img.shape[:2]) >= 192


def test_tiles_do_not_overlap_and_drop_flat_ones():
    img = load_photo("retina")
    kept = cut_tiles(img, "retina", 192, 8.0)
    all_tiles = cut_tiles(img, "retina", 192, 0.0)
    assert 0 < len(kept) < len(all_tiles)  # the black corners around the fundus are dropped
    boxes = [t.box for t in all_tiles]
    for i, (y, x, h, w) in enumerate(boxes):
        for (y2, x2, _, _) in boxes[i + 1:]:
            assert abs(y - y2) >= h or abs(x - x2) >= w
        assert all_tiles[i].hr.shape == (192, 192, 3)
        assert np.array_equal(all_tiles[i].hr, img[y:y + h, x:x + w])


def test_prepare_is_deterministic_and_seeded(tmp_path):
    a = prepare("demo_canon", tmp_path / "a", seed=0, spec=SMALL)
    prepare("demo_canon", tmp_path / "b", seed=0, spec=SMALL)
    c = prepare("demo_canon", tmp_path / "c", seed=1, spec=SMALL)
    for rel in ["pool/HR/chelsea_r0c0.png", "pool/LR_x4/chelsea_r0c0.png", "test/LR_x4/colorwheel_r0c0.png",
                "manifest.json"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a/pool/HR/chelsea_r0c0.png").read_bytes() == (tmp_path / "c/pool/HR/chelsea_r0c0.png").read_bytes()
    assert (tmp_path / "a/pool/LR_x4/chelsea_r0c0.png").read_bytes() != (
        tmp_path / "c/pool/LR_x4/chelsea_r0c0.png").read_bytes()
    man = json.loads(a.read_text())
    assert man["name"] == "demo_canon" and man["kind"] == "demo" and man["seed"] == 0
    assert man["degradation"]["type"] == "canon_like" and man["degradation"]["jpeg_quality"] == 75
    assert man["source_photos"] == SMALL["splits"]
    row = man["splits"]["pool"]["files"][0]
    assert row["photo"] == "chelsea" and row["box"][2:] == [192, 192]
    from ioda.files import sha256_file

    assert row["lr_sha256"] == sha256_file(tmp_path / "a" / row["lr"])
    assert c.is_file()


def test_layout_matches_pairs_module(tmp_path):
    prepare("demo_halo", tmp_path / "d", seed=0, spec=SMALL)
    pairs = list_pairs(tmp_path / "d" / "pool", 4)
    assert [p.stem for p in pairs] == ["chelsea_r0c0", "chelsea_r0c1"]
    lr, hr = load_pair(pairs[0], 4)
    assert lr.shape == (48, 48, 3) and hr.shape == (192, 192, 3)


def test_full_demo_sizes(tmp_path):
    man = json.loads(prepare("demo_lowlight", tmp_path / "d", seed=0).read_text())
    assert man["splits"]["pool"]["count"] >= 5
    assert 3 <= man["splits"]["test"]["count"] <= 12  # small enough to evaluate in about a second


def test_spec_override_and_cli(tmp_path, capsys):
    rc = main(["demo_source", "--out", str(tmp_path / "s"), "--seed", "3", "--log", str(tmp_path / "p.log"),
               "--spec", "{tile: 128, degradation: {scale: 2}, splits: {train: [coffee], val: [rocket]}}"])
    assert rc == 0
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert man["tile"] == 128 and man["scale"] == 2 and man["seed"] == 3
    lr = read_image(tmp_path / "s" / "train" / "LR_x2" / "coffee_r0c0.png")
    assert lr.shape == (64, 64, 3)
    assert "coffee" in (tmp_path / "p.log").read_text()
    assert "demo_source: wrote" in capsys.readouterr().out
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("degradation:\n  jpeg_quality: 90\nsplits:\n  pool: [chelsea]\n  test: [colorwheel]\n")
    main(["demo_canon", "--out", str(tmp_path / "c"), "--spec", str(spec_file)])
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["degradation"]["jpeg_quality"] == 90


@pytest.mark.parametrize("spec,match", [
    ({"degradation": {"jpeg_qualty": 90}}, "jpeg_qualty: unknown parameter"),
    ({"tiles": 128}, r"--spec\.tiles: not a parameter"),
    ({"tile": 130}, "divisible by the scale 4"),
    ({"splits": {"pool": ["chelsea"], "test": ["chelsea"]}}, "already used by split 'pool'"),
    ({"splits": {"pool": ["lily"]}}, "'lily' is not available offline"),
])
def test_bad_spec_leaves_nothing(tmp_path, spec, match):
    with pytest.raises(IodaError, match=match):
        prepare("demo_canon", tmp_path / "out", spec=spec)
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_keeps_previous_output(tmp_path, monkeypatch):
    prepare("demo_canon", tmp_path / "out", seed=0, spec=SMALL)
    before = (tmp_path / "out" / "manifest.json").read_bytes()
    calls = {"n": 0}
    real = prepare_mod.degrade

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise IodaError("simulated failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_mod, "degrade", flaky)
    with pytest.raises(IodaError, match="simulated"):
        prepare("demo_canon", tmp_path / "out", seed=5, spec=SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder left
    assert (tmp_path / "out" / "manifest.json").read_bytes() == before


def test_cli_errors_exit_2(tmp_path, capsys):
    assert cli.main(["prepare", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "'nope' is not in the registry" in capsys.readouterr().err
    assert cli.main(["prepare", "RealSR_Nikon", "--out", str(tmp_path / "x"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Nikon/Test/4" in err and "csjcai/RealSR" in err
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []
    assert cli.main(["prepare", "demo_canon", "--out", str(tmp_path / "y"), "--spec", "[1, 2"]) == 2
    assert main(["--list"]) == 0
    assert "DF2K" in capsys.readouterr().out


def test_manual_entry_rejects_degradation_override(tmp_path):
    with pytest.raises(IodaError, match="ships its own LR"):
        prepare("RealSR_Canon", tmp_path / "o", root=tmp_path, spec={"degradation": {"scale": 2}})


def test_builtin_source_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("IODA_CACHE", str(tmp_path / "cache"))
    split = prepare_mod.ensure_builtin_source(4)
    assert split == tmp_path / "cache" / "demo_source_x4" / "train"
    pairs = list_pairs(split, 4)
    assert len(pairs) >= 20
    stamp = (split.parent / "manifest.json").stat().st_mtime_ns
    assert prepare_mod.ensure_builtin_source(4) == split  # reused, not rebuilt
    assert (split.parent / "manifest.json").stat().st_mtime_ns == stamp
