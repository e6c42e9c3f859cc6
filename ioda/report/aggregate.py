"""`ioda aggregate`: collect every run's evaluation into per-run and per-cell tables.

Per cell (task x backbone x variant) over its N target images: n, mean, sample standard deviation and
population variance (ddof=0, the paper's "±") of PSNR/SSIM, for three statistics in separate, labelled columns:
  final      the fixed step budget (the saved model, `ioda evaluate`);
  validated  the step count with the best mean PSNR along the VALIDATION task's curves
             (experiments.tasks.<task>.validation), read off this cell's own curves: no target HR picks it;
  oracle     each run's best step on the target test set (step 0 included): picked on target HR, the
             authors' statistic, optimistic by construction.
For each, the paired difference to the source model over the same target images with a seeded percentile
bootstrap 95% interval, the paired Student-t 95% interval and the exact two-sided sign-flip p-value
(ioda.report.stats); a cell shows an effect only when both intervals exclude 0. Adaptation seconds exclude the
evaluations; theirs are apart.

Outputs in --out-dir: runs.csv (one row per run), aggregate.csv (one row per cell), metrics.json (nested
task -> backbone -> variant -> numbers, for `dvc metrics`), curves.csv (the oracle curves, long format, for
`dvc plots`).
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ioda.adapt.variants import BASELINE, VARIANTS
from ioda.config import load_config
from ioda.errors import IodaError
from ioda.files import atomic_path, read_json, removed_on_failure, write_json
from ioda.report.cli import report_parser
from ioda.plan import Plan, Run
from ioda.report import stats
from ioda.runtime import setup_logging

VARIANCE_NOTE = ("mean ± std = sample standard deviation (ddof=1) over the N target images; the paper's ± is a "
                 "variance: ours (population, ddof=0) is its own column")
RUN_COLUMNS = ["task", "backbone", "variant", "run", "protocol", "psnr", "ssim", "seconds", "eval_seconds",
               "evaluations", "device", "hardware", "untrained_encoder", "encoder", "oracle_psnr", "oracle_ssim", "oracle_step",
               "final_step", "validation_task", "validated_step", "validated_psnr"]


@dataclass(frozen=True)
class Statistic:
    """One way of picking a run's model, and the names of its columns (runs.csv and aggregate.csv)."""

    name: str  # final | validated | oracle
    run: str  # the run's PSNR (runs.csv)
    mean: str
    std: str
    var: str
    diff: str  # paired difference to the source model, and its bootstrap interval
    low: str
    high: str
    t_low: str  # its Student-t interval
    t_high: str
    sign_p: str  # its sign-flip p-value


STATISTICS = (
    Statistic("final", "psnr", "psnr_mean", "psnr_std", "psnr_var", "diff_psnr_mean", "diff_ci_low", "diff_ci_high",
              "diff_t_low", "diff_t_high", "sign_flip_p"),
    Statistic("validated", "validated_psnr", "validated_psnr_mean", "validated_psnr_std", "validated_psnr_var",
              "validated_diff_mean", "validated_diff_ci_low", "validated_diff_ci_high",
              "validated_diff_t_low", "validated_diff_t_high", "validated_sign_flip_p"),
    Statistic("oracle", "oracle_psnr", "oracle_psnr_mean", "oracle_psnr_std", "oracle_psnr_var",
              "oracle_diff_mean", "oracle_diff_ci_low", "oracle_diff_ci_high",
              "oracle_diff_t_low", "oracle_diff_t_high", "oracle_sign_flip_p"),
)


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
        "untrained_encoder": False, "encoder": "", "oracle_psnr": math.nan, "oracle_ssim": math.nan,
        "oracle_step": math.nan, "final_step": math.nan,
        "validation_task": "", "validated_step": math.nan, "validated_psnr": math.nan,
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
        row["encoder"] = (info.get("encoder") or {}).get("description") or ""
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


def run_curves(curves: pd.DataFrame, task: str, backbone: str, variant: str) -> dict[str, dict[int, float]]:
    """run id -> {step: psnr} of one cell, from the long curves table."""
    g = curves[(curves["task"] == task) & (curves["backbone"] == backbone) & (curves["variant"] == variant)]
    return {run: dict(zip(r["step"].astype(int), r["psnr"].astype(float))) for run, r in g.groupby("run", sort=False)}


def validated_steps(plan: Plan, curves: pd.DataFrame) -> dict[tuple[str, str, str], int | None]:
    """(task, backbone, variant) -> the step chosen on the validation task's curves of the same backbone and
    variant (None where they are missing). Only the validation task's curves reach the chooser."""
    out = {}
    for t, b, v in plan.cells():
        val = plan.tasks[t].get("validation")
        if val is not None and plan.evaluates(Run(t, b, v, "")):
            out[(t, b, v)] = stats.validated_step(list(run_curves(curves, val, b, v).values()))
    return out


