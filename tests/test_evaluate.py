"""`ioda evaluate` / evaluate_model: metrics per image match direct computation, inf handling,
refusals with nothing written, bicubic reference row, saved images, tiled inference."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ioda import cli
from ioda.archs import build_model, save_model
from ioda.errors import IodaError
from ioda.evaluate import evaluate_model
from ioda.metrics import calculate_psnr, calculate_ssim


class Nearest(nn.Module):
    """x4 nearest-neighbour upsampling: a model whose output the test can compute by hand."""

    def forward(self, x):
        return x.repeat_interleave(4, 2).repeat_interleave(4, 3)


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_split(root, exact_stem="b_exact"):
    """Two textured pairs plus one whose HR is exactly the nearest upsampling of its LR (PSNR inf)."""
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(12, 16), (14, 12)]):
        hr = rng.integers(0, 256, (h * 4, w * 4, 3)).astype(np.uint8)
        lr = hr.reshape(h, 4, w, 4, 3).mean((1, 3)).round().astype(np.uint8)
        _write(root / "HR" / f"a{i}.png", hr)
        _write(root / "LR_x4" / f"a{i}.png", lr)
    lr = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
    _write(root / "LR_x4" / f"{exact_stem}.png", lr)
    _write(root / "HR" / f"{exact_stem}.png", lr.repeat(4, 0).repeat(4, 1))
    return root


@pytest.fixture
def split(tmp_path):
    return make_split(tmp_path / "test")


def test_rows_match_direct_metrics_and_inf_is_counted(split):
    rows, summary = evaluate_model(Nearest(), split, 4)
    assert [r["image"] for r in rows] == ["a0", "a1", "b_exact"]
    for r in rows[:2]:
        lr = np.asarray(Image.open(split / "LR_x4" / f"{r['image']}.png"))
        hr = np.asarray(Image.open(split / "HR" / f"{r['image']}.png"))
        sr = lr.repeat(4, 0).repeat(4, 1)
        assert r["psnr"] == pytest.approx(calculate_psnr(sr, hr, 4), abs=1e-12)
        assert r["ssim"] == pytest.approx(calculate_ssim(sr, hr, 4), abs=1e-12)
        assert (r["hr_width"], r["hr_height"]) == (r["lr_width"] * 4, r["lr_height"] * 4)
    assert rows[2]["psnr"] == math.inf and rows[2]["ssim"] == pytest.approx(1.0)
    assert summary["n"] == 3 and summary["n_inf"] == 1
    assert summary["mean_psnr"] == pytest.approx((rows[0]["psnr"] + rows[1]["psnr"]) / 2)
    assert summary["mean_ssim"] == pytest.approx(np.mean([r["ssim"] for r in rows]))
    assert summary["crop_border"] == 4 and summary["test_y_channel"] is True
    # other crop / RGB scoring are passed through
    rows2, s2 = evaluate_model(Nearest(), split, 4, crop_border=0, test_y_channel=False)
    sr0 = np.asarray(Image.open(split / "LR_x4" / "a0.png")).repeat(4, 0).repeat(4, 1)
    hr0 = np.asarray(Image.open(split / "HR" / "a0.png"))
    assert rows2[0]["psnr"] == pytest.approx(calculate_psnr(sr0, hr0, 0, test_y_channel=False))
    assert s2["crop_border"] == 0 and s2["test_y_channel"] is False


def test_tiled_evaluation_matches_for_a_pointwise_model(split):
    whole, _ = evaluate_model(Nearest(), split, 4)
    tiled, s = evaluate_model(Nearest(), split, 4, tile=5)
    assert [r["psnr"] for r in whole] == [r["psnr"] for r in tiled] and s["tile"] == 5


def test_size_mismatch_names_both_files_and_writes_nothing(split, tmp_path):
    _write(split / "HR" / "a1.png", np.zeros((10, 10, 3), np.uint8))
    save = tmp_path / "sr"
    with pytest.raises(IodaError, match=r"HR/a1\.png: HR size 10x10 does not match LR .*LR_x4/a1\.png"):
        evaluate_model(Nearest(), split, 4, save_dir=save)
    assert not save.exists()  # a0's image had been written: removed again
    csv_p, json_p = tmp_path / "r.csv", tmp_path / "r.json"
    rc = cli.main(["evaluate", "--model", "bicubic", "--data", str(split), "--out-csv", str(csv_p),
                   "--out-json", str(json_p), "--save-images", str(save)])
    assert rc == 2 and not csv_p.exists() and not json_p.exists() and not save.exists()


def test_cli_with_checkpoint_writes_csv_json_and_images(split, tmp_path):
    model_p = tmp_path / "m.safetensors"
    net = build_model("safmn_tiny", seed=0)
    save_model(net, model_p, "safmn_tiny")
    csv_p, json_p, save = tmp_path / "o" / "r.csv", tmp_path / "o" / "r.json", tmp_path / "sr"
    rc = cli.main(["evaluate", "--model", str(model_p), "--preset", "safmn_tiny", "--data", str(split),
                   "--out-csv", str(csv_p), "--out-json", str(json_p), "--save-images", str(save),
                   "--device", "cpu", "--log", str(tmp_path / "e.log")])
    assert rc == 0
    rows = list(csv.DictReader(open(csv_p)))
    assert [r["image"] for r in rows] == ["a0", "a1", "b_exact"]
    summary = json.loads(json_p.read_text())
    assert summary["preset"] == "safmn_tiny" and summary["arch"] == "SAFMN" and summary["n"] == 3
    assert len(summary["model_sha256"]) == 64 and summary["device"] == "cpu"
    assert summary["mean_psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]), abs=1e-5)
    # the saved image is the model's rounded output, and scoring it again gives the CSV value
    sr = np.asarray(Image.open(save / "a0.png"))
    hr = np.asarray(Image.open(split / "HR" / "a0.png"))
    assert sr.shape == hr.shape
    lr_t = torch.from_numpy(np.asarray(Image.open(split / "LR_x4" / "a0.png"))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        direct = (net.eval()(lr_t).clamp(0, 1) * 255).round().byte()[0].permute(1, 2, 0).numpy()
    assert np.array_equal(sr, direct)
    assert float(rows[0]["psnr"]) == pytest.approx(calculate_psnr(sr, hr, 4), abs=1e-5)
    assert "PSNR" in (tmp_path / "e.log").read_text()


def test_several_models_in_one_process_equal_runs_of_their_own(split, tmp_path):
    """--model A B: one invocation scores each model (the workflow's per-cell job); its files equal single runs';
    a count mismatch or a failing model leaves no file behind."""
    models = []
    for i, preset in enumerate(("safmn_tiny", "safmn_tiny")):
        models.append(tmp_path / f"m{i}.safetensors")
        save_model(build_model(preset, seed=i), models[-1], preset)
    out = lambda tag, i, ext: str(tmp_path / tag / f"r{i}.{ext}")  # noqa: E731
    assert cli.main(["evaluate", "--model", *map(str, models), "--data", str(split), "--device", "cpu",
                     "--out-csv", out("cell", 0, "csv"), out("cell", 1, "csv"),
                     "--out-json", out("cell", 0, "json"), out("cell", 1, "json"),
                     "--save-images", str(tmp_path / "cell" / "sr0"), "-"]) == 0
    for i, m in enumerate(models):
        assert cli.main(["evaluate", "--model", str(m), "--data", str(split), "--device", "cpu",
                         "--out-csv", out("one", i, "csv"), "--out-json", out("one", i, "json")]) == 0
        assert Path(out("cell", i, "csv")).read_text() == Path(out("one", i, "csv")).read_text()
        cell, one = (json.loads(Path(out(t, i, "json")).read_text()) for t in ("cell", "one"))
        assert cell["mean_psnr"] == one["mean_psnr"] and cell["model"] == str(m)
    assert (tmp_path / "cell" / "sr0" / "a0.png").is_file() and not (tmp_path / "cell" / "-").exists()
    assert Path(out("cell", 0, "csv")).read_text() != Path(out("cell", 1, "csv")).read_text()
    rc = cli.main(["evaluate", "--model", *map(str, models), "--data", str(split), "--out-csv", out("bad", 0, "csv"),
                   "--out-json", out("bad", 0, "json"), out("bad", 1, "json")])
    assert rc == 2 and not (tmp_path / "bad").exists()
    hat = tmp_path / "hat.safetensors"
    save_model(build_model("hat_tiny", seed=0), hat, "hat_tiny")
    rc = cli.main(["evaluate", "--model", str(models[0]), str(hat), "--preset", "safmn_tiny", "--data", str(split),
                   "--out-csv", out("bad", 0, "csv"), out("bad", 1, "csv"),
                   "--out-json", out("bad", 0, "json"), out("bad", 1, "json")])
    assert rc == 2 and not (tmp_path / "bad").exists()  # every checkpoint is checked before any scoring


def test_bicubic_reference_row(split, tmp_path):
    from ioda.data.imresize import imresize

    csv_p, json_p = tmp_path / "b.csv", tmp_path / "b.json"
    assert cli.main(["evaluate", "--model", "bicubic", "--data", str(split), "--out-csv", str(csv_p),
                     "--out-json", str(json_p)]) == 0
    summary = json.loads(json_p.read_text())
    assert summary["model"] == "bicubic" and summary["scale"] == 4 and summary["model_sha256"] is None
    lr = np.asarray(Image.open(split / "LR_x4" / "a0.png"))
    hr = np.asarray(Image.open(split / "HR" / "a0.png"))
    row = next(csv.DictReader(open(csv_p)))
    assert float(row["psnr"]) == pytest.approx(calculate_psnr(imresize(lr, 4), hr, 4), abs=1e-5)


def test_wrong_preset_for_checkpoint_is_refused(split, tmp_path, capsys):
    model_p = tmp_path / "h.safetensors"
    save_model(build_model("hat_tiny", seed=0), model_p, "hat_tiny")
    rc = cli.main(["evaluate", "--model", str(model_p), "--preset", "safmn_tiny", "--data", str(split),
                   "--out-csv", str(tmp_path / "x.csv"), "--out-json", str(tmp_path / "x.json")])
    assert rc == 2 and "checkpoint is HAT x4, expected SAFMN x4" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_training_mode_is_restored(split):
    """Adaptation evaluates mid-training: evaluate_model must hand the module back in train mode."""
    net = build_model("safmn_tiny", seed=0).train()
    rows, _ = evaluate_model(net, split, 4)
    assert net.training and len(rows) == 3
    net.eval()
    evaluate_model(net, split, 4)
    assert not net.training


# ---- batched on-device evaluation, and the authors' HR crop (protocol row l) --------------------------------
def test_batched_torch_metrics_agree_with_ioda_metrics():
    from ioda.metrics_torch import psnr_batch, ssim_batch

    rng = np.random.default_rng(5)
    hr = rng.integers(0, 256, (3, 40, 36, 3)).astype(np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).double()  # noqa: E731
    for y in (True, False):
        p, s = psnr_batch(t(sr), t(hr), 4, y), ssim_batch(t(sr), t(hr), 4, y)
        for i in range(3):
            assert p[i].item() == pytest.approx(calculate_psnr(sr[i], hr[i], 4, test_y_channel=y), abs=1e-4)
            assert s[i].item() == pytest.approx(calculate_ssim(sr[i], hr[i], 4, test_y_channel=y), abs=1e-6)
    assert psnr_batch(t(hr), t(hr), 4)[0].item() == math.inf


class Blur(nn.Module):
    """A model with a non-trivial, batch-independent output (bilinear x4 + a fixed conv)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        torch.manual_seed(0)
        nn.init.normal_(self.conv.weight, 0.11, 0.02)

    def forward(self, x):
        return self.conv(nn.functional.interpolate(x, scale_factor=4, mode="bilinear"))


def test_device_evaluator_agrees_with_evaluate_model(split):
    from ioda.evaluate import DeviceEvaluator

    for model in (Nearest(), Blur()):
        rows, ref = evaluate_model(model, split, 4)
        for batch in (1, 2):
            ev = DeviceEvaluator(split, 4, batch_size=batch)
            got = ev(model)
            psnr, ssim = ev.scores(model)
            assert ev.names == [r["image"] for r in rows]
            for r, p, s in zip(rows, psnr, ssim):
                assert p == pytest.approx(r["psnr"], abs=1e-4) and s == pytest.approx(r["ssim"], abs=1e-6)
            assert got["mean_psnr"] == pytest.approx(ref["mean_psnr"], abs=1e-4)
            assert got["mean_ssim"] == pytest.approx(ref["mean_ssim"], abs=1e-6)
            assert got["n"] == ref["n"] and got["n_inf"] == ref["n_inf"]


def test_device_evaluator_computes_the_first_models_pass_once(split):
    """Every run of a cell starts from the source model: its step-0 pass is reused, any other model is scored."""
    from ioda.evaluate import DeviceEvaluator

    ev = DeviceEvaluator(split, 4)
    passes = []
    scores = ev.scores
    ev.scores = lambda m: passes.append(1) or scores(m)
    source = Blur()
    first = ev(source)
    copy_of_source = Blur()  # other module, equal weights: what each run's model is at step 0
    again = ev(copy_of_source)
    assert len(passes) == 1 and again == first and again is not first
    with torch.no_grad():
        copy_of_source.conv.weight.add_(1e-3)  # one adaptation step later
    moved = ev(copy_of_source)
    assert len(passes) == 2 and moved["mean_psnr"] != first["mean_psnr"]
    assert ev(source) == first and len(passes) == 2  # still the remembered one
    assert ev(copy_of_source) == moved and len(passes) == 3  # only the first model is remembered


def test_l_hr_larger_than_scale_x_lr_is_cropped_under_authors_else_refused(tmp_path):
    from ioda.evaluate import DeviceEvaluator

    rng = np.random.default_rng(1)
    root = tmp_path / "test"
    lr = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
    hr = rng.integers(0, 256, (50, 51, 3)).astype(np.uint8)  # 2 rows and 3 columns more than 4 x LR
    _write(root / "LR_x4" / "x.png", lr)
    _write(root / "HR" / "x.png", hr)
    with pytest.raises(IodaError, match="does not match"):
        evaluate_model(Nearest(), root, 4)
    with pytest.raises(IodaError, match="does not match"):
        DeviceEvaluator(root, 4)
    rows, summary = evaluate_model(Nearest(), root, 4, crop_hr=True)
    want = calculate_psnr(lr.repeat(4, 0).repeat(4, 1), hr[:48, :48], 4)  # BasicSR: gt[0:h*4, 0:w*4]
    assert rows[0]["psnr"] == pytest.approx(want) and summary["crop_hr"] is True
    assert DeviceEvaluator(root, 4, crop_hr=True)(Nearest())["mean_psnr"] == pytest.approx(want, abs=1e-4)


from ioda.evaluate import TILED_PSNR_DB, TILED_SSIM  # noqa: E402  (the stated tolerance of tiled scores)


def _photo_split(root: Path, size: int) -> Path:
    from skimage import data as skdata

    from ioda.data.imresize import imresize
    from ioda.imageio import write_image

    hr = np.concatenate([skdata.astronaut(), skdata.coffee()[:, :512]], axis=0)[: 4 * size, : 4 * size]
    write_image(root / "HR" / "p.png", hr)
    write_image(root / "LR_x4" / "p.png", imresize(hr, 1 / 4))
    return root


def test_tiled_evaluation_scores_equal_the_one_pass_within_the_stated_tolerance(tmp_path):
    split = _photo_split(tmp_path / "s", 200)
    model = build_model("safmn_tiny", seed=0).eval()
    (one,), s1 = evaluate_model(model, split, 4, tile=0)
    (tiled,), s2 = evaluate_model(model, split, 4, tile=64)
    assert s1["tile"] == 0 and s2["tile"] == 64
    assert abs(one["psnr"] - tiled["psnr"]) <= TILED_PSNR_DB and abs(one["ssim"] - tiled["ssim"]) <= TILED_SSIM
    assert (one["psnr"], one["ssim"]) != (tiled["psnr"], tiled["ssim"])  # the tiles did change the output


def test_evaluate_tiles_by_default_above_the_size(tmp_path, monkeypatch):
    import ioda.tiles as tiles

    split = _photo_split(tmp_path / "s", 100)
    ckpt = tmp_path / "m.safetensors"
    save_model(build_model("safmn_tiny", seed=0), ckpt, preset="safmn_tiny")

    def scores(tag, *extra):
        out = tmp_path / tag
        assert cli.main(["evaluate", "--model", str(ckpt), "--data", str(split), "--out-csv", f"{out}.csv",
                         "--out-json", f"{out}.json", "--device", "cpu", *extra]) == 0
        return Path(f"{out}.csv").read_text(), json.loads(Path(f"{out}.json").read_text())["tile"]

    monkeypatch.setattr(tiles, "AUTO_TILE_PIXELS", 50 * 50)  # the 100 x 100 LR photo is now "large"
    monkeypatch.setattr(tiles, "AUTO_TILE", 32)
    auto, tile = scores("auto")
    assert tile == "auto" and auto == scores("t32", "--tile", "32")[0] != scores("whole", "--tile", "0")[0]
