"""Time one adaptation step three ways, side by side, on this machine:

- naive:  what the authors' loop does: all four encodings with autograd (encoder parameters not frozen), fp32;
- ours:   ioda's DirectionTrainer step: three encodings under no_grad (LR_S and LR_T batched), only
          E(M_T(LR_T)) differentiated, bf16 autocast on CUDA;
- floor:  the irreducible part: M_T forward+backward and one encoder forward+backward.

Presets: `demo` = the offline demo's settings (params.yaml: safmn_tiny, the tiny encoder, its batch and LR patch);
`paper` = config/paper.yaml's batch and LR patch with SAFMN-L, HAT and SRFormer and the ViT-B/16 Alpha-CLIP
(untrained weights: speed does not depend on them). Each mode is timed `--repeats` times, the modes interleaved
(a shared machine drifts), and the median s/step is reported. Goals (CPU demo preset): ours at least
1.5x faster than naive and within 1.15x of the floor.

fp32 vs fast (`--compare-numerics STEPS`): the fp32 eager reference against `--numerics fast` (bf16 autocast,
TF32, channels_last, torch.compile on CUDA; on a CPU fast is fp32 eager), per step, per 1500-step run, compile
time apart, peak memory, and the PSNR / weight drift between the two after STEPS steps from the same start.

K runs (`--runs K`, default 4; 0 skips): K adaptation runs (own photo, own seed, shared source model and encoder)
stepped one after another (K DirectionTrainers, each its own step) vs together (ioda.adapt.stacked: the K
target models in one vmap'd forward, one CLIP forward for all); reported as seconds per step of all K runs.

    python benchmarks/adapt_step.py                                  # demo preset, CPU
    python benchmarks/adapt_step.py --preset paper --device cuda     # the paper's networks on a GPU
Writes benchmarks/out/adapt_step-<preset>-<device type>.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ioda.adapt.batches import DirectionSampler, SourcePool
from ioda.adapt.stacked import StackedTrainers
from ioda.adapt.losses import direction_loss
from ioda.adapt.trainer import AdaptSettings, DirectionTrainer
from ioda.adapt.variants import get_variant
from ioda.archs import build_model
from ioda.encoders import build_encoder
from ioda.config import load_config, paper_config
from ioda.data.pairs import Pair
from ioda.imageio import write_image
from ioda.runtime import resolve_device

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


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
    with trainer.numerics.autocast(whole_step=True):
        e = trainer._encode(trainer._sr(trainer.forward_t, b.lr_t).clamp(0, 1), b.alpha_t_hr)
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
    return {"s_per_step": dt, "peak_mem_mib": peak}


def _one(mode: str, preset: str, encoder_name: str, lr_patch: int, batch: int, steps: int, device, world, tmp: Path):
    photo, labels, source = world
    torch.manual_seed(0)
    model = build_model(preset, seed=0)
    enc = build_encoder(encoder_name, seed=0, device=device)
    sampler = DirectionSampler(photo, labels, source, scale=4, lr_patch=lr_patch, batch_size=batch,
                               region="instance", occlusion=True, seed=0)
    settings = AdaptSettings(steps=steps, batch_size=batch, lr_patch=lr_patch, numerics="auto" if mode != "naive" else "fp32")
    tr = DirectionTrainer(model, enc, sampler, get_variant("ioda"), settings, device, tmp)
    if mode == "naive":
        trainable = copy.deepcopy(enc).requires_grad_(True)
        fn = lambda: _naive_step(tr, trainable)  # noqa: E731
    elif mode == "ours":
        fn = tr.train_step
    else:
        fn = lambda: _floor_step(tr)  # noqa: E731
    out = _time(fn, steps, warmup=2, device=device)
    del tr, enc, model, fn
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def bench(preset: str, encoder_name: str, lr_patch: int, batch: int, steps: int, repeats: int, device: torch.device,
          tmp: Path) -> dict:
    world = _world(tmp, lr_patch)
    times: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(repeats):
        for mode in MODES:  # interleaved, so drift on a shared machine hits every mode alike
            times[mode].append(_one(mode, preset, encoder_name, lr_patch, batch, steps, device, world, tmp))
    result = {"preset": preset, "encoder": encoder_name, "lr_patch": lr_patch, "batch": batch, "steps": steps,
              "repeats": repeats}
    for mode, runs in times.items():
        s = [r["s_per_step"] for r in runs]
        result[mode] = {"s_per_step": statistics.median(s), "all_s_per_step": s,
                        "steps_per_s": 1 / statistics.median(s), "peak_mem_mib": runs[-1]["peak_mem_mib"]}
    result["speedup_vs_naive"] = result["naive"]["s_per_step"] / result["ours"]["s_per_step"]
    result["ratio_to_floor"] = result["ours"]["s_per_step"] / result["floor"]["s_per_step"]
    return result


def _trainers(k: int, preset: str, encoder_name: str, lr_patch: int, batch: int, steps: int, device, world,
              tmp: Path) -> list[DirectionTrainer]:
    _, labels, source = world
    rng = np.random.default_rng(1)
    model = build_model(preset, seed=0)
    enc = build_encoder(encoder_name, seed=0, device=device)
    out = []
    for i in range(k):
        photo = rng.integers(0, 256, (labels.shape[0], labels.shape[1], 3), dtype=np.uint8)
        sampler = DirectionSampler(photo, labels, source, scale=4, lr_patch=lr_patch, batch_size=batch,
                                   region="instance", occlusion=True, seed=i)
        settings = AdaptSettings(steps=steps, batch_size=batch, lr_patch=lr_patch, seed=i)
        out.append(DirectionTrainer(model, enc, sampler, get_variant("ioda"), settings, device, tmp / f"run{i}"))
    return out


def bench_runs(k: int, preset: str, encoder_name: str, lr_patch: int, batch: int, steps: int, repeats: int,
               device: torch.device, tmp: Path) -> dict:
    """Seconds per step of all K runs: one after another vs stacked (interleaved repeats, median)."""
    world = _world(tmp, lr_patch)
    times: dict[str, list[float]] = {"one_after_another": [], "stacked": []}
    for _ in range(repeats):
        trainers = _trainers(k, preset, encoder_name, lr_patch, batch, steps, device, world, tmp)

        def sequential():
            for t in trainers:
                t.train_step()

        times["one_after_another"].append(_time(sequential, steps, warmup=2, device=device)["s_per_step"])
        stacked = StackedTrainers(_trainers(k, preset, encoder_name, lr_patch, batch, steps, device, world, tmp))
        times["stacked"].append(_time(stacked.train_step, steps, warmup=2, device=device)["s_per_step"])
    out = {"runs": k, **{m: {"s_per_step_all_runs": statistics.median(v), "all": v} for m, v in times.items()}}
    out["stacked_speedup"] = (out["one_after_another"]["s_per_step_all_runs"]
                              / out["stacked"]["s_per_step_all_runs"])
    return out


def _split(root: Path, n: int, hr_size: int, scale: int = 4) -> Path:
    """n synthetic HR/LR test pairs (smooth random texture) in the split layout DeviceEvaluator reads."""
    rng = np.random.default_rng(7)
    for i in range(n):
        base = rng.integers(0, 256, (hr_size // 8, hr_size // 8, 3)).astype(np.uint8)
        hr = np.repeat(np.repeat(base, 8, 0), 8, 1)
        lr = hr.reshape(hr_size // scale, scale, hr_size // scale, scale, 3).mean((1, 3)).round().astype(np.uint8)
        write_image(root / "HR" / f"t{i}.png", hr)
        write_image(root / f"LR_x{scale}" / f"t{i}.png", lr)
    return root


def bench_numerics(preset: str, encoder_name: str, lr_patch: int, batch: int, steps: int, warmup: int,
                   device: torch.device, tmp: Path, modes=("fp32", "fast"), protocol: str = "paper",
                   run_steps: int = 1500, test_images: int = 4) -> dict:
    """fp32 eager vs the fast path (ioda.train.numerics), one run each from the same start (weights, encoder,
    batches): every step timed on its own (device synchronised); the median over the steps after `warmup` (which
    hold the compilation: `compile_s` is their time beyond `warmup` median steps) times `run_steps` is a run's
    seconds; peak memory over the whole run; after the `steps` steps, PSNR of the adapted weights on the same
    synthetic test images (random-init network and untrained encoder: the delta measures the numerics' drift,
    not adaptation quality) and how far the weights moved apart."""
    from ioda.evaluate import DeviceEvaluator

    photo, labels, source = _world(tmp, lr_patch)
    evaluator = DeviceEvaluator(_split(tmp / "test", test_images, 2 * lr_patch), 4, device=device)
    out: dict = {"steps": steps, "warmup": warmup, "protocol": protocol, "run_steps": run_steps}
    weights = {}
    for mode in modes:
        torch.manual_seed(0)
        enc = build_encoder(encoder_name, seed=0, device=device, protocol=protocol)
        sampler = DirectionSampler(photo, labels, source, scale=4, lr_patch=lr_patch, batch_size=batch,
                                   region="instance", occlusion=True, seed=0)
        settings = AdaptSettings(steps=steps, batch_size=batch, lr_patch=lr_patch, numerics=mode, protocol=protocol)
        tr = DirectionTrainer(build_model(preset, seed=0), enc, sampler, get_variant("ioda"), settings, device,
                              tmp / mode)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        times = []
        with tr.numerics.precision():
            for _ in range(steps):
                t0 = time.perf_counter()
                tr.train_step()
                _sync(device)
                times.append(time.perf_counter() - t0)
        med = statistics.median(times[warmup:])
        out[mode] = {"s_per_step": med, "s_per_run": med * run_steps, "timed_steps": len(times) - warmup,
                     "first_steps_s": sum(times[:warmup]), "compile_s": max(0.0, sum(times[:warmup]) - warmup * med),
                     "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
                     "psnr": evaluator(tr.model_t.eval())["mean_psnr"], "numerics": tr.numerics.to_dict()}
        weights[mode] = torch.cat([v.detach().float().flatten().cpu() for v in tr.model_t.state_dict().values()])
        del tr, enc
    if len(modes) == 2:
        a, b = (weights[m] for m in modes)
        out["psnr_delta_db"] = out[modes[1]]["psnr"] - out[modes[0]]["psnr"]
        out["weights_max_abs_diff"] = (a - b).abs().max().item()
        out["weights_rel_l2"] = ((a - b).norm() / a.norm()).item()
        out["speedup"] = out[modes[0]]["s_per_step"] / out[modes[1]]["s_per_step"]
    return out


MODES = ("naive", "ours", "floor")
GOALS = {"speedup_vs_naive": 1.5, "ratio_to_floor": 1.15}  # for the CPU demo preset


def cases(preset: str) -> list[tuple[str, str, int, int]]:
    """(backbone preset, encoder, LR patch, batch) per network, from the config files (the one home of settings)."""
    if preset == "paper":
        a = paper_config()["adapt"]
        return [(b, "ViT-B-16-quickgelu", a["lr_patch"], a["batch_size"]) for b in ("safmn_l", "hat", "srformer")]
    cfg = load_config(ROOT / "params.yaml")
    backbone = next(iter(cfg["backbones"].values()))["preset"]
    return [(backbone, cfg["encoder"]["name"], cfg["adapt"]["lr_patch"], cfg["adapt"]["batch_size"])]


def write_result(out: Path, script: str, argv, payload: dict) -> None:
    """A benchmark's JSON: torch version, time and the command that made it, then its figures."""
    out.parent.mkdir(parents=True, exist_ok=True)
    head = {"torch": torch.__version__, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])}
    out.write_text(json.dumps(head | payload, indent=2) + "\n")
    print(f"wrote {out}")


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {os.cpu_count()} cores"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=("demo", "paper"), default="demo")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement (after 2 warm-up steps)")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per mode; the median is reported")
    ap.add_argument("--runs", type=int, default=4, help="K for the K-runs comparison (0: skip it)")
    ap.add_argument("--compare-numerics", type=int, default=0, metavar="STEPS",
                    help="also run fp32 eager vs --numerics fast for STEPS steps from the same start (timed after "
                    "--warmup steps; PSNR and weight drift after STEPS); 0 skips it")
    ap.add_argument("--warmup", type=int, default=10, help="steps before timing in --compare-numerics (compile)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: the preset config's run.threads, as "
                    "its jobs run; the demo: 1)")
    ap.add_argument("--out", help="result JSON (default: benchmarks/out/adapt_step-<preset>-<device type>.json)")
    args = ap.parse_args(argv)
    cfg = paper_config() if args.preset == "paper" else load_config(ROOT / "params.yaml")
    torch.set_num_threads(args.threads or cfg["run"]["threads"])
    device = resolve_device(args.device)
    rows = []
    for backbone, enc, patch, batch in cases(args.preset):
        with tempfile.TemporaryDirectory() as tmp:
            r = bench(backbone, enc, patch, batch, args.steps, args.repeats, device, Path(tmp))
        r["device"], r["hardware"] = str(device), hardware(device)
        rows.append(r)
        print(f"{backbone} on {r['hardware']} (encoder {enc}, batch {batch}, LR patch {patch}; median of "
              f"{args.repeats} x {args.steps} steps)")
        for mode in MODES:
            print(f"  {mode:6s} {r[mode]['s_per_step'] * 1000:9.1f} ms/step")
        print(f"  ours vs naive: {r['speedup_vs_naive']:.2f}x faster (goal >= {GOALS['speedup_vs_naive']}x on CPU)")
        print(f"  ours / floor:  {r['ratio_to_floor']:.2f}x (goal <= {GOALS['ratio_to_floor']}x on CPU)", flush=True)
        if args.runs:
            with tempfile.TemporaryDirectory() as tmp:
                r["k_runs"] = kr = bench_runs(args.runs, backbone, enc, patch, batch, args.steps, args.repeats,
                                              device, Path(tmp))
            print(f"  {args.runs} runs one after another {kr['one_after_another']['s_per_step_all_runs'] * 1000:9.1f} "
                  f"ms per step of all runs")
            print(f"  {args.runs} runs stacked           {kr['stacked']['s_per_step_all_runs'] * 1000:9.1f} "
                  f"ms per step of all runs ({kr['stacked_speedup']:.2f}x)", flush=True)
        if args.compare_numerics:
            with tempfile.TemporaryDirectory() as tmp:
                r["numerics"] = nr = bench_numerics(backbone, enc, patch, batch, args.compare_numerics, args.warmup,
                                                    device, Path(tmp))
            for mode in ("fp32", "fast"):
                m = nr[mode]
                print(f"  {mode:5s} {m['s_per_step'] * 1000:9.1f} ms/step, {m['s_per_run']:.1f} s per 1500 steps, "
                      f"compile {m['compile_s']:.1f} s, PSNR {m['psnr']:.3f} dB", flush=True)
            print(f"  fast vs fp32: {nr['speedup']:.2f}x, PSNR {nr['psnr_delta_db']:+.4f} dB, weights max "
                  f"|diff| {nr['weights_max_abs_diff']:.2e}", flush=True)
    out = Path(args.out) if args.out else OUT / f"adapt_step-{args.preset}-{device.type}.json"
    write_result(out, "adapt_step.py", argv, {"goals_cpu": GOALS, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
