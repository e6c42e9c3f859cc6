"""The adaptation engine end to end on tiny parts: trainer, checkpoint/resume, every variant, the CLI, bad input."""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from skimage import data as skdata

from ioda.adapt.batches import DirectionSampler, SourcePool
from ioda.adapt.cli import main as adapt_main
from ioda.adapt.trainer import AdaptSettings, DirectionTrainer
from ioda.adapt.variants import VARIANTS, get_variant
from ioda.archs import build_model, load_model, save_model
from ioda.clip import build_encoder
from ioda.data.imresize import imresize
from ioda.data.pairs import list_pairs
from ioda.errors import IodaError
from ioda.imageio import read_image, write_image
from ioda.masks import save_label_map

SCALE, PATCH = 4, 16


def _split(root: Path, images: list[np.ndarray]) -> Path:
    for i, hr in enumerate(images):
        write_image(root / "HR" / f"im{i}.png", hr)
        write_image(root / f"LR_x{SCALE}" / f"im{i}.png", imresize(hr, 1 / SCALE))
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    astro, coffee = skdata.astronaut(), skdata.coffee()
    source = _split(root / "source", [astro[:128, :128], astro[256:384, 256:384], coffee[:128, 200:328]])
    cat = skdata.chelsea()[:256, :256]
    rng = np.random.default_rng(0)
    noisy = np.clip(imresize(cat, 1 / SCALE).astype(float) + rng.normal(0, 8, (64, 64, 3)), 0, 255).astype(np.uint8)
    photo = root / "photo.png"
    write_image(photo, noisy)
    target_train = _split(root / "target_train", [cat[:128, :128], cat[128:, 128:]])
    ckpt = root / "safmn_tiny.safetensors"
    save_model(build_model("safmn_tiny", seed=0), ckpt, preset="safmn_tiny")
    labels = np.zeros((64, 64), np.int32)
    labels[:32, :40], labels[32:, :], labels[:32, 40:] = 1, 2, 3
    save_label_map(root / "labels.npz", labels, {"source": "test"})
    return {"root": root, "source": source, "photo": photo, "ckpt": ckpt, "target_train": target_train,
            "labels": root / "labels.npz", "labels_arr": labels}


def _trainer(world, tmp_path, variant="ioda", steps=20, lr=1e-3, seed=0, ckpt_every=10):
    model_s = load_model(world["ckpt"]).module
    enc = build_encoder("tiny", seed=0)
    v = get_variant(variant)
    source = SourcePool(list_pairs(world["source"], SCALE), SCALE, need_hr=v.reference == "hr")
    sampler = DirectionSampler(read_image(world["photo"]), world["labels_arr"], source, scale=SCALE, lr_patch=PATCH,
                               batch_size=2, region=v.region, occlusion=v.occlusion, seed=seed)
    settings = AdaptSettings(steps=steps, batch_size=2, lr_patch=PATCH, lr=lr, seed=seed, ckpt_every=ckpt_every,
                             log_every=5)
    return DirectionTrainer(model_s, enc, sampler, v, settings, torch.device("cpu"), tmp_path)


def _fixed_loss(trainer, batch):
    with torch.no_grad():
        n = batch.lr_t.shape[0]
        e_lr = trainer._encode(torch.cat([batch.lr_s, batch.lr_t]), torch.cat([torch.ones_like(batch.alpha_t),
                                                                               batch.alpha_t]))
        e_sr_s = trainer._encode(trainer.model_s(batch.lr_s).clamp(0, 1) * batch.keep_s_hr, None)
        e_sr_t = trainer._encode(trainer.model_t(batch.lr_t).clamp(0, 1) * batch.keep_t_hr, batch.alpha_t_hr)
        return trainer.loss_fn(e_lr[:n], e_lr[n:], e_sr_s, e_sr_t).item()


