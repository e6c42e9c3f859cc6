"""Supervised training: determinism, bit-identical resume, NaN stop, CSV log; `ioda pretrain` CLI."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from ioda import cli
from ioda.archs import build_model, load_model, save_model
from ioda.data.pairs import PairedPatches, list_pairs
from ioda.errors import IodaError
from ioda.files import sha256_file
from ioda.train.loop import load_checkpoint
from ioda.train.supervised import lr_at, train_supervised


def make_split(root, n=3, lr_size=(20, 24), scale=4, seed=0):
    """Smooth random HR images and LR by box-averaging (no dependence on the data package)."""
    rng = np.random.default_rng(seed)
    (root / "HR").mkdir(parents=True)
    (root / f"LR_x{scale}").mkdir()
    h, w = lr_size[0] * scale, lr_size[1] * scale
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(n):
        f = rng.uniform(1, 6, 3)
        hr = np.stack([np.sin(f[c] * (xx + yy * (c + 1)) * 3.1 + c) for c in range(3)], -1) * 100 + 128
        hr = np.clip(hr + rng.normal(0, 8, hr.shape), 0, 255)
        lr = hr.reshape(lr_size[0], scale, lr_size[1], scale, 3).mean((1, 3))
        Image.fromarray(np.round(hr).astype(np.uint8)).save(root / "HR" / f"im{i}.png")
        Image.fromarray(np.round(lr).astype(np.uint8)).save(root / f"LR_x{scale}" / f"im{i}.png")
    return root


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return make_split(tmp_path_factory.mktemp("data") / "train")


def _data(split, length=64):
    return PairedPatches(list_pairs(split, 4), 4, 8, seed=0, length=length)


def _params(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _train(preset, split, tmp, **kw):
    m = build_model(preset, seed=0)
    args = dict(steps=4, batch_size=2, lr=2e-3, seed=3, device="cpu", ckpt_every=1)
    args.update(kw)
    info = train_supervised(m, _data(split), **args)
    return m, info


@pytest.mark.parametrize("preset,sched", [("safmn_tiny", "cosine"), ("hat_tiny", "multistep")])
def test_interrupted_then_resumed_equals_uninterrupted(preset, sched, split, tmp_path):
    """hat_tiny uses drop-path (torch RNG), so this also checks the RNG state travels in the checkpoint."""
    full, _ = _train(preset, split, tmp_path, scheduler=sched, ckpt_path=tmp_path / "a.ckpt")
    _train(preset, split, tmp_path, scheduler=sched, ckpt_path=tmp_path / "b.ckpt", stop_at=2)
    assert load_checkpoint(tmp_path / "b.ckpt")["step"] == 2
    torch.manual_seed(999)  # a different global RNG state must not matter after resume
    resumed, info = _train(preset, split, tmp_path, scheduler=sched, ckpt_path=tmp_path / "b.ckpt", resume=True)
    assert info["resumed_from"] == 2 and info["steps_done"] == 4
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and the weights really moved
    init = build_model(preset, seed=0).state_dict()
    assert any(not torch.equal(a[k], init[k]) for k in a)


def test_constant_lr_two_plus_two_steps(split, tmp_path):
    full, _ = _train("safmn_tiny", split, tmp_path, steps=4, scheduler="constant")
    _train("safmn_tiny", split, tmp_path, steps=2, scheduler="constant", ckpt_path=tmp_path / "c.ckpt")
    more, _ = _train("safmn_tiny", split, tmp_path, steps=4, scheduler="constant", ckpt_path=tmp_path / "c.ckpt",
                     resume=True)
    a, b = full.state_dict(), more.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_other_seed_differs(split, tmp_path):
    a, _ = _train("safmn_tiny", split, tmp_path, steps=2)
    b, _ = _train("safmn_tiny", split, tmp_path, steps=2)
    c, _ = _train("safmn_tiny", split, tmp_path, steps=2, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_loss_goes_down(split):
    data = _data(split, length=200)
    lr_b = torch.stack([data[i][0] for i in range(8)])
    hr_b = torch.stack([data[i][1] for i in range(8)])
    with torch.no_grad():
        before = torch.nn.functional.l1_loss(build_model("safmn_tiny", seed=0)(lr_b), hr_b).item()
    m = build_model("safmn_tiny", seed=0)
    train_supervised(m, data, steps=25, batch_size=2, lr=5e-3, scheduler="constant", seed=0)
    with torch.no_grad():
        after = torch.nn.functional.l1_loss(m(lr_b), hr_b).item()
    assert after < 0.6 * before, (before, after)


def test_checkpoint_is_weights_only_and_csv_log(split, tmp_path):
    ck, log = tmp_path / "t.ckpt", tmp_path / "log.csv"
    _train("safmn_tiny", split, tmp_path, steps=3, scheduler="cosine", ckpt_path=ck, log_csv=log)
    state = torch.load(ck, weights_only=True)
    assert state["step"] == 3 and set(state) >= {"model", "optimizer", "rng", "config", "loss_rows"}
    rows = list(csv.DictReader(open(log)))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert float(rows[0]["lr"]) == pytest.approx(2e-3) and float(rows[2]["lr"]) < float(rows[1]["lr"])
    assert all(float(r["loss"]) > 0 for r in rows)
    # resuming from step 3 to 4 rewrites the log without duplicates... but cosine needs the same steps
    with pytest.raises(IodaError, match="cannot resume: checkpoint has steps=3, this run asks steps=5"):
        _train("safmn_tiny", split, tmp_path, steps=5, scheduler="cosine", ckpt_path=ck, resume=True)
    with pytest.raises(IodaError, match="checkpoint has lr=0.002"):
        _train("safmn_tiny", split, tmp_path, steps=3, lr=1e-3, ckpt_path=ck, resume=True)


def test_resume_drops_log_rows_after_checkpoint(split, tmp_path):
    ck, log = tmp_path / "t.ckpt", tmp_path / "log.csv"
    _train("safmn_tiny", split, tmp_path, steps=4, scheduler="constant", ckpt_path=ck, log_csv=log, ckpt_every=2,
           stop_at=3)  # checkpoint at 2 and at the stop (3)
    # pretend the job died after logging step 3 but before its checkpoint: roll the checkpoint back to 2
    _train("safmn_tiny", split, tmp_path, steps=2, scheduler="constant", ckpt_path=ck)
    _train("safmn_tiny", split, tmp_path, steps=4, scheduler="constant", ckpt_path=ck, log_csv=log, resume=True)
    steps = [int(r["step"]) for r in csv.DictReader(open(log))]
    assert steps == [1, 2, 3, 4]


class _NaNAfter(Dataset):
    def __init__(self, inner, bad_from):
        self.inner, self.bad_from, self.calls = inner, bad_from, 0

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self.calls += 1
        lr, hr = self.inner[i]
        return (lr * float("nan"), hr) if self.calls > self.bad_from else (lr, hr)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(split, tmp_path):
    ck = tmp_path / "n.ckpt"
    m = build_model("safmn_tiny", seed=0)
    with pytest.raises(IodaError, match=r"loss is nan at step 3 .*last good checkpoint .*n\.ckpt is kept"):
        train_supervised(m, _NaNAfter(_data(split), bad_from=4), steps=5, batch_size=2, lr=1e-3, seed=0,
                         ckpt_path=ck, ckpt_every=1)
    state = load_checkpoint(ck)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_schedules():
    assert lr_at(0, base_lr=1.0, steps=100, scheduler="cosine") == pytest.approx(1.0)
    assert lr_at(50, base_lr=1.0, steps=100, scheduler="cosine") == pytest.approx(0.5, abs=1e-6)
    assert lr_at(99, base_lr=1.0, steps=100, scheduler="multistep") == pytest.approx(0.5**4)
    assert lr_at(49, base_lr=1.0, steps=100, scheduler="multistep") == 1.0
    assert lr_at(50, base_lr=1.0, steps=100, scheduler="multistep") == 0.5
    with pytest.raises(IodaError, match="unknown 'linear'"):
        lr_at(0, base_lr=1.0, steps=10, scheduler="linear")


# ---- CLI ----
def test_pretrain_cli_trains_and_writes_model(split, tmp_path):
    out = tmp_path / "m" / "model.safetensors"
    rc = cli.main(["pretrain", "--preset", "safmn_tiny", "--data", str(split), "--out", str(out), "--steps", "3",
                   "--batch-size", "2", "--lr-patch", "8", "--device", "cpu", "--resume", "--log", str(tmp_path / "p.log"),
                   "--log-csv", str(tmp_path / "p.csv"), "--summary-json", str(tmp_path / "s.json")])
    assert rc == 0 and out.is_file() and (tmp_path / "m" / "model.safetensors.ckpt").is_file()
    loaded = load_model(out, preset="safmn_tiny")
    assert loaded.meta["steps"] == 3 and loaded.meta["lr_patch"] == 8
    assert "pretraining safmn_tiny" in (tmp_path / "p.log").read_text()
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 4
    # --resume with a finished checkpoint: nothing left to train, same model written again
    first = out.read_bytes()
    out.unlink()
    assert cli.main(["pretrain", "--preset", "safmn_tiny", "--data", str(split), "--out", str(out), "--steps", "3",
                     "--batch-size", "2", "--lr-patch", "8", "--device", "cpu", "--resume"]) == 0
    assert out.read_bytes() == first


def test_pretrain_cli_bad_data_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    rc = cli.main(["pretrain", "--preset", "safmn_tiny", "--data", str(tmp_path / "nope"), "--out", str(out),
                   "--steps", "2", "--device", "cpu"])
    assert rc == 2 and not out.exists()
    assert "nope/LR_x4: folder not found" in capsys.readouterr().err


def test_import_official_weights_with_checksum(tmp_path, capsys):
    ref = build_model("safmn_tiny", seed=7)
    official = tmp_path / "SAFMN_tiny_x4.pth"
    torch.save({"params": ref.state_dict()}, official)
    out = tmp_path / "imported.safetensors"
    rc = cli.main(["pretrain", "--preset", "safmn_tiny", "--weights", str(official), "--sha256", sha256_file(official),
                   "--out", str(out)])
    assert rc == 0
    got = load_model(out, preset="safmn_tiny").module.state_dict()
    assert all(torch.equal(got[k], v) for k, v in ref.state_dict().items())
    # wrong checksum / wrong architecture: error, no output
    out2 = tmp_path / "x.safetensors"
    assert cli.main(["pretrain", "--preset", "safmn_tiny", "--weights", str(official), "--sha256", "0" * 64,
                     "--out", str(out2)]) == 2
    assert "SHA-256 is" in capsys.readouterr().err and not out2.exists()
    assert cli.main(["pretrain", "--preset", "hat_tiny", "--weights", str(official), "--out", str(out2)]) == 2
    assert "checkpoint is SAFMN x4, expected HAT x4 (preset hat_tiny)" in capsys.readouterr().err
    assert not out2.exists()


def test_save_then_train_through_module(tmp_path, split):
    """Training always goes through the nn.Module: a loaded model trains like a fresh one."""
    m = build_model("safmn_tiny", seed=0)
    save_model(m, tmp_path / "m.safetensors", "safmn_tiny")
    loaded = load_model(tmp_path / "m.safetensors").module
    a = train_supervised(m, _data(split), steps=2, batch_size=2, lr=1e-3, seed=0)
    b = train_supervised(loaded, _data(split), steps=2, batch_size=2, lr=1e-3, seed=0)
    assert a["final_loss"] == b["final_loss"]
