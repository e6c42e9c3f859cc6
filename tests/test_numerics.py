"""Numerics settings (ioda.train.numerics): what each mode means per device and protocol, that none of them changes
a CPU run, and that the fast path's parts (torch.compile, bf16 autocast) run on a CPU when asked for by hand."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

from ioda.adapt.batches import DirectionSampler, SourcePool
from ioda.adapt.cli import main as adapt_main
from ioda.adapt.trainer import AdaptSettings, DirectionTrainer
from ioda.adapt.variants import get_variant
from ioda.archs import build_model, save_model
from ioda.clip import build_encoder
from ioda.data.imresize import imresize
from ioda.data.pairs import PairedPatches, list_pairs
from ioda.errors import IodaError
from ioda.imageio import write_image
from ioda.train.numerics import MODES, Numerics
from ioda.train.supervised import train_supervised

ROOT = Path(__file__).resolve().parents[1]
SCALE, PATCH = 4, 16
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
# another kernel order vs eager after 3 Adam steps at lr 1e-3 on a CPU. Bound on weights: Adam divides by each
# gradient's own RMS, so a rounding-level gradient can move a weight by up to lr per step (3 steps: 3e-3). Measured
# for compile (SR network and encoder tower): weights 2.3e-7, SR output 1.1e-6 (one 8-bit level is 3.9e-3).
WEIGHT_TOL, OUTPUT_TOL = 3e-3, 1e-5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("numerics")
    astro = skdata.astronaut()
    for i, hr in enumerate([astro[:128, :128], astro[256:384, 256:384]]):
        write_image(root / "source" / "HR" / f"im{i}.png", hr)
        write_image(root / "source" / f"LR_x{SCALE}" / f"im{i}.png", imresize(hr, 1 / SCALE))
    photo = imresize(skdata.chelsea()[:256, :256], 1 / SCALE)
    write_image(root / "photo.png", photo)
    labels = np.zeros((64, 64), np.int32)
    labels[:32, :40], labels[32:, :], labels[:32, 40:] = 1, 2, 3
    ckpt = root / "safmn_tiny.safetensors"
    save_model(build_model("safmn_tiny", seed=0), ckpt, preset="safmn_tiny")
    return {"root": root, "photo": photo, "labels": labels, "ckpt": ckpt}


def _run(world, tmp_path, numerics, steps=3, protocol="paper"):
    torch.manual_seed(0)
    enc = build_encoder("tiny", seed=0, protocol=protocol)
    source = SourcePool(list_pairs(world["root"] / "source", SCALE), SCALE, need_hr=False)
    sampler = DirectionSampler(world["photo"], world["labels"], source, scale=SCALE, lr_patch=PATCH, batch_size=2,
                               region="instance", occlusion=True, seed=0)
    settings = AdaptSettings(steps=steps, batch_size=2, lr_patch=PATCH, lr=1e-3, seed=0, log_every=1,
                             numerics=numerics, protocol=protocol)
    tr = DirectionTrainer(build_model("safmn_tiny", seed=0), enc, sampler, get_variant("ioda"), settings, CPU,
                          tmp_path)
    tr.run()
    return tr


def _weights(tr):
    return {k: v.clone() for k, v in tr.model_t.state_dict().items()}


# ---- what each mode means ---------------------------------------------------------------------------------------
def test_modes_per_device_and_protocol():
    for mode in MODES:  # on a CPU every mode is fp32 eager, PyTorch's settings untouched
        n = Numerics.resolve(mode, CPU)
        assert not (n.autocast_sr or n.autocast_encoder or n.compile_sr or n.compile_encoder or n.channels_last)
        assert n.tf32 is None and n.mode == mode
    auto = Numerics.resolve("auto", CUDA)
    assert auto.autocast_sr and auto.autocast_encoder and auto.tf32 is None and not auto.compile_sr
    authors = Numerics.resolve("auto", CUDA, fp32_default=True)  # the authors' precision: SR fp32, CLIP fp16
    assert not (authors.autocast_sr or authors.autocast_encoder or authors.compile_sr)
    fp32 = Numerics.resolve("fp32", CUDA)
    assert fp32.tf32 is False and not (fp32.autocast_sr or fp32.compile_sr or fp32.channels_last)
    fast = Numerics.resolve("fast", CUDA)
    assert fast.autocast_sr and fast.autocast_encoder and fast.tf32 and fast.channels_last
    assert fast.compile_sr and fast.compile_encoder
    fast_authors = Numerics.resolve("fast", CUDA, fp32_default=True)  # asked for: SR bf16, the fp16 CLIP kept
    assert fast_authors.autocast_sr and not fast_authors.autocast_encoder
    assert Numerics.resolve("auto", CPU, channels_last=True).channels_last
    hand = Numerics(compile_sr=True)
    assert Numerics.resolve(hand, CUDA) == hand
    with pytest.raises(IodaError, match="numerics: unknown 'turbo'"):
        Numerics.resolve("turbo", CPU)


def test_precision_sets_tf32_and_restores_it():
    mm, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (mm.fp32_precision, conv.fp32_precision)
    with Numerics(device_type="cuda", tf32=True).precision():
        assert (mm.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
    with Numerics(device_type="cuda", tf32=False).precision():
        assert (mm.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
    with Numerics(device_type="cpu", tf32=True).precision(), Numerics.resolve("auto", CUDA).precision():
        assert (mm.fp32_precision, conv.fp32_precision) == before
    assert (mm.fp32_precision, conv.fp32_precision) == before


# ---- CPU runs are unchanged ---------------------------------------------------------------------------------------
def test_every_mode_gives_the_same_weights_on_cpu(world, tmp_path):
    """auto, fp32 and fast on a CPU: bit for bit the plain fp32 eager run (Numerics(): nothing set)."""
    ref = _weights(_run(world, tmp_path / "plain", Numerics()))
    for mode in MODES:
        got = _weights(_run(world, tmp_path / mode, mode))
        assert all(torch.equal(ref[k], got[k]) for k in ref), mode
    for protocol in ("authors",):
        a, b = (_weights(_run(world, tmp_path / f"{protocol}{m}", m, protocol=protocol)) for m in ("auto", "fast"))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_channels_last_on_cpu_runs_and_stays_close(world, tmp_path):
    ref = _weights(_run(world, tmp_path / "ref", "auto"))
    cl = _run(world, tmp_path / "cl", Numerics(channels_last=True))
    conv = next(m for m in cl.model_t.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    got = _weights(cl)
    assert max((ref[k] - got[k]).abs().max().item() for k in ref) < WEIGHT_TOL


def test_bf16_autocast_on_cpu_only_when_asked(world, tmp_path):
    ref = _run(world, tmp_path / "ref", "auto")
    amp = _run(world, tmp_path / "amp", Numerics(autocast_sr=True))
    a, b = _weights(ref), _weights(amp)
    assert any(not torch.equal(a[k], b[k]) for k in a), "autocast asked for but the SR network ran in fp32"
    assert all(torch.isfinite(v).all() for v in b.values()) and all(np.isfinite(v) for _, v in amp.loss_rows)
    lr = torch.rand(1, 3, PATCH, PATCH)
    assert amp._sr(amp.forward_t, lr).dtype == torch.float32  # leaves the SR region in fp32 (encoder not autocast)


@pytest.mark.slow
def test_compile_on_cpu_matches_eager(world, tmp_path):
    """torch.compile of the SR network and the encoder tower on a tiny preset: runs, and after 3 steps the weights
    and SR output are within the stated tolerance of eager (first run compiles: about a minute on 2 cores)."""
    eager = _run(world, tmp_path / "eager", "auto")
    comp = _run(world, tmp_path / "compiled", Numerics(compile_sr=True, compile_encoder=True))
    assert comp.forward_t is not comp.model_t  # the compiled wrapper trained ...
    assert not any(k.startswith("_orig_mod") for k in comp.model_t.state_dict())  # ... the plain module's weights
    a, b = _weights(eager), _weights(comp)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < WEIGHT_TOL
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert (eager.model_t.eval()(x) - comp.model_t.eval()(x)).abs().max().item() < OUTPUT_TOL
    assert [round(v, 4) for _, v in eager.loss_rows] == [round(v, 4) for _, v in comp.loss_rows]


# ---- pre-training and the command line ------------------------------------------------------------------------
def test_pretraining_modes_on_cpu_are_bit_equal(world, tmp_path):
    data = PairedPatches(list_pairs(world["root"] / "source", SCALE), SCALE, 12, seed=0, length=8)
    out = []
    for numerics in (None, *(Numerics.resolve(m, CPU) for m in MODES)):
        model = build_model("safmn_tiny", seed=0)
        train_supervised(model, data, steps=2, batch_size=2, lr=1e-3, numerics=numerics)
        out.append(model.state_dict())
    for sd in out[1:]:
        assert all(torch.equal(out[0][k], sd[k]) for k in sd)


def test_cli_numerics_fast_on_cpu_writes_the_same_model_and_records_it(world, tmp_path):
    files = {}
    for mode in ("auto", "fast"):
        out = tmp_path / mode
        rc = adapt_main([str(world["root"] / "photo.png"), "--model", str(world["ckpt"]), "--out-dir", str(out),
                         "--source-data", str(world["root"] / "source"), "--encoder", "tiny", "--steps", "2",
                         "--lr-patch", str(PATCH), "--device", "cpu", "--no-sr", "--numerics", mode])
        assert rc == 0
        files[mode] = (out / "model.safetensors").read_bytes()
        assert json.loads((out / "adapt.json").read_text())["settings"]["numerics"] == mode
    assert files["auto"] == files["fast"]


def test_workflow_passes_numerics_only_when_set(tmp_path):
    """run.numerics reaches `ioda adapt` and `ioda pretrain`; the default `auto` leaves their commands as they were
    (so existing results are not rerun)."""
    env = dict(os.environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")

    def commands(numerics=""):
        run = f"{{device: cpu, data_dir: '{tmp_path / 'd'}', results_dir: '{tmp_path / 'r'}'{numerics}}}"
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--config", f"run={run}"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return [ln for ln in proc.stdout.splitlines() if "-m ioda adapt " in ln or "-m ioda pretrain " in ln]

    plain = commands()
    assert plain and not any("--numerics" in c for c in plain)
    fast = commands(", numerics: fast")
    assert len(fast) == len(plain) and all("--numerics fast" in c for c in fast if "--data" in c or "adapt" in c)