def test_training_lowers_the_loss_and_only_moves_the_target_model(world, tmp_path):
    torch.manual_seed(0)
    tr = _trainer(world, tmp_path, variant="image_guided", steps=20, lr=2e-3)
    probe = DirectionSampler(read_image(world["photo"]), None, tr.sampler.source, scale=SCALE, lr_patch=PATCH,
                             batch_size=8, seed=123).sample()
    before = _fixed_loss(tr, probe)
    source_before = {k: v.clone() for k, v in tr.model_s.state_dict().items()}
    stats = tr.run()
    after = _fixed_loss(tr, probe)
    assert after < before, (before, after)
    assert stats["steps"] == 20 and len(tr.loss_rows) == 20
    for k, v in tr.model_s.state_dict().items():
        assert torch.equal(v, source_before[k]), f"M_S changed at {k}"
    moved = [k for k, v in tr.model_t.state_dict().items() if not torch.equal(v, source_before[k])]
    assert moved, "gradients never reached M_T through the encoder"


def test_resume_is_bit_exact(world, tmp_path):
    torch.manual_seed(0)
    full = _trainer(world, tmp_path / "full", steps=20)
    full.run()
    torch.manual_seed(0)
    part = _trainer(world, tmp_path / "part", steps=10)
    part.run()
    assert (tmp_path / "part" / "checkpoint.pt").exists()
    torch.manual_seed(999)  # a different global state must not matter: the checkpoint carries the RNG states
    resumed = _trainer(world, tmp_path / "part", steps=20)
    resumed.run(resume=True)
    assert resumed.step == 20
    for (k, a), b in zip(full.model_t.state_dict().items(), resumed.model_t.state_dict().values()):
        assert torch.equal(a, b), f"resume diverged at {k}"
    assert [v for _, v in full.loss_rows] == [v for _, v in resumed.loss_rows]


def test_resume_refuses_changed_settings(world, tmp_path):
    _trainer(world, tmp_path, steps=4, ckpt_every=2).run()
    with pytest.raises(IodaError, match="cannot resume: checkpoint has lr=0.001, this run asks lr=0.0005"):
        _trainer(world, tmp_path, steps=8, lr=5e-4).run(resume=True)


