"""Process start of each `ioda` command: the seconds `import <its module>` takes in a fresh interpreter, and
which heavy libraries that import pulls in (torch, spandrel, torchvision, torch._dynamo, open_clip), for this
tree and optionally another checkout side by side (e.g. an older commit: `git worktree add /tmp/old REV`).

Every workflow job starts a process, so what a command imports before it does any work is paid once per job.
Each module is imported `--repeats` times, alternating between the trees (a shared machine drifts), and the
median is reported. Also `ioda.plan`, which the Snakemake process itself imports when it reads the workflow.

    python benchmarks/import_time.py [--other /tmp/old] [--repeats 5] [--out benchmarks/out/import_time.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ioda.files import write_json  # noqa: E402

MODULES = ["ioda.plan", "ioda.adapt.cli", "ioda.evaluate", "ioda.train.pretrain", "ioda.masks.cli",
           "ioda.data.prepare", "ioda.report.aggregate", "ioda.report.tables", "ioda.report.summary"]
HEAVY = ["torch", "spandrel", "torchvision", "torch._dynamo", "open_clip"]
PROBE = ("import sys, time; t = time.perf_counter(); import {module}; dt = time.perf_counter() - t; "
         "print(dt, *[m for m in {heavy!r} if m in sys.modules])")


def measure(tree: Path, module: str) -> tuple[float, list[str]]:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module, heavy=HEAVY)], cwd=tree, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), out[1:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", help="another checkout of ioda to compare with (its root folder)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "import_time.json"))
    args = ap.parse_args()
    trees = {"this": ROOT} | ({"other": Path(args.other).resolve()} if args.other else {})
    times: dict[str, dict[str, list[float]]] = {name: {m: [] for m in MODULES} for name in trees}
    pulls: dict[str, dict[str, list[str]]] = {name: {} for name in trees}
    for _ in range(args.repeats):
        for module in MODULES:
            for name, tree in trees.items():
                seconds, heavy = measure(tree, module)
                times[name][module].append(seconds)
                pulls[name][module] = heavy
    rows = []
    for module in MODULES:
        row = {"module": module}
        for name in trees:
            row[f"{name}_median_s"] = round(statistics.median(times[name][module]), 3)
            row[f"{name}_imports"] = pulls[name][module]
        rows.append(row)
        print(module.ljust(22), "  ".join(f"{name}: {row[f'{name}_median_s']:6.2f} s {'+'.join(pulls[name][module]) or '-'}"
                                          for name in trees))
    result = {"repeats": args.repeats, "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "trees": {k: str(v) for k, v in trees.items()}, "rows": rows}
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
