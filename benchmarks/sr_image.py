"""Peak memory of writing a photo's sr.png: ours (uint8 tiles into one uint8 buffer) vs the naive path.

naive: image_to_tensor(photo) -> upscale(..., tile) (whole-size float32 output) -> tensor_to_image (clamp,
mul, round copies of it) -- what `ioda adapt` did before tiled uint8 output (~14 GB for a 24-megapixel photo at x4).
ours:  ioda.archs.tiling.upscale_image(photo, tile): each window becomes float only while it is processed,
each core is quantised straight into the uint8 output.

Each case runs in a fresh subprocess, so its peak resident memory (CPU) or peak allocated GPU memory is its
own. "extra" = peak minus the memory held before the call (model + input photo) minus the uint8 output
itself (3 x scale^2 bytes per LR pixel, which any method must hold): the working memory. For ours it should
stay flat as the photo grows. Prints a table and writes benchmarks/out/sr_image.json. Usage:

    python benchmarks/sr_image.py [--preset safmn_tiny] [--sizes 256 512 1024 6000x4000] [--tile 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "sr_image.json"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_child(cmd: list[str], env: dict | None = None) -> dict:
    """One measurement in a fresh process (its peak RSS is its own): the JSON line it prints last. glibc raises its
    mmap threshold after big frees and then keeps freed buffers in the heap, so peak RSS would count memory
    already released; a fixed threshold makes RSS follow live memory."""
    env = {**(env or os.environ), "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_cases(out: str | Path, benchmark: str, rows: list[dict], **extra) -> None:
    """The benchmark's JSON: machine, Python, anything in `extra`, and one entry per measured case."""
    result = {"benchmark": benchmark, "machine": platform.platform(), "python": platform.python_version(), **extra,
              "cases": rows}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def _shape(size: str) -> tuple[int, int]:
    """'1024' -> (1024, 1024); '6000x4000' (W x H) -> (4000, 6000) as (H, W)."""
    w, _, h = size.partition("x")
    return (int(h or w), int(w))


def run_case(method: str, preset: str, size: str, tile: int, device: str) -> dict:
    """Executed inside the child process."""
    import numpy as np
    import torch

    from ioda.archs import build_model, get_preset, upscale
    from ioda.archs.tiling import upscale_image
    from ioda.imageio import image_to_tensor, tensor_to_image

    dev = torch.device(device)
    scale = get_preset(preset).scale
    net = build_model(preset, seed=0).eval().to(dev)
    h, w = _shape(size)
    photo = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    with torch.no_grad():  # warm-up on a small crop: allocator pools and kernels are not the photo's cost
        upscale_image(net, photo[:64, :64], scale, tile=0, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated() / 2**20
    base = rss_mib()
    t0 = time.perf_counter()
    with torch.no_grad():
        if method == "naive":
            out = tensor_to_image(upscale(net, image_to_tensor(photo).to(dev), scale, tile=tile, out_device="cpu"))
        else:
            out = upscale_image(net, photo, scale, tile=tile, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    out_mib = out.nbytes / 2**20
    peak = rss_mib()
    res = {"method": method, "preset": preset, "size": f"{w}x{h}", "megapixels": round(w * h / 1e6, 2),
           "tile": tile, "device": device, "seconds": round(seconds, 3), "output_mib": round(out_mib, 1),
           "peak_rss_mib": round(peak, 1), "rss_before_mib": round(base, 1),
           "extra_rss_mib": round(max(peak - base - out_mib, 0.0), 1)}
    if dev.type == "cuda":
        res["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20 - base_gpu, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="safmn_tiny")
    ap.add_argument("--sizes", nargs="+", default=["512", "1024", "1536"], help="LR sizes: N (square) or WxH")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "SIZE", "TILE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        method, size, tile = args.child
        print(json.dumps(run_case(method, args.preset, size, int(tile), args.device)))
        return 0
    rows = []
    for size in args.sizes:
        for method in ("naive", "ours"):
            cmd = [sys.executable, __file__, "--preset", args.preset, "--device", args.device,
                   "--child", method, size, str(args.tile)]
            rows.append(run_child(cmd))
            r = rows[-1]
            gpu = f"  gpu {r['peak_gpu_mib']:8.1f} MiB" if "peak_gpu_mib" in r else ""
            print(f"{r['method']:5s} {r['size']:>10s} ({r['megapixels']:5.2f} MP) tile {args.tile}: "
                  f"{r['seconds']:7.2f} s  output {r['output_mib']:7.1f} MiB  extra RSS {r['extra_rss_mib']:8.1f} MiB"
                  f"{gpu}", flush=True)
    write_cases(args.out, "sr_image", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
