"""Time one adaptation step three ways, side by side, on this machine:

- naive:  what the authors' loop does: all four encodings with autograd (encoder parameters not frozen), fp32;
- ours:   ioda's DirectionTrainer step: three encodings under no_grad (LR_S and LR_T batched), only
          E(M_T(LR_T)) differentiated, bf16 autocast on CUDA;
- floor:  the irreducible part: M_T forward+backward and one encoder forward+backward.

CPU: the tiny preset with the tiny encoder. CUDA (when present): the paper presets SAFMN-L, HAT, SRFormer with
ViT-B/16 Alpha-CLIP (untrained weights: speed does not depend on them), batch 2, LR patch 128.
Prints a table and writes benchmarks/out/adapt_step.json. Usage: python benchmarks/adapt_step.py [--steps N]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ioda.adapt.batches import DirectionSampler, SourcePool
from ioda.adapt.losses import direction_loss
from ioda.adapt.trainer import AdaptSettings, DirectionTrainer
from ioda.adapt.variants import get_variant
from ioda.archs import build_model
from ioda.clip import build_encoder
from ioda.data.pairs import Pair
from ioda.imageio import write_image

OUT = Path(__file__).parent / "out"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _world(tmp: Path, lr_patch: int, scale: int = 4):
    rng = np.random.default_rng(0)
    size = max(2 * lr_patch, 64)
    pairs = []
    for i in range(4):
        lr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        hr = np.repeat(np.repeat(lr, scale, 0), scale, 1)
        write_image(tmp / f"lr{i}.png", lr)
        write_image(tmp / f"hr{i}.png", hr)
        pairs.append(Pair(f"{i}", tmp / f"lr{i}.png", tmp / f"hr{i}.png"))
    photo = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    labels = (np.arange(size * size).reshape(size, size) // (size * size // 6) + 1).astype(np.int32)
    return photo, labels, SourcePool(pairs, scale, need_hr=False)


def _naive_step(trainer: DirectionTrainer, encoder_trainable: torch.nn.Module) -> None:
    b = trainer.sampler.sample().to(trainer.device)
    enc = encoder_trainable
    e_lr_s = enc.encode_image(b.lr_s, None)
    e_lr_t = enc.encode_image(b.lr_t, b.alpha_t)
    e_sr_s = enc.encode_image(trainer.model_s(b.lr_s).clamp(0, 1) * b.keep_s_hr, None)
    e_sr_t = enc.encode_image(trainer.model_t(b.lr_t).clamp(0, 1) * b.keep_t_hr, b.alpha_t_hr)
    loss = direction_loss(e_lr_s, e_lr_t, e_sr_s, e_sr_t)
    trainer.opt.zero_grad(set_to_none=True)
    loss.backward()
    trainer.opt.step()


def _floor_step(trainer: DirectionTrainer) -> None:
    b = trainer.sampler.sample().to(trainer.device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=trainer.amp):
        e = trainer._encode(trainer.model_t(b.lr_t).clamp(0, 1), b.alpha_t_hr)
        loss = e.float().square().mean()
    trainer.opt.zero_grad(set_to_none=True)
    loss.backward()
    trainer.opt.step()


def _time(fn, steps: int, warmup: int, device) -> dict:
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"s_per_step": dt, "steps_per_s": 1 / dt, "peak_mem_mib": peak}


def bench(preset: str, encoder_name: str, lr_patch: int, batch: int, steps: int, device: torch.device, tmp: Path):
    photo, labels, source = _world(tmp, lr_patch)
    result = {"preset": preset, "encoder": encoder_name, "lr_patch": lr_patch, "batch": batch}
    for mode in ("naive", "ours", "floor"):
        torch.manual_seed(0)
        model = build_model(preset, seed=0)
        enc = build_encoder(encoder_name, seed=0, device=device)
        sampler = DirectionSampler(photo, labels, source, scale=4, lr_patch=lr_patch, batch_size=batch,
                                   region="instance", occlusion=True, seed=0)
        settings = AdaptSettings(steps=steps, batch_size=batch, lr_patch=lr_patch, amp="auto" if mode != "naive" else "off")
        tr = DirectionTrainer(model, enc, sampler, get_variant("ioda"), settings, device, tmp)
        if mode == "naive":
            trainable = copy.deepcopy(enc).requires_grad_(True)
            fn = lambda: _naive_step(tr, trainable)  # noqa: E731
        elif mode == "ours":
            fn = tr.train_step
        else:
            fn = lambda: _floor_step(tr)  # noqa: E731
        result[mode] = _time(fn, steps, warmup=2, device=device)
        tr = enc = model = None  # free before the next mode
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result["speedup_vs_naive"] = result["naive"]["s_per_step"] / result["ours"]["s_per_step"]
    result["ratio_to_floor"] = result["ours"]["s_per_step"] / result["floor"]["s_per_step"]
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default=str(OUT / "adapt_step.json"))
    args = ap.parse_args(argv)
    import tempfile

    cases = [("cpu", "safmn_tiny", "tiny", 32, 2)]
    if torch.cuda.is_available():
        cases += [("cuda", p, "ViT-B-16-quickgelu", 128, 2) for p in ("safmn_l", "hat", "srformer")]
    rows = []
    for dev, preset, enc, patch, batch in cases:
        with tempfile.TemporaryDirectory() as tmp:
            r = bench(preset, enc, patch, batch, args.steps, torch.device(dev), Path(tmp))
        r["device"] = torch.cuda.get_device_name() if dev == "cuda" else f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
        rows.append(r)
        print(f"{preset:12s} {dev:5s} naive {r['naive']['s_per_step']:.4f} s/step | ours {r['ours']['s_per_step']:.4f} "
              f"| floor {r['floor']['s_per_step']:.4f} | x{r['speedup_vs_naive']:.2f} vs naive, "
              f"{r['ratio_to_floor']:.2f} x floor", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"torch": torch.__version__, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
