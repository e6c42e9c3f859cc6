"""Time and peak memory of tiled vs whole-image inference (ioda.archs.upscale).

Each case runs in a fresh subprocess so its peak resident memory (CPU) or peak allocated GPU memory
is its own. Prints a table and writes benchmarks/out/tiling.json. Usage:

    python benchmarks/tiling.py [--preset safmn_tiny] [--sizes 512 1024 2000] [--tile 128] [--overlap 8]
                                [--batch 4] [--device cpu] [--untiled-max 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "tiling.json"


def run_case(preset: str, size: int, tile: int, overlap: int, batch: int, device: str) -> dict:
    """Executed inside the child process."""
    import torch

    from ioda.archs import build_model, get_preset, upscale

    torch.manual_seed(0)
    dev = torch.device(device)
    net = build_model(preset, seed=0).eval().to(dev)
    lr = torch.rand(1, 3, size, size, device=dev)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated() / 2**20
    t0 = time.perf_counter()
    out = upscale(net, lr, get_preset(preset).scale, tile=tile, overlap=overlap, batch=batch, out_device="cpu")
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    res = {"preset": preset, "size": size, "tile": tile, "overlap": overlap, "batch": batch, "device": device,
           "seconds": round(seconds, 3), "out_shape": list(out.shape),
           "output_mib": round(out.numel() * out.element_size() / 2**20, 1),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "rss_before_mib": round(base_rss, 1)}
    if dev.type == "cuda":
        res["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20 - base_gpu, 1)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="safmn_tiny")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2000])
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--untiled-max", type=int, default=2000, help="skip whole-image runs above this size")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = ap.parse_args(argv)
    if args.case:
        size, tile = map(int, args.case.split(","))
        print(json.dumps(run_case(args.preset, size, tile, args.overlap, args.batch, args.device)))
        return 0
    results = []
    for size in args.sizes:
        for tile in ([0] if size <= args.untiled_max else []) + [args.tile]:
            cmd = [sys.executable, __file__, "--case", f"{size},{tile}", "--preset", args.preset,
                   "--overlap", str(args.overlap), "--batch", str(args.batch), "--device", args.device]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            if proc.returncode != 0:
                res = {"preset": args.preset, "size": size, "tile": tile, "error": proc.stderr.strip().splitlines()[-1:]}
            else:
                res = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(res)
            print(f"{size:>5}px tile {tile:>4}: " + (f"{res['seconds']:8.2f}s  peak RSS {res['peak_rss_mib']:8.1f} MiB"
                  f" (output {res['output_mib']} MiB)" + (f"  GPU {res['peak_gpu_mib']} MiB" if 'peak_gpu_mib' in res else "")
                  if "error" not in res else f"failed: {res['error']}"), flush=True)
    report = {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "processor": platform.processor()}, "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
