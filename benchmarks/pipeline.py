"""Wall time of the whole demo pipeline, as on a fresh clone.

Copies the working tree (without .git, .venv, data/, results/, logs/, .snakemake/) to a temporary folder,
runs `snakemake --cores N` there (params.yaml, or --configfile), and reports the wall time, the number of jobs
(Snakemake's job stats) and the time per rule (summed from Snakemake's benchmark files). Goal for the offline
demo: end to end in at most half of the ~5 min it took on 2 CPU cores with 114 jobs.

    python benchmarks/pipeline.py                               # the demo (params.yaml)
    python benchmarks/pipeline.py --configfile .test/config.yaml
    python benchmarks/pipeline.py --keep /tmp/demo-run          # keep the run folder to inspect it
Writes benchmarks/out/pipeline[-<config>].json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "data", "raw", "results", "weights", "standins", "logs", ".snakemake", ".dvc", ".pytest_cache", "__pycache__", "out"}


def copy_project(src: Path, dst: Path) -> Path:
    """The tracked-looking part of the tree: what a fresh clone would hold (no outputs, no caches)."""

    def ignore(folder, names):
        rel = Path(folder).resolve().relative_to(src.resolve())
        skip = {n for n in names if n in SKIP and (rel == Path(".") or n in {"__pycache__", ".pytest_cache"})}
        if rel == Path("benchmarks"):
            skip.add("out")
        return skip | {n for n in names if n.endswith(".pyc")}

    shutil.copytree(src, dst, ignore=ignore, symlinks=True)
    return dst


def rule_times(run_dir: Path) -> dict[str, dict]:
    """Per rule: number of jobs and summed seconds, from logs/benchmarks/<rule>/**.tsv."""
    out: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "seconds": 0.0})
    for tsv in sorted((run_dir / "logs" / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(run_dir / "logs" / "benchmarks").parts[0]
        with open(tsv, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows:
            out[rule]["jobs"] += 1
            out[rule]["seconds"] += float(rows[0]["s"])
    return {k: {"jobs": v["jobs"], "seconds": round(v["seconds"], 2)} for k, v in out.items()}


def job_stats(output: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table (printed when a run starts) -> {rule: jobs, ..., "total": jobs}."""
    m = re.search(r"Job stats:\n.*?\n-+ +-+\n(.*?\ntotal +\d+)", output, re.S)
    if not m:
        return {}
    return {name: int(n) for name, n in (line.split() for line in m.group(1).strip().splitlines())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", help="config to run instead of params.yaml (e.g. .test/config.yaml)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", help="run in this folder (created; must not exist) and keep it")
    ap.add_argument("--out", help="result JSON (default: benchmarks/out/pipeline[-<config>].json)")
    args = ap.parse_args(argv)

    tmp = None
    if args.keep:
        run_dir = Path(args.keep)
        if run_dir.exists():
            ap.error(f"--keep {run_dir}: already exists")
    else:
        tmp = tempfile.mkdtemp(prefix="ioda-pipeline-")
        run_dir = Path(tmp) / "ioda"
    copy_project(ROOT, run_dir)
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--rerun-incomplete"]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    env = dict(os.environ, IODA_PROGRESS="0")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    result = {
        "config": args.configfile or "params.yaml",
        "cores": args.cores,
        "ok": proc.returncode == 0,
        "wall_seconds": round(wall, 1),
        "jobs": job_stats(proc.stdout + proc.stderr),
        "rules": rule_times(run_dir),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    name = "pipeline" + (f"-{Path(args.configfile).parent.name.strip('.') or Path(args.configfile).stem}" if args.configfile else "")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "out" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"{result['config']}: {result['jobs'].get('total', '?')} jobs, wall {result['wall_seconds']:.0f} s on "
          f"{args.cores} cores ({'ok' if result['ok'] else 'FAILED'})")
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
