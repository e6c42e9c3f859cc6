"""The degradation encoder: region pooling, its training (tiny, resumable), its file format and refusals, and the
encoder interface the loss and the workflow share with Alpha-CLIP."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from skimage import data as skdata

from ioda.cli import main as ioda_main
from ioda.encoders import ENCODERS, build_encoder, get_encoder_spec
from ioda.encoders.base import Encoder
from ioda.encoders.degradation import (DegradationNet, alpha_pool, build_degradation_encoder, default_config,
                                       read_weights, save_weights)
from ioda.encoders.probes import synthetic_probes
from ioda.errors import IodaError
from ioda.imageio import write_image

TINY = ["--steps", "2", "--batch-size", "4", "--bank-size", "8", "--lr-size", "16", "--lr-crop", "12",
        "--sr-size", "32", "--sr-crop", "24", "--threads", "1"]


def _split(root: Path, name: str, n: int = 4) -> Path:
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    for i in range(n):
        write_image(root / "train" / "HR" / f"im{i}.png", photos[i % 4][:96, :96])
    (root / "manifest.json").write_text(json.dumps({"name": name}))
    return root / "train"


@pytest.fixture(scope="module")
def source_split(tmp_path_factory):
    return _split(tmp_path_factory.mktemp("enc") / "bsd100_urban100", "bsd100_urban100")


@pytest.fixture(scope="module")
def trained(source_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc_out") / "enc.safetensors"
    assert ioda_main(["pretrain-encoder", "--data", str(source_split), "--out", str(out), "--holdout", "0.25",
                      *TINY]) == 0
    return out


def test_alpha_pool_ignores_cells_under_alpha_zero_and_a_full_mask_is_average_pooling():
    feats = torch.rand(2, 5, 6, 6)
    alpha = torch.zeros(2, 1, 6, 6)
    alpha[:, :, :, :3] = 1
    other = feats.clone()
    other[..., 3:] = torch.rand(2, 5, 6, 3) * 100
    assert torch.equal(alpha_pool(feats, alpha), alpha_pool(other, alpha))
    assert torch.allclose(alpha_pool(feats, torch.ones(2, 1, 6, 6)), feats.mean(dim=(2, 3)))
    with pytest.raises(IodaError, match="empty"):
        alpha_pool(feats, torch.zeros(2, 1, 6, 6))


def test_pixels_under_alpha_zero_beyond_the_receptive_field_do_not_move_the_embedding():
    enc = build_degradation_encoder(None, seed=3)
    img = torch.rand(1, 3, 64, 96)
    alpha = torch.zeros(1, 1, 64, 96)
    alpha[..., :24] = 1
    far = 24 + enc.receptive_field + 4  # the mask's last feature cell sees at most this far
    changed = img.clone()
    changed[..., far:] = torch.rand(1, 3, 64, 96 - far)
    assert torch.equal(enc.encode_image(img, alpha), enc.encode_image(changed, alpha))
    assert not torch.equal(enc.encode_image(img), enc.encode_image(changed))  # without the mask they count


def test_interface_is_shared_with_alpha_clip_and_asked_not_named():
    deg, clip = build_encoder("degradation"), build_encoder("tiny", seed=0)
    for enc in (deg, clip):
        assert isinstance(enc, Encoder) and enc.untrained
        e = enc.encode_image(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32))
        assert e.shape == (2, enc.embed_dim) and torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not deg.has_text and clip.has_text
    assert [n for n, s in ENCODERS.items() if s.trained_here] == ["degradation"]
    with pytest.raises(IodaError, match="no text tower"):
        deg.encode_text(["a photo"])
    # batches of two sizes (LR and SR) in one call equal their own calls
    lr, sr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 64, 64)
    a, b = deg.encode_images([(lr, None), (sr, None)])
    assert torch.allclose(a, deg.encode_image(lr)) and torch.allclose(b, deg.encode_image(sr))
    with pytest.raises(IodaError, match="not known"):
        get_encoder_spec("clip-large")


def test_pretrain_encoder_writes_weights_and_card_and_the_encoder_loads_trained(trained):
    card = json.loads(trained.with_suffix(".json").read_text())
    assert card["datasets"] == ["bsd100_urban100"] and card["steps"] == 2 and len(card["holdout"]) == 1
    assert set(card["probes"]) >= {"knn_acc", "splice_acc", "blur_rank_corr", "noise_rank_corr"}
    assert len(card["data"]["hr_images_sha256"]) == 64
    enc = build_encoder("degradation", str(trained))
    assert not enc.untrained and "bsd100_urban100" in enc.description
    _, cfg, file_card = read_weights(trained)
    assert cfg == default_config() and file_card["recipe"] == card["recipe"]


def test_interrupted_at_two_steps_then_resumed_equals_four_straight(tmp_path):
    from ioda.encoders.bank import build_bank
    from ioda.encoders.train import EncoderTrainer, Recipe

    photos = [skdata.astronaut()[:96, :96], skdata.coffee()[:96, :96]]
    recipe = Recipe(steps=4, batch_size=4, bank_size=8, lr_size=16, lr_crop=12, sr_size=32, sr_crop=24)
    bank = build_bank(photos, recipe.bank_size, recipe.lr_size, recipe.sr_size, recipe.scale, recipe.seed)
    straight = EncoderTrainer(bank, recipe, tmp_path / "a")
    straight.loop.run()
    first = EncoderTrainer(bank, recipe, tmp_path / "b")
    first.loop.run(stop_at=2)  # as if the job were killed after step 2 (checkpoint written)
    assert (tmp_path / "b.ckpt").is_file()
    resumed = EncoderTrainer(bank, recipe, tmp_path / "b")
    assert resumed.loop.resume() and resumed.loop.step == 2
    resumed.loop.run()
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r[1] for r in straight.loop.loss_rows] == [r[1] for r in resumed.loop.loss_rows]
    other = EncoderTrainer(bank, Recipe(**{**recipe.to_dict(), "seed": 1}), tmp_path / "c")
    other.loop.run()
    assert not torch.equal(other.net.embed.weight, straight.net.embed.weight)


@pytest.mark.parametrize("how", ["registry", "targets"])
def test_a_target_dataset_is_refused_as_training_data(tmp_path, capsys, how):
    name = "realsr_canon_crops" if how == "registry" else "bsd100_urban100"
    split = _split(tmp_path / name, name, n=1)
    extra = ["--targets", "bsd100_urban100"] if how == "targets" else []
    out = tmp_path / "x.safetensors"
    assert ioda_main(["pretrain-encoder", "--data", str(split), "--out", str(out), *extra, *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and "source-domain" in err
    assert not out.exists()


def test_wrong_shapes_and_wrong_files_are_refused_naming_what(trained, tmp_path):
    state, cfg, card = read_weights(trained)
    state["visual.body.0.weight"] = torch.zeros(8, 3, 3, 3)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata={"ioda_encoder": "ioda-degradation-encoder-1", "config": json.dumps(cfg)})
    with pytest.raises(IodaError, match=r"tensor 'visual.body.0.weight' has shape \(8, 3, 3, 3\), expected"):
        build_encoder("degradation", str(bad))
    foreign = tmp_path / "clip.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(IodaError, match="not a degradation encoder"):
        build_encoder("degradation", str(foreign))
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(trained.read_bytes()[:200])
    with pytest.raises(IodaError, match="cut.safetensors: not a readable safetensors"):
        build_encoder("degradation", str(truncated))


def test_synthetic_probes_are_in_range():
    enc = build_degradation_encoder(None)
    photos = [skdata.astronaut()[:200, :200], skdata.coffee()[:200, :200], skdata.chelsea()[:200, :200],
              skdata.rocket()[:200, :200]]
    p = synthetic_probes(enc, photos, n_deg=4, lr_size=24)
    assert 0 <= p["knn_acc"] <= 1 and p["knn_chance"] == 0.25 and 0 <= p["splice_acc"] <= 1
    assert all(-1 <= p[k] <= 1 for k in ("blur_rank_corr", "noise_rank_corr"))
    assert synthetic_probes(enc, photos, n_deg=4, lr_size=24) == p  # seeded


def test_save_then_load_round_trip(tmp_path):
    torch.manual_seed(0)
    net = DegradationNet(default_config())
    path = tmp_path / "n.safetensors"
    save_weights(net, path, {"steps": 0, "datasets": ["x"]})
    enc = build_encoder("degradation", str(path))
    x = torch.rand(1, 3, 20, 20)
    assert torch.allclose(enc.encode_image(x), net(x))
    assert np.isfinite(enc.encode_image(x).numpy()).all()


def test_effect_config_trains_the_encoder_first_and_the_control_runs_without_it():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = dict(__import__("os").environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--configfile",
                           "config/effect.yaml"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    train = [ln for ln in lines if "ioda pretrain-encoder" in ln]
    assert len(train) == 1
    assert ("--data data/bsd100_urban100/train --out results/effect/encoder/degradation.safetensors" in train[0]
            and "--targets realsr_canon_crops realsr_nikon_crops --steps 6000 --batch-size 24 --bank-size 3000 "
            "--seed 0" in train[0])
    weights = "--encoder degradation --encoder-weights results/effect/encoder/degradation.safetensors"
    for variant, trained in (("ioda", True), ("image_guided", True), ("ioda_untrained", False)):
        cells = [ln for ln in lines if "ioda adapt" in ln and f"--variant {variant} " in ln]
        assert len(cells) == 2  # Canon and its validation task Nikon
        assert all((weights in ln) == trained and "--encoder degradation" in ln for ln in cells)


def test_a_text_guided_cell_needs_an_encoder_with_text(tmp_path):
    import yaml

    from ioda.config import load_config
    from ioda.plan import Plan

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    cfg["encoder"] = {"name": "degradation"}
    cfg["variants"] = sorted(set(cfg["variants"]) | {"text_guided"})
    cfg["experiments"]["tables"]["table2"] = {"tasks": ["canon"], "backbones": ["safmn_tiny"],
                                              "variants": ["text_guided", "ioda"]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(IodaError, match="'encoder.name': 'degradation' has no text tower; variant 'text_guided'"):
        Plan(load_config(path))