def add_validated(plan: Plan, runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Fill validation_task / validated_step / validated_psnr: each run's PSNR at its cell's validated step."""
    runs = runs.copy()
    for (t, b, v), step in validated_steps(plan, curves).items():
        own = run_curves(curves, t, b, v)
        rows = (runs["task"] == t) & (runs["backbone"] == b) & (runs["variant"] == v)
        runs.loc[rows, "validation_task"] = plan.tasks[t]["validation"]
        runs.loc[rows, "validated_step"] = math.nan if step is None else step
        runs.loc[rows, "validated_psnr"] = [stats.value_at_step(own.get(r, {}), step) for r in runs.loc[rows, "run"]]
    return runs


def collect_runs(plan: Plan, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    runs = pd.DataFrame([collect_run(plan, r) for r in plan.runs()], columns=RUN_COLUMNS)
    return add_validated(plan, runs, collect_curves(plan) if curves is None else curves)


def _mean(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.mean()) if len(x) else math.nan


def statistic_columns(g: pd.DataFrame, source: float | None, seed: int) -> dict:
    """Spread and paired difference to the source model (bootstrap and t intervals, sign-flip p) of each
    statistic (STATISTICS) over a cell's runs."""
    out = {}
    for s in STATISTICS:
        sp = stats.spread(g[s.run])
        out.update({s.mean: sp.mean, s.std: sp.std, s.var: sp.var})
        d = stats.paired_diff(g[s.run], source, seed) if source is not None else None
        for key, attr in ((s.diff, "mean"), (s.low, "low"), (s.high, "high"), (s.t_low, "t_low"),
                          (s.t_high, "t_high"), (s.sign_p, "sign_flip_p")):
            out[key] = getattr(d, attr) if d else math.nan
    return out


def aggregate_cells(runs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One row per cell: n, mean, std and population variance of PSNR/SSIM for the final, validated and oracle
    statistics, each with its paired difference to the source model, its 95% bootstrap and t intervals and
    sign-flip p-value; time, hardware."""
    rows = []
    source = {(r.task, r.backbone): r.psnr for r in runs[runs["variant"] == BASELINE].itertuples(index=False)}
    for (task, backbone, variant), g in runs.groupby(["task", "backbone", "variant"], sort=False):
        oracle = g["oracle_psnr"].dropna()
        ref = source.get((task, backbone)) if variant != BASELINE else None
        ssim = stats.spread(g["ssim"])
        rows.append({
            "task": task, "backbone": backbone, "variant": variant, "n": len(g),
            **statistic_columns(g, ref, seed),
            "ssim_mean": ssim.mean, "ssim_std": ssim.std, "ssim_var": ssim.var,
            "validation_task": next((x for x in g["validation_task"] if isinstance(x, str) and x), ""),
            "validated_n": int(g["validated_psnr"].notna().sum()),
            "validated_step": _mean(g["validated_step"]),
            "oracle_n": len(oracle),
            "oracle_step_mean": float(g["oracle_step"].dropna().mean()) if len(oracle) else math.nan,
            "ci_resamples": stats.BOOTSTRAP_RESAMPLES if ref is not None and len(g) > 1 else 0,
            "seconds_mean": float(g["seconds"].dropna().mean()) if g["seconds"].notna().any() else math.nan,
            "eval_seconds_mean": float(g["eval_seconds"].dropna().mean()) if g["eval_seconds"].notna().any() else math.nan,
            "evaluations_mean": float(g["evaluations"].mean()),
            "protocol": "; ".join(sorted({p for p in g["protocol"] if isinstance(p, str) and p})),
            "hardware": "; ".join(sorted({h for h in g["hardware"] if isinstance(h, str) and h})),
            "untrained_encoder": bool(g["untrained_encoder"].any()),
        })
    return pd.DataFrame(rows)


def metrics_tree(cells: pd.DataFrame) -> dict:
    """task -> backbone -> variant -> {psnr, psnr_std, psnr_var, ssim, ssim_var, n[, diff_psnr, diff_ci_low,
    diff_ci_high, diff_t_low, diff_t_high, sign_flip_p, validated_psnr, validated_diff, oracle_psnr,
    oracle_diff]} (JSON-safe)."""
    tree: dict = {}
    for r in cells.itertuples(index=False):
        entry = {"psnr": r.psnr_mean, "psnr_std": r.psnr_std, "psnr_var": r.psnr_var, "ssim": r.ssim_mean,
                 "ssim_var": r.ssim_var, "n": r.n}
        if math.isfinite(r.diff_psnr_mean):
            entry.update(diff_psnr=r.diff_psnr_mean, diff_ci_low=r.diff_ci_low, diff_ci_high=r.diff_ci_high,
                         diff_t_low=r.diff_t_low, diff_t_high=r.diff_t_high, sign_flip_p=r.sign_flip_p)
        if r.validated_n:
            entry.update(validated_psnr=r.validated_psnr_mean, validated_diff=r.validated_diff_mean)
        if r.oracle_n:
            entry.update(oracle_psnr=r.oracle_psnr_mean, oracle_diff=r.oracle_diff_mean)
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
    curves = collect_curves(plan)
    runs = collect_runs(plan, curves)
    cells = aggregate_cells(runs, seed=plan.cfg["run"]["seed"])
    targets = [out / "runs.csv", out / "aggregate.csv", out / "metrics.json", out / "curves.csv"]
    with removed_on_failure(*targets):
        write_csv(runs, targets[0])
        write_csv(cells, targets[1])
        write_json(targets[2], metrics_tree(cells))
        write_csv(curves, targets[3])
    log.info("aggregated %d runs into %d cells -> %s", len(runs), len(cells), out)
    return 0
