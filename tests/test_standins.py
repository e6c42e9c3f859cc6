"""Stand-in inputs (`ioda standins`): official layouts the prepare step and loaders accept only in stand-in mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ioda import cli
from ioda.archs.loading import load_model
from ioda.clip import build_encoder
from ioda.config import paper_config
from ioda.data.prepare import prepare
from ioda.data.registry import get_entry
from ioda.errors import IodaError
from ioda.standins import datasets as ds
from ioda.standins import weights as ws
from ioda.standins.guard import BANNER, banner_first, record_path, refuse_standins

ROOT = Path(__file__).resolve().parents[1]
PAPER_DATASETS = list(paper_config()["datasets"])


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_each_paper_dataset_in_its_official_layout(name, tmp_path):
    ds.write_dataset(name, tmp_path / "raw", seed=0, n_train=2, n_test=1, size=(32, 48))
    entry = get_entry(name)
    if entry.kind == "download":  # DF2K: the official archives, unpacked by the prepare step
        assert sorted(p.name for p in (tmp_path / "raw" / "DF2K" / "downloads").iterdir()) == [
            "DIV2K_train_HR.zip", "DIV2K_valid_HR.zip", "Flickr2K.tar"]
    else:
        assert ds.check_layout(name, tmp_path / "raw") == {s: (2 if s == "train" else 1) for s in entry.splits}
    # published image counts: refused (as an incomplete real dataset is), nothing written
    with pytest.raises(IodaError, match="expected"):
        prepare(name, tmp_path / "out", root=tmp_path / "raw")
    assert not (tmp_path / "out").exists()
    manifest = json.loads(prepare(name, tmp_path / "out", root=tmp_path / "raw", standins=True).read_text())
    assert manifest["standins"] is True
    assert {s: v["count"] for s, v in manifest["splits"].items()} == {s: (2 if s == "train" else 1)
                                                                     for s in entry.splits}


def test_stand_in_photos_are_seeded():
    assert (ds.synthetic_photo(3) == ds.synthetic_photo(3)).all()
    assert not (ds.synthetic_photo(3) == ds.synthetic_photo(4)).all()


@pytest.mark.parametrize("preset,arch,wrapper", [("safmn_l", "SAFMN", "params"), ("hat", "HAT", "params_ema"),
                                                 ("srformer", "SRFormer", "params")])
def test_backbone_stand_ins_are_what_spandrel_detects(preset, arch, wrapper, tmp_path):
    import torch

    path = ws.write_backbone(preset, tmp_path / "w.pth", seed=1)
    raw = torch.load(path, weights_only=True)
    assert list(raw) == [wrapper] and all(v.dtype == torch.float32 for v in raw[wrapper].values()
                                          if v.is_floating_point())
    loaded = load_model(path)  # no preset given: spandrel detects architecture and size
    assert (loaded.arch, loaded.scale, loaded.preset) == (arch, 4, preset)


def test_clip_stand_ins_load_strictly(tmp_path):
    alpha = ws.write_alpha_clip("ViT-B-16-quickgelu", tmp_path / "clip_b16_grit+mim_fultune_4xe.pth")
    enc = build_encoder("ViT-B-16-quickgelu", alpha_weights=str(alpha))
    assert "clip_b16_grit+mim_fultune_4xe.pth" in enc.description
    cache = tmp_path / "hf"
    ws.write_open_clip("ViT-B-16-quickgelu", "openai", cache)
    code = ("from ioda.clip import build_encoder; "
            "print(build_encoder('ViT-B-16-quickgelu', pretrained='openai').description)")
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "open_clip weights 'openai'" in out.stdout


def test_recorded_stand_ins_are_refused_unless_allowed(tmp_path):
    w = tmp_path / "weights" / "SAFMN_L_DF2K_x4.pth"
    ws.write_backbone("safmn_tiny", w)
    other = tmp_path / "other.pth"  # a file ioda standins did not write
    torch.save({"params": {"w": torch.zeros(2)}}, other)
    from ioda.files import sha256_file, write_json

    write_json(record_path(tmp_path), {"files": {str(w): sha256_file(w)}})
    with pytest.raises(IodaError, match=r"SAFMN_L_DF2K_x4\.pth: a stand-in file .*run\.standins: true"):
        refuse_standins([w, other], allowed=False)
    refuse_standins([w, other], allowed=True)
    refuse_standins([other], allowed=False)


def test_banner_only_in_stand_in_mode():
    assert banner_first({"run": {"standins": True}}, "Table 1").startswith(BANNER)
    assert banner_first({"run": {"standins": False}}, "Table 1") == "Table 1"


def test_cli_refuses_an_unknown_dataset(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text((ROOT / ".test" / "config.yaml").read_text())
    # the CI config names demo datasets only: nothing to stand in for, and no weights
    assert cli.main(["standins", "--config", str(cfg), "--root", str(tmp_path / "r")]) == 0
    assert json.loads(record_path(tmp_path / "r").read_text())["files"] == {}
    with pytest.raises(IodaError, match="no official layout known for dataset 'set5'"):
        ds.official_files("set5", 1, 1)