def test_same_seed_same_weights_different_seed_different(world, tmp_path):
    runs = []
    for i, seed in enumerate((0, 0, 1)):
        torch.manual_seed(0)
        t = _trainer(world, tmp_path / str(i), steps=4, seed=seed)
        t.run()
        runs.append(torch.cat([p.flatten() for p in t.model_t.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(world, tmp_path, monkeypatch):
    tr = _trainer(world, tmp_path, steps=20, ckpt_every=5)
    calls = {"n": 0}
    real = tr.loss_fn

    def poisoned(*a):
        calls["n"] += 1
        loss = real(*a)
        return loss * float("nan") if calls["n"] > 7 else loss

    tr.loss_fn = poisoned
    with pytest.raises(IodaError, match="loss is nan at step 8.*last good checkpoint"):
        tr.run()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 5


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_runs_two_steps_through_the_cli(world, tmp_path, variant):
    out = tmp_path / variant
    args = [str(world["photo"]), "--model", str(world["ckpt"]), "--out-dir", str(out), "--variant", variant,
            "--source-data", str(world["source"]), "--labels", str(world["labels"]), "--encoder", "tiny",
            "--steps", "2", "--lr-patch", str(PATCH), "--target-train", str(world["target_train"]), "--device", "cpu"]
    assert adapt_main(args) == 0
    report = json.loads((out / "adapt.json").read_text())
    assert report["variant"]["name"] == variant
    assert report["stats"]["steps"] == (0 if variant == "baseline" else 2)
    sr = read_image(out / "sr.png")
    assert sr.shape == (64 * SCALE, 64 * SCALE, 3)
    adapted = load_model(out / "model.safetensors", preset="safmn_tiny")
    assert adapted.scale == SCALE
    assert not (out / "checkpoint.pt").exists()
    if variant not in ("baseline", "finetune", "zssr"):
        assert report["encoder"]["untrained"] is True
        log = (out / "train_log.csv").read_text().splitlines()
        assert log[0] == "step,loss" and len(log) == 3


def test_cli_computes_superpixel_labels_and_oracle_curve(world, tmp_path):
    out = tmp_path / "run"
    args = [str(world["photo"]), "--model", str(world["ckpt"]), "--out-dir", str(out), "--source-data",
            str(world["source"]), "--encoder", "tiny", "--steps", "4", "--lr-patch", str(PATCH),
            "--eval-data", str(world["target_train"]), "--eval-every", "2", "--device", "cpu"]
    assert adapt_main(args) == 0
    assert (out / "labels.npz").exists()
    curve = (out / "curve.csv").read_text().splitlines()
    assert curve[0] == "step,psnr,ssim" and [r.split(",")[0] for r in curve[1:]] == ["0", "2", "4"]
    psnrs = [float(r.split(",")[1]) for r in curve[1:]]
    assert all(np.isfinite(psnrs))
    info = json.loads((out / "adapt.json").read_text())
    # both statistics: the final step and the oracle best step (max of the curve, step 0 included)
    assert info["final"]["step"] == 4 and info["final"]["psnr"] == pytest.approx(psnrs[-1])
    assert info["best"]["psnr"] == pytest.approx(max(psnrs)) and info["best"]["step"] in (0, 2, 4)
    assert info["eval_seconds"] > 0 and info["seconds"] > 0 and info["stats"]["evaluations"] == 3
    assert info["protocol"] == "paper" and info["settings"]["protocol"] == "paper"


def _bad(world, tmp_path, *extra, photo=None):
    out = tmp_path / "bad"
    args = [str(photo or world["photo"]), "--model", str(world["ckpt"]), "--out-dir", str(out), "--source-data",
            str(world["source"]), "--encoder", "tiny", "--steps", "2", "--lr-patch", str(PATCH), *extra]
    with pytest.raises(IodaError) as err:
        adapt_main(args)
    assert not out.exists(), "a failed run left output behind"
    return str(err.value)


def test_bad_inputs_fail_cleanly(world, tmp_path):
    small = tmp_path / "small.png"
    write_image(small, np.zeros((10, 12, 3), np.uint8))
    assert "smaller than the LR patch size 16" in _bad(world, tmp_path, photo=small)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(Path(world["photo"]).read_bytes()[:200])
    assert "corrupt.png" in _bad(world, tmp_path, photo=corrupt)
    wrong = tmp_path / "wrong.npz"
    save_label_map(wrong, np.ones((10, 10), np.int32), {"source": "test"})
    assert "wrong.npz" in _bad(world, tmp_path, "--labels", str(wrong))
    assert "no_such_clip.pt" in _bad(world, tmp_path, "--encoder-weights", str(tmp_path / "no_such_clip.pt"))
    assert "no_such_sam.pth" in _bad(world, tmp_path, "--mask-source", "sam", "--sam-checkpoint",
                                     str(tmp_path / "no_such_sam.pth"))
    assert "finetune" in _bad(world, tmp_path, "--variant", "finetune")
    assert "hat_tiny" in _bad(world, tmp_path, "--preset", "hat_tiny")


def test_encoder_auto_falls_back_to_untrained_tiny_offline_and_says_so(world, tmp_path, monkeypatch, capsys):
    import ioda.clip.loading as loading

    # No network in tests: pretend the hub is unreachable and nothing is cached.
    monkeypatch.setattr(loading, "_host_reachable", lambda *a, **k: False)
    monkeypatch.setattr(loading, "_cached_weights", lambda cfg: None)
    out = tmp_path / "auto"
    args = [str(world["photo"]), "--model", str(world["ckpt"]), "--out-dir", str(out), "--variant", "image_guided",
            "--source-data", str(world["source"]), "--steps", "2", "--lr-patch", str(PATCH), "--device", "cpu"]
    assert adapt_main(args) == 0
    report = json.loads((out / "adapt.json").read_text())
    assert report["encoder"]["untrained"] is True and "tiny" in report["encoder"]["description"]
    assert "falling back to the UNTRAINED tiny encoder" in capsys.readouterr().err


# -- the Python API ----------------------------------------------------------------------------------------------
def test_api_adapt_equals_the_cli_bit_for_bit_and_leaves_the_source_model_alone(world, tmp_path):
    from ioda.adapt import AdaptResult, AdaptSettings as Settings, adapt
    from safetensors.torch import load_file

    out = tmp_path / "cli"
    assert adapt_main([str(world["photo"]), "--model", str(world["ckpt"]), "--out-dir", str(out), "--source-data",
                       str(world["source"]), "--labels", str(world["labels"]), "--encoder", "tiny", "--steps", "3",
                       "--lr-patch", str(PATCH), "--settings", "cpu", "--seed", "3", "--device", "cpu"]) == 0
    loaded = load_model(world["ckpt"])
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    torch.manual_seed(123)  # whatever ran before, adapt() seeds from settings.seed
    result = adapt(loaded, read_image(world["photo"]), variant="ioda", settings=Settings(steps=3, lr_patch=PATCH, seed=3),
                   encoder=build_encoder("tiny", seed=3), source=world["source"], labels=world["labels_arr"])
    assert isinstance(result, AdaptResult) and result.stats["steps"] == 3 and not result.model.training
    cli_weights = load_file(out / "model.safetensors")
    got = result.model.state_dict()
    assert set(cli_weights) == set(got) and all(torch.equal(cli_weights[k], got[k]) for k in got)
    assert any(not torch.equal(before[k], got[k]) for k in got)
    assert all(torch.equal(before[k], v) for k, v in loaded.module.state_dict().items())


def test_api_work_dir_keeps_the_logs_and_the_baselines_need_no_encoder(world, tmp_path):
    from ioda.adapt import AdaptSettings as Settings, adapt

    model = load_model(world["ckpt"]).module
    photo = read_image(world["photo"])
    res = adapt(model, world["photo"], variant="zssr", settings=Settings(steps=2, lr_patch=PATCH), scale=SCALE,
                work_dir=tmp_path / "zssr")
    assert res.stats["steps"] == 2 and (tmp_path / "zssr" / "train_log.csv").is_file()
    assert adapt(model, photo, variant="baseline", scale=SCALE).model is model
    with pytest.raises(IodaError, match="needs an image encoder"):
        adapt(model, photo, variant="ioda", scale=SCALE)
    with pytest.raises(IodaError, match="scale is unknown"):
        adapt(model, photo, variant="zssr")


def test_many_images_in_one_process_equal_runs_of_their_own(world, tmp_path):
    """--index 0 1: model, encoder and source load once; each image's files equal a single-image run's, bit for
    bit (the training state is re-seeded per image)."""
    pool = tmp_path / "pool"
    pool.mkdir()
    write_image(pool / "a.png", read_image(world["photo"]))
    write_image(pool / "b.png", imresize(skdata.coffee()[:256, :256], 1 / SCALE))
    common = ["--model", str(world["ckpt"]), "--source-data", str(world["source"]), "--encoder", "tiny",
              "--steps", "3", "--lr-patch", str(PATCH), "--device", "cpu", "--variant", "occlusion"]
    assert adapt_main(["--pool", str(pool), "--index", "0", "1", "--out-dir", str(tmp_path / "cell"), *common]) == 0
    for i in (1, 0):
        single = tmp_path / f"single{i}"
        assert adapt_main(["--pool", str(pool), "--index", str(i), "--out-dir", str(single), *common]) == 0
        for name in ("model.safetensors", "sr.png", "train_log.csv"):
            assert (tmp_path / "cell" / f"img{i}" / name).read_bytes() == (single / name).read_bytes(), name
        report = json.loads((tmp_path / "cell" / f"img{i}" / "adapt.json").read_text())
        assert report["photo"]["path"].endswith("ab"[i] + ".png")
    assert (tmp_path / "cell" / "img0" / "model.safetensors").read_bytes() != \
        (tmp_path / "cell" / "img1" / "model.safetensors").read_bytes()
    with pytest.raises(IodaError, match="several images need --pool"):
        adapt_main([str(world["photo"]), "--index", "0", "1", "--out-dir", str(tmp_path / "bad"), *common])
    with pytest.raises(IodaError, match="one label map per --index"):
        adapt_main(["--pool", str(pool), "--index", "0", "1", "--labels", str(world["labels"]),
                    "--out-dir", str(tmp_path / "bad"), *common])


def test_stacked_cell_equals_runs_of_their_own_within_tolerance(world, tmp_path):
    """--stack: the images' steps are taken together (ioda.adapt.stacked); each image's weights, loss log and
    curve equal its own run's up to float reassociation; the files and their layout are the same."""
    pool = tmp_path / "pool"
    pool.mkdir()
    write_image(pool / "a.png", read_image(world["photo"]))
    write_image(pool / "b.png", imresize(skdata.coffee()[:256, :256], 1 / SCALE))
    common = ["--model", str(world["ckpt"]), "--source-data", str(world["source"]), "--encoder", "tiny",
              "--steps", "3", "--lr-patch", str(PATCH), "--device", "cpu", "--variant", "occlusion", "--lr", "1e-3",
              "--eval-every", "2", "--eval-data", str(world["target_train"]), "--pool", str(pool), "--index", "0", "1"]
    assert adapt_main([*common, "--out-dir", str(tmp_path / "seq")]) == 0
    assert adapt_main([*common, "--out-dir", str(tmp_path / "stacked"), "--stack"]) == 0
    moved = 0.0
    for i in (0, 1):
        seq, st = tmp_path / "seq" / f"img{i}", tmp_path / "stacked" / f"img{i}"
        assert sorted(p.name for p in st.iterdir()) == sorted(p.name for p in seq.iterdir())
        a, b = load_file(seq / "model.safetensors"), load_file(st / "model.safetensors")
        for k in a:
            # Adam divides by sqrt(v): a near-zero gradient summed in another order moves its weight differently;
            # measured up to 3e-6 here, 1% of one step at lr 1e-3 is the bound
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5, msg=k)
        moved = max(moved, max(float((a[k] - load_file(world["ckpt"])[k]).abs().max()) for k in a))
        log_a, log_b = pd.read_csv(seq / "train_log.csv"), pd.read_csv(st / "train_log.csv")
        assert list(log_a["step"]) == list(log_b["step"]) == [1, 2, 3]
        np.testing.assert_allclose(log_b["loss"], log_a["loss"], rtol=0, atol=1e-5)
        curve_a, curve_b = pd.read_csv(seq / "curve.csv"), pd.read_csv(st / "curve.csv")
        assert list(curve_a["step"]) == list(curve_b["step"]) == [0, 2, 3]
        np.testing.assert_allclose(curve_b["psnr"], curve_a["psnr"], rtol=0, atol=1e-3)
        report = json.loads((st / "adapt.json").read_text())
        assert report["settings"]["stacked_runs"] is True and report["final"]["step"] == 3
    assert moved > 1e-4  # the runs trained: the tolerance is far below the change
    with pytest.raises(IodaError, match="--stack: stacking runs is for the direction-loss variants"):
        adapt_main([*common, "--variant", "zssr", "--stack", "--out-dir", str(tmp_path / "bad")])
    with pytest.raises(IodaError, match="--stack: stacked runs do not checkpoint"):
        adapt_main([*common, "--stack", "--resume", "--out-dir", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()


# ---- adapt.protocol rows g, j, k, i through the trainer and the CLI --------------------------------
def _protocol_trainer(world, tmp_path, protocol, eval_fn=None, eval_every=0, steps=2, **sampler_opts):
    from ioda.protocol import get_protocol

    p = get_protocol(protocol)
    v = get_variant("occlusion")
    source = SourcePool(list_pairs(world["source"], SCALE), SCALE, need_hr=False)
    sampler = DirectionSampler(read_image(world["photo"]), None, source, scale=SCALE, lr_patch=PATCH, batch_size=2,
                               region=v.region, occlusion=True, seed=0, hr_mask=p.hr_mask,
                               occlusion_partial_cells=p.occlusion_cells == "partial", **sampler_opts)
    settings = AdaptSettings(steps=steps, batch_size=2, lr_patch=PATCH, lr=1e-3, loss=p.loss, protocol=protocol,
                             ckpt_every=0, log_every=1, eval_every=eval_every)
    enc = build_encoder("tiny", seed=0, protocol=protocol)
    return DirectionTrainer(load_model(world["ckpt"]).module, enc, sampler, v, settings, torch.device("cpu"),
                            tmp_path, eval_fn)


@pytest.mark.parametrize("protocol", ["authors", "paper"])
def test_g_gradient_reaches_occluded_sr_cells_only_under_authors(world, tmp_path, protocol):
    # every sample occluded (8-px LR cells of the 16-px crops, each dropped with p=0.5)
    trainer = _protocol_trainer(world, tmp_path, protocol, occlusion_p=1.0, occlusion_cell=8, occlusion_cell_p=0.5)
    batches, sample = [], trainer.sampler.sample
    trainer.sampler.sample = lambda: batches.append(sample()) or batches[-1]
    grads = []
    def keep_grad(module, inputs, out):
        out.register_hook(grads.append)  # returns None: the output itself is not replaced

    trainer.model_t.register_forward_hook(keep_grad)
    trainer.train_step()
    g, hidden = grads[0], batches[0].keep_t_hr.expand_as(grads[0]) == 0  # SR pixels of occluded LR cells
    assert hidden.any() and not hidden.all()
    if protocol == "authors":
        assert torch.count_nonzero(g[hidden]) > 0.9 * hidden.sum()  # the raw SR output there gets a gradient
    else:
        assert torch.count_nonzero(g[hidden]) == 0  # SR multiplied by the keep mask: no gradient there
        assert torch.count_nonzero(g[~hidden]) > 0


def test_j_best_step_is_the_max_of_the_curve_with_step_0_and_k_eval_time_is_apart(world, tmp_path):
    calls = []

    def fake_eval(model):  # the source model (step 0) is the best: the oracle may pick it
        calls.append(model.training)
        time.sleep(0.02)
        return {"mean_psnr": 30.0 - len(calls), "mean_ssim": 0.5}

    trainer = _protocol_trainer(world, tmp_path, "authors", fake_eval, eval_every=2, steps=4)
    stats = trainer.run()
    assert [c["step"] for c in trainer.curve] == [0, 2, 4] and calls == [False, False, False]
    assert stats["best"] == {"step": 0, "psnr": 29.0, "ssim": 0.5}
    assert stats["final"] == {"step": 4, "psnr": 27.0, "ssim": 0.5}
    assert stats["eval_seconds"] >= 0.06 and stats["evaluations"] == 3
    assert stats["seconds_with_eval"] == pytest.approx(stats["seconds"] + stats["eval_seconds"])
    assert trainer.model_t.training  # handed back in training mode


def test_cli_authors_protocol_records_it_and_i_plain_clip_under_paper(world, tmp_path):
    base = [str(world["photo"]), "--model", str(world["ckpt"]), "--source-data", str(world["source"]),
            "--encoder", "tiny", "--alpha-init", "random", "--steps", "2", "--lr-patch", str(PATCH),
            "--device", "cpu", "--no-sr", "--variant", "image_guided", "--settings", "paper"]
    infos = {}
    for protocol in ("authors", "paper"):
        out = tmp_path / protocol
        assert adapt_main([*base, "--out-dir", str(out), "--protocol", protocol,
                           "--eval-data", str(world["target_train"])]) == 0
        infos[protocol] = json.loads((out / "adapt.json").read_text())
    a, p = infos["authors"], infos["paper"]
    assert a["protocol"] == "authors" and a["protocol_settings"]["loss"] == "direction_lrsim"
    assert a["protocol_settings"]["clip_input"] == "gan_quirk" and a["protocol_settings"]["plain_clip"] is False
    assert "alpha conv random" in a["encoder"]["description"]  # Alpha-CLIP with a full mask
    assert p["protocol_settings"]["plain_clip"] is True and "alpha conv zero" in p["encoder"]["description"]
    # --settings paper (config/paper.yaml): eval every 10 steps -> steps 0 and the last (2)
    assert [a["final"]["step"], a["stats"]["evaluations"]] == [2, 2] == [p["final"]["step"], p["stats"]["evaluations"]]
    assert a["best"]["psnr"] >= a["final"]["psnr"]
