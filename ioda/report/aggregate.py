"""`ioda aggregate`: collect every run's evaluation into per-run and per-cell tables.

Per cell (task x backbone x variant) over its N target images: mean and variance of PSNR/SSIM. The paper
prints "mean ± variance" over 5 target images; we use the population variance (numpy's default, ddof=0),
and say so in every table. Both statistics: the final step (the saved model, `ioda evaluate`) and
the oracle best step (best PSNR on the target test set along the adaptation's PSNR-vs-step curve, step 0
included: picked on target HR, the authors' statistic), in separate, labelled columns. Adaptation seconds
exclude the evaluations; their seconds are a separate column.

Outputs in --out-dir: runs.csv (one row per run), aggregate.csv (one row per cell), metrics.json (nested
task -> backbone -> variant -> numbers, for `dvc metrics`), curves.csv (the oracle curves, long format, for
`dvc plots`).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ioda.adapt.variants import VARIANTS
from ioda.config import load_config
from ioda.errors import IodaError
from ioda.files import atomic_path, read_json, removed_on_failure, write_json
from ioda.report.cli import report_parser
from ioda.plan import Plan, Run
from ioda.runtime import setup_logging

VARIANCE_NOTE = "± = population variance (ddof=0) over the N target images"
RUN_COLUMNS = ["task", "backbone", "variant", "run", "protocol", "psnr", "ssim", "seconds", "eval_seconds",
               "evaluations", "device", "hardware", "untrained_encoder", "oracle_psnr", "oracle_ssim", "oracle_step",
               "final_step"]


def _float(value, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise IodaError(f"{where}: expected a number, got {value!r}") from None
    return out


def read_curve(path: Path) -> list[dict]:
    """curve.csv (step, psnr, ssim) -> rows; an IodaError naming the file if malformed."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise IodaError(f"{path}: cannot read the PSNR-vs-step curve ({err.strerror})") from None
    for key in ("step", "psnr"):
        if rows and key not in rows[0]:
            raise IodaError(f"{path}: no {key!r} column (expected step, psnr, ssim)")
    return [
        {"step": int(_float(r["step"], f"{path}: step")), "psnr": _float(r["psnr"], f"{path}: psnr"),
         "ssim": _float(r.get("ssim", "nan") or "nan", f"{path}: ssim")}
        for r in rows
    ]


def collect_run(plan: Plan, run: Run) -> dict:
    """One run's numbers: the fixed-budget evaluation, timing and hardware, and the oracle best step."""
    summary_path = plan.eval_dir(run) / "summary.json"
    summary = read_json(summary_path)
    for key in ("mean_psnr", "mean_ssim"):
        if key not in summary:
            raise IodaError(f"{summary_path}: no {key!r} (expected the summary JSON of `ioda evaluate`)")
    row = {
        "task": run.task, "backbone": run.backbone, "variant": run.variant, "run": run.run,
        "psnr": _float(summary["mean_psnr"], f"{summary_path}: mean_psnr") if summary["mean_psnr"] is not None else math.inf,
        "ssim": _float(summary["mean_ssim"], f"{summary_path}: mean_ssim"),
        "protocol": "", "seconds": math.nan, "eval_seconds": math.nan, "evaluations": 0,
        "device": summary.get("device", ""), "hardware": "",
        "untrained_encoder": False, "oracle_psnr": math.nan, "oracle_ssim": math.nan,
        "oracle_step": math.nan, "final_step": math.nan,
    }
    if VARIANTS[run.variant].trains:
        info_path = plan.adapt_dir(run) / "adapt.json"
        info = read_json(info_path)
        if info.get("seconds") is not None:
            row["seconds"] = _float(info["seconds"], f"{info_path}: seconds")
        if info.get("eval_seconds") is not None:
            row["eval_seconds"] = _float(info["eval_seconds"], f"{info_path}: eval_seconds")
        # runs from before the switch followed the paper's text; a supervised baseline reads no protocol (null)
        row["protocol"] = info.get("protocol", "paper") or ""
        row["device"] = info.get("device", row["device"])
        row["hardware"] = info.get("hardware", "")
        row["untrained_encoder"] = bool((info.get("encoder") or {}).get("untrained", False))
        curve_path = plan.adapt_dir(run) / "curve.csv"
        if plan.evaluates(run) and curve_path.is_file():
            curve = [c for c in read_curve(curve_path) if math.isfinite(c["psnr"])]
            row["evaluations"] = len(curve)
            if curve:  # max() keeps the earliest of equal steps
                best = max(curve, key=lambda c: c["psnr"])
                row.update(oracle_psnr=best["psnr"], oracle_ssim=best["ssim"], oracle_step=best["step"],
                           final_step=curve[-1]["step"])
    return row


