"""Backbone presets, safe checkpoint loading, refusals, save/load round trips."""

import pickle
from pathlib import Path

import pytest
import torch

from ioda.archs import build_model, load_model, preset_info, preset_names, read_state_dict, save_model
from ioda.errors import IodaError

TINY = ["safmn_tiny", "hat_tiny", "srformer_tiny"]


def test_preset_registry_and_info():
    assert set(preset_names()) == {"safmn", "safmn_l", "hat", "srformer", *TINY}
    info = preset_info("safmn")
    assert info["arch"] == "SAFMN" and info["scale"] == 4
    assert info["kwargs"] == {"dim": 36, "n_blocks": 8, "ffn_scale": 2.0, "upscaling_factor": 4}
    assert preset_info("safmn_l")["kwargs"]["dim"] == 128 and preset_info("safmn_l")["kwargs"]["n_blocks"] == 16
    assert preset_info("hat")["kwargs"]["window_size"] == 16 and preset_info("srformer")["kwargs"]["window_size"] == 22
    with pytest.raises(IodaError, match="unknown backbone preset 'nope'"):
        preset_info("nope")


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_are_small_and_run(name):
    m = build_model(name, seed=0).eval()
    n = sum(p.numel() for p in m.parameters())
    assert 1_000 <= n <= 100_000, n
    with torch.no_grad():
        y = m(torch.rand(1, 3, 13, 19))  # odd sizes: HAT/SRFormer pad to their window internally
    assert y.shape == (1, 3, 52, 76) and torch.isfinite(y).all()


def test_build_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("safmn_tiny", seed=5)
    assert torch.equal(torch.rand(1), before)  # global stream untouched
    b = build_model("safmn_tiny", seed=5)
    c = build_model("safmn_tiny", seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name", TINY)
def test_safetensors_round_trip_identical_outputs(name, tmp_path):
    m = build_model(name, seed=1).eval()
    path = tmp_path / f"{name}.safetensors"
    save_model(m, path, name, meta={"steps": 3, "note": "x"})
    loaded = load_model(path)
    assert (loaded.preset, loaded.scale) == (name, 4)
    assert loaded.meta == {"preset": name, "arch": loaded.arch, "scale": 4, "steps": 3, "note": "x"}
    again = tmp_path / "again.safetensors"
    save_model(m, again, name, meta={"note": "x", "steps": 3})
    assert again.read_bytes() == path.read_bytes()  # deterministic bytes (stable DVC hashes)
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(m(x), loaded.module(x))
    assert not loaded.module.training


@pytest.mark.parametrize("wrapper", ["params", "params_ema", None])
def test_official_style_pth_wrappers(wrapper, tmp_path):
    m = build_model("safmn_tiny", seed=2).eval()
    sd = m.state_dict()
    obj = {wrapper: sd} if wrapper else sd
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    loaded = load_model(path, preset="safmn_tiny")
    assert loaded.arch == "SAFMN" and loaded.preset == "safmn_tiny"
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(m(x), loaded.module(x))
    # no preset given: found by matching shapes
    assert load_model(path).preset == "safmn_tiny"


@pytest.mark.parametrize("name,arch", [("safmn", "SAFMN"), ("safmn_l", "SAFMN"), ("hat", "HAT"), ("srformer", "SRFormer")])
def test_big_presets_state_dict_round_trip(name, arch, tmp_path):
    """The big presets are what spandrel detects back from their own state dicts (same keys/shapes), so
    the authors' released weights of that size load into them."""
    m = build_model(name, seed=0)
    path = tmp_path / "big.pth"
    torch.save({"params_ema": m.state_dict()}, path)
    loaded = load_model(path)
    assert (loaded.arch, loaded.scale, loaded.preset) == (arch, 4, name)
    k = next(iter(m.state_dict()))
    assert torch.equal(loaded.module.state_dict()[k], m.state_dict()[k])


def test_wrong_architecture_refused_naming_both(tmp_path):
    path = tmp_path / "hat.safetensors"
    save_model(build_model("hat_tiny", seed=0), path, "hat_tiny")
    with pytest.raises(IodaError, match=r"hat\.safetensors: checkpoint is HAT x4, expected SAFMN x4 \(preset safmn_tiny\)"):
        load_model(path, preset="safmn_tiny")


def test_wrong_scale_refused(tmp_path):
    from spandrel.architectures.SAFMN import SAFMN

    m = SAFMN(dim=8, n_blocks=2, ffn_scale=2.0, upscaling_factor=2)
    path = tmp_path / "x2.pth"
    torch.save({"params": m.state_dict()}, path)
    with pytest.raises(IodaError, match=r"checkpoint is SAFMN x2, expected SAFMN x4 \(preset safmn_tiny\)"):
        load_model(path, preset="safmn_tiny")
    with pytest.raises(IodaError, match=r"checkpoint is SAFMN x2, expected x4"):
        load_model(path, scale=4)
    assert load_model(path, scale=2).preset is None  # no preset of that size: spandrel's own module


def test_preset_size_mismatch_refused(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(build_model("safmn_tiny", seed=0).state_dict(), path)
    with pytest.raises(IodaError, match=r"tiny\.pth: SAFMN x4 weights do not fit preset safmn \("):
        load_model(path, preset="safmn")


def test_corrupt_files_refused_naming_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(IodaError, match="bad.pth is not a plain-tensor checkpoint .*Unsupported operand"):
        load_model(bad)
    good = tmp_path / "m.safetensors"
    save_model(build_model("safmn_tiny", seed=0), good, "safmn_tiny")
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(IodaError, match="trunc.safetensors: corrupt"):
        load_model(trunc)
    with pytest.raises(IodaError, match="missing.pth: checkpoint not found"):
        load_model(tmp_path / "missing.pth")
    other = tmp_path / "w.onnx"
    other.write_bytes(b"x")
    with pytest.raises(IodaError, match="unsupported checkpoint type"):
        load_model(other)


class _Payload:
    """Unpickling this would create a file: loading must refuse it instead of executing it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save({"params": build_model("safmn_tiny").state_dict(), "x": _Payload(marker)}, f, pickle_module=pickle)
    with pytest.raises(IodaError, match=r"refused: .*evil.pth contains code \(\S+\), not only tensors"):
        load_model(path)
    assert not marker.exists()


def test_unknown_architecture_and_non_tensor_entries(tmp_path):
    path = tmp_path / "conv.pth"
    torch.save(torch.nn.Conv2d(3, 3, 3).state_dict(), path)
    with pytest.raises(IodaError, match="conv.pth: architecture not recognised"):
        load_model(path)
    path2 = tmp_path / "mixed.pth"
    torch.save({"a": torch.zeros(1), "b": 3}, path2)
    with pytest.raises(IodaError, match="mixed.pth: not a model state dict"):
        read_state_dict(path2)


def test_save_refuses_wrong_preset_and_suffix(tmp_path):
    m = build_model("safmn_tiny", seed=0)
    with pytest.raises(IodaError, match="does not fit preset hat_tiny"):
        save_model(m, tmp_path / "m.safetensors", "hat_tiny")
    with pytest.raises(IodaError, match="written as .safetensors"):
        save_model(m, tmp_path / "m.pth", "safmn_tiny")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
