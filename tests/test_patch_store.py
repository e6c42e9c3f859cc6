"""The packed patch store (ioda.data.patch_store): the same patches as the files for the same seed, training from
it with DataLoader workers gives the same weights, bad stores are refused by name, and the workflow packs once."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from skimage import data as skdata

from ioda.archs import build_model
from ioda.cli import main as ioda_main
from ioda.data.imresize import imresize
from ioda.data.pairs import PairedPatches, list_pairs
from ioda.data.patch_store import open_store, pack_split, read_index
from ioda.errors import IodaError
from ioda.imageio import write_image
from ioda.train.supervised import train_supervised

ROOT = Path(__file__).resolve().parents[1]
SCALE, PATCH = 4, 12


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("store") / "train"
    astro, coffee = skdata.astronaut(), skdata.coffee()
    for i, hr in enumerate([astro[:128, :96], astro[200:328, 256:384], coffee[:96, 100:260]]):  # different sizes
        write_image(root / "HR" / f"im{i}.png", hr)
        write_image(root / f"LR_x{SCALE}" / f"im{i}.png", imresize(hr, 1 / SCALE))
    return root


@pytest.fixture(scope="module")
def store(split):
    pack_split(split, SCALE, split.parent / "store")
    return split.parent / "store"


def test_store_yields_the_same_patches_as_the_files(split, store):
    plain = PairedPatches(list_pairs(split, SCALE), SCALE, PATCH, seed=3, length=64)
    packed = open_store(store, PATCH, seed=3, length=64, scale=SCALE)
    assert len(packed) == len(plain) == 64
    for i in range(64):
        (a_lr, a_hr), (b_lr, b_hr) = plain[i], packed[i]
        assert torch.equal(a_lr, b_lr) and torch.equal(a_hr, b_hr), i
    index = read_index(store)
    assert index["count"] == 3 and len(index["inputs_sha256"]) == 64
    assert set(index["inputs"]) == {"im0", "im1", "im2"}
    # a worker gets the index, not the pixels: the pickled dataset is small whatever the split's size
    assert len(pickle.dumps(packed)) < 4096


def test_training_from_the_store_with_workers_equals_the_plain_path(split, store):
    """2 steps from the store with 2 DataLoader workers: bit for bit the in-process run over the files; a resumed
    run with workers continues exactly too."""
    plain = PairedPatches(list_pairs(split, SCALE), SCALE, PATCH, seed=0, length=16)
    packed = open_store(store, PATCH, seed=0, length=16)
    out = {}
    for name, data, workers in (("plain", plain, 0), ("store", packed, 2)):
        model = build_model("safmn_tiny", seed=0)
        r = train_supervised(model, data, steps=2, batch_size=3, lr=1e-3, seed=0, workers=workers)
        assert r["steps_done"] == 2 and np.isfinite(r["final_loss"])
        out[name] = model.state_dict()
    assert all(torch.equal(out["plain"][k], out["store"][k]) for k in out["plain"])


def test_resume_with_workers_is_bit_exact(store, tmp_path):
    packed = open_store(store, PATCH, seed=0, length=32)
    full = build_model("safmn_tiny", seed=0)
    train_supervised(full, packed, steps=4, batch_size=2, lr=1e-3, workers=2, ckpt_path=tmp_path / "a.ckpt")
    part = build_model("safmn_tiny", seed=0)
    train_supervised(part, packed, steps=4, batch_size=2, lr=1e-3, workers=2, ckpt_path=tmp_path / "b.ckpt",
                     stop_at=2)
    resumed = build_model("safmn_tiny", seed=1)
    train_supervised(resumed, packed, steps=4, batch_size=2, lr=1e-3, workers=2, ckpt_path=tmp_path / "b.ckpt",
                     resume=True)
    assert all(torch.equal(full.state_dict()[k], v) for k, v in resumed.state_dict().items())


def test_pack_and_pretrain_from_the_command_line(split, tmp_path):
    out = tmp_path / "s"
    assert ioda_main(["pack", str(split), "--scale", str(SCALE), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["hr.npy", "index.json", "lr.npy"]
    summary = tmp_path / "summary.json"
    rc = ioda_main(["pretrain", "--preset", "safmn_tiny", "--store", str(out), "--out", str(tmp_path / "m.safetensors"),
                    "--steps", "2", "--batch-size", "2", "--lr-patch", str(PATCH), "--workers", "1", "--device", "cpu",
                    "--summary-json", str(summary)])
    assert rc == 0 and (tmp_path / "m.safetensors").is_file()
    facts = json.loads(summary.read_text())
    assert facts["steps_done"] == 2 and facts["data"] == str(out) and facts["workers"] == 1
    assert facts["numerics"]["mode"] == "auto"


def test_bad_stores_and_splits_are_refused_by_name(split, store, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("index.json", "lr.npy", "hr.npy"):
        (bad / name).write_bytes((store / name).read_bytes())
    np.save(bad / "lr.npy", np.zeros(5, np.uint8))  # truncated pixels
    with pytest.raises(IodaError, match=r"lr\.npy: missing, damaged or not the \d+-byte uint8 array"):
        open_store(bad, PATCH)
    (bad / "index.json").write_text('{"format": "something else"}')
    with pytest.raises(IodaError, match="index.json: not a patch store index"):
        read_index(bad)
    with pytest.raises(IodaError, match="packed at scale 4, this model's scale is 2"):
        open_store(store, PATCH, scale=2)
    with pytest.raises(IodaError, match="smaller than the LR patch size 64"):
        open_store(store, 64)
    # a broken image mid-way: nothing is left behind, an existing store is kept
    broken = tmp_path / "broken"
    for sub in ("HR", f"LR_x{SCALE}"):
        (broken / sub).mkdir(parents=True)
        for f in sorted((split / sub).iterdir()):
            (broken / sub / f.name).write_bytes(f.read_bytes())
    (broken / "HR" / "im2.png").write_bytes(b"not a png")
    assert ioda_main(["pack", str(broken), "--out", str(tmp_path / "out")]) == 2
    assert "im2.png" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_workflow_packs_once_and_pretrains_from_the_store(tmp_path):
    env = dict(os.environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["run"].update(device="cpu", threads=2, data_dir=str(tmp_path / "d"), results_dir=str(tmp_path / "r"))
    cfg["pretrain"]["store"] = True
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "pretrained", "--configfile",
                           str(tmp_path / "c.yaml")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    packs = [ln for ln in proc.stdout.splitlines() if "-m ioda pack " in ln]
    pretrains = [ln for ln in proc.stdout.splitlines() if "-m ioda pretrain " in ln and "--steps" in ln]
    assert len(packs) == 1 and pretrains
    store = packs[0].split("--out ")[1].split()[0]
    assert store.endswith("_store_x4")
    assert all(f"--store {store} --workers 2" in ln and "--data" not in ln for ln in pretrains)