def collect_curves(plan: Plan) -> pd.DataFrame:
    """Long table (task, backbone, variant, run, step, psnr, ssim) of the oracle curves, for plots."""
    rows = []
    for r in plan.adapt_runs():
        path = plan.adapt_dir(r) / "curve.csv"
        if plan.evaluates(r) and path.is_file():
            rows += [{"task": r.task, "backbone": r.backbone, "variant": r.variant, "run": r.run, **c}
                     for c in read_curve(path)]
    return pd.DataFrame(rows, columns=["task", "backbone", "variant", "run", "step", "psnr", "ssim"])


def collect_runs(plan: Plan) -> pd.DataFrame:
    return pd.DataFrame([collect_run(plan, r) for r in plan.runs()], columns=RUN_COLUMNS)


def _var(x: pd.Series) -> float:
    x = x.dropna()
    return float(np.var(x.to_numpy(dtype=float))) if len(x) else math.nan


def aggregate_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: n, mean and population variance of PSNR/SSIM, oracle columns, time, hardware."""
    rows = []
    for (task, backbone, variant), g in runs.groupby(["task", "backbone", "variant"], sort=False):
        oracle = g["oracle_psnr"].dropna()
        rows.append({
            "task": task, "backbone": backbone, "variant": variant, "n": len(g),
            "psnr_mean": float(g["psnr"].mean()), "psnr_var": _var(g["psnr"]),
            "ssim_mean": float(g["ssim"].mean()), "ssim_var": _var(g["ssim"]),
            "oracle_n": len(oracle),
            "oracle_psnr_mean": float(oracle.mean()) if len(oracle) else math.nan,
            "oracle_psnr_var": _var(oracle),
            "oracle_step_mean": float(g["oracle_step"].dropna().mean()) if len(oracle) else math.nan,
            "seconds_mean": float(g["seconds"].dropna().mean()) if g["seconds"].notna().any() else math.nan,
            "eval_seconds_mean": float(g["eval_seconds"].dropna().mean()) if g["eval_seconds"].notna().any() else math.nan,
            "evaluations_mean": float(g["evaluations"].mean()),
            "protocol": "; ".join(sorted({p for p in g["protocol"] if isinstance(p, str) and p})),
            "hardware": "; ".join(sorted({h for h in g["hardware"] if isinstance(h, str) and h})),
            "untrained_encoder": bool(g["untrained_encoder"].any()),
        })
    return pd.DataFrame(rows)


def metrics_tree(cells: pd.DataFrame) -> dict:
    """task -> backbone -> variant -> {psnr, psnr_var, ssim, ssim_var, n[, oracle_psnr]} (JSON-safe)."""
    tree: dict = {}
    for r in cells.itertuples(index=False):
        entry = {"psnr": r.psnr_mean, "psnr_var": r.psnr_var, "ssim": r.ssim_mean, "ssim_var": r.ssim_var, "n": r.n}
        if r.oracle_n:
            entry["oracle_psnr"] = r.oracle_psnr_mean
        if math.isfinite(r.seconds_mean):
            entry["adapt_seconds"] = r.seconds_mean
        if math.isfinite(r.eval_seconds_mean):
            entry["eval_seconds"] = r.eval_seconds_mean
        entry = {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else (None if isinstance(v, float) else v))
                 for k, v in entry.items()}
        tree.setdefault(r.task, {}).setdefault(r.backbone, {})[r.variant] = entry
    return tree


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")


def build_parser() -> argparse.ArgumentParser:
    p = report_parser("ioda aggregate", __doc__)
    p.add_argument("--out-dir", help="default: <results_dir>/metrics")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = setup_logging(args.log)
    plan = Plan(load_config(args.config))
    out = Path(args.out_dir) if args.out_dir else plan.metrics_dir()
    runs = collect_runs(plan)
    cells = aggregate_cells(runs)
    targets = [out / "runs.csv", out / "aggregate.csv", out / "metrics.json", out / "curves.csv"]
    with removed_on_failure(*targets):
        write_csv(runs, targets[0])
        write_csv(cells, targets[1])
        write_json(targets[2], metrics_tree(cells))
        write_csv(collect_curves(plan), targets[3])
    log.info("aggregated %d runs into %d cells -> %s", len(runs), len(cells), out)
    return 0
