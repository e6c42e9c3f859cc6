"""`ioda tables`: the paper's Tables 1-6 (same rows and columns) as CSV, Markdown and LaTeX.

Each cell shows mean ± standard deviation over the N target images for up to three statistics side by side
(ioda.report.aggregate): the final step (the saved model), and, where the runs evaluated along the way
(adapt.eval_every), the validated step (chosen on the validation task's curves, no target HR of this task) and
the best step ("oracle: picked on target HR, the authors' statistic"). Each adapted cell has the paired
difference to the source model with its 95% bootstrap and Student-t intervals and sign-flip p-value; "†" marks a
difference where either interval includes 0 (an effect is shown only when both exclude it). Our
population variance (the paper's "±") is its own column. The paper's numbers (and its variance) appear next to
them, with our differences, only when the configuration is the paper's (run.paper: true) and the cell is one
the paper reports. Table 6 adds the measured adaptation time per run (evaluations excluded; their time is a
separate column) and the hardware, and rows we do not run are marked "quoted from the paper".

CSV holds the raw numbers (one column per quantity); Markdown/LaTeX hold the formatted table.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ioda.adapt.variants import VARIANTS
from ioda.config import load_config
from ioda.errors import IodaError
from ioda.files import atomic_path, removed_on_failure, write_text
from ioda.report.aggregate import STATISTICS, VARIANCE_NOTE, Statistic
from ioda.report.stats import BOOTSTRAP_RESAMPLES, CONFIDENCE, RESOLUTION_DB, shows_effect_both
from ioda.report.paper_numbers import TABLE6_QUOTED, PaperValue, paper_value
from ioda.report.cli import report_parser
from ioda.plan import Plan
from ioda.runtime import setup_logging

TITLES = {
    "table1": "Table 1: one-shot domain adaptation, baseline vs image-guided vs IODA",
    "table2": "Table 2: guidance of the direction loss (text, real HR, image-guided & SR = IODA)",
    "table3": "Table 3: target-domain distribution expansion (region-range mask variants)",
    "table4": "Table 4: IODA across domain-adaptation tasks (baseline -> IODA)",
    "table5": "Table 5: IODA across backbones, with the fine-tune-on-all-target-HR upper bound",
    "table6": "Table 6: comparison with other methods, including adaptation time",
}
METHOD = {name: v.label for name, v in VARIANTS.items()}  # row labels (the variant registry's)


PROTOCOL_TEXT = {"authors": "the authors' released code, exactly", "paper": "the paper's text and our documented choices"}
STAT_LABEL = {"final": "final step", "validated": "validated step", "oracle": "best step, oracle"}
NO_EFFECT = "†"  # an interval (bootstrap or t) of the difference to the source model includes 0
ORACLE_NOTE = ("PSNR (best step, oracle): the best mean PSNR on the target test set along the adaptation, evaluated "
               "every adapt.eval_every steps with step 0 included — oracle: picked on target HR, the authors' "
               "statistic (their script kept every 10-step checkpoint with its PSNR). The final step is the "
               "saved model, used for the figures.")
VALIDATED_NOTE = ("PSNR (validated step): each run's PSNR at the step count with the best mean PSNR along the "
                  "validation task's curves (experiments.tasks.<task>.validation: the same source model, backbone "
                  "and variant adapted to another target), so no target HR of this task chooses it; '-' where the "
                  "task names no validation task.")
CI_NOTE = (f"Δ vs source: mean over the N target images of PSNR(run adapted on image i) − PSNR(source model), both "
           f"on the same target test images; [{CONFIDENCE:.0%} CI]: percentile bootstrap over the N images "
           f"({BOOTSTRAP_RESAMPLES} resamples, seeded by run.seed); t [...]: paired Student-t {CONFIDENCE:.0%} "
           "interval (df = N − 1); p: exact two-sided sign-flip p-value over the 2^N sign patterns of the "
           "differences (at N = 5 its smallest value is 1/16, so p < 0.05 cannot occur). An effect is shown only "
           f"when BOTH intervals exclude 0; {NO_EFFECT} either includes 0 (reaches within {RESOLUTION_DB} dB of it, "
           "the evaluations' numerical agreement): no effect shown at this N. One image (N = 1) has no interval.")


@dataclass
class Table:
    name: str
    title: str
    columns: list[tuple[str, str, tuple[str, ...]]]  # (header, kind, raw keys); kind: text|mv|num|int|time
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def raw_frame(self) -> pd.DataFrame:
        keys = [k for _, _, ks in self.columns for k in ks]
        return pd.DataFrame([{k: r.get(k) for k in keys} for r in self.rows], columns=keys)

    def display_rows(self) -> list[list[str]]:
        return [[fmt_cell(kind, [r.get(k) for k in keys]) for _, kind, keys in self.columns] for r in self.rows]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt_cell(kind: str, values: list) -> str:
    if kind == "text":
        return "" if values[0] is None else str(values[0])
    if kind == "int":
        return str(int(values[0])) if _finite(values[0]) else "-"
    if kind == "num":
        return f"{values[0]:.3f}" if _finite(values[0]) else "-"
    if kind == "diff":
        return f"{values[0]:+.3f}" if _finite(values[0]) else "-"
    if kind == "var":
        return f"{values[0]:.3g}" if _finite(values[0]) else "-"
    if kind == "ci":  # difference [bootstrap]; t [t interval]; p, marked unless both intervals exclude 0
        diff, low, high, t_low, t_high, p = (list(values) + [math.nan] * 3)[:6]
        if not _finite(diff):
            return "-"
        if not (_finite(low) and _finite(high)):
            return f"{diff:+.3f}"
        text = f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]"
        if _finite(t_low) and _finite(t_high):
            text += f"; t [{t_low:+.3f}, {t_high:+.3f}]"
        if _finite(p):
            text += f"; p = {p:.3g}"
        return text + ("" if shows_effect_both(low, high, t_low, t_high) else f" {NO_EFFECT}")
    if kind in ("ms", "ms4"):  # mean ± std
        mean, std = values
        if not _finite(mean):
            return "-"
        m = f"{mean:.3f}" if kind == "ms" else f"{mean:.4f}"
        return f"{m} ± {std:.3f}" if _finite(std) and kind == "ms" else (f"{m} ± {std:.4f}" if _finite(std) else m)
    if kind == "time":  # minutes: 2 decimals as the paper, 3 significant digits for sub-second demo runs
        v = values[0]
        return "-" if not _finite(v) else (f"{v:.2f}" if v >= 0.1 else f"{v:.3g}")
    if kind in ("mv", "mv4"):
        mean, var = values
        if not _finite(mean):
            return "-"
        m = f"{mean:.3f}" if kind == "mv" else f"{mean:.4f}"
        # the variance keeps 3 significant digits: SSIM variances are often below 1e-4
        return f"{m} ± {var:.3g}" if _finite(var) else m
    raise ValueError(kind)


# ---- rendering --------------------------------------------------------------------------------------------
def to_markdown(t: Table) -> str:
    headers = [h for h, _, _ in t.columns]
    lines = [f"**{t.title}**", "", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.display_rows()]
    lines += [""] + [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


_TEX_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(s: str) -> str:
    out = "".join(_TEX_ESCAPE.get(c, c) for c in s)
    return (out.replace("±", r"$\pm$").replace("→", r"$\rightarrow$").replace("−", "-")
            .replace(NO_EFFECT, r"$\dagger$").replace("Δ", r"$\Delta$"))


def to_latex(t: Table) -> str:
    headers = [tex_escape(h) for h, _, _ in t.columns]
    align = "".join("l" if kind == "text" else "r" for _, kind, _ in t.columns)
    lines = [
        r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(t.title)}}}", rf"\label{{tab:{t.name}}}",
        rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(headers) + r" \\", r"\midrule",
    ]
    lines += [" & ".join(tex_escape(c) for c in row) + r" \\" for row in t.display_rows()]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\footnotesize {tex_escape(n)}" for n in t.notes]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


# ---- building -------------------------------------------------------------------------------------------
class Builder:
    def __init__(self, plan: Plan, cells: pd.DataFrame):
        self.plan, self.cfg = plan, plan.cfg
        self.paper = bool(self.cfg["run"]["paper"])
        self.cells = {(r["task"], r["backbone"], r["variant"]): r for r in cells.to_dict("records")}

    def cell(self, table: str, task: str, backbone: str, variant: str) -> dict:
        key = (task, backbone, variant)
        if key not in self.cells:
            raise IodaError(f"aggregate: no row for task {task!r}, backbone {backbone!r}, variant {variant!r} "
                            f"(needed by {table}; rerun `ioda aggregate` with the same config)")
        return self.cells[key]

    def paper_of(self, table: str, task: str, backbone: str, variant: str) -> PaperValue | None:
        if not self.paper:
            return None
        t = self.plan.tasks[task]
        return paper_value(table, t["source"], t["target"], self.cfg["backbones"][backbone].get("preset"), variant)

    def task_label(self, task: str) -> str:
        t = self.plan.tasks[task]
        return f"{t['source']} → {t['target']}"

    def method(self, table: str, variant: str) -> str:
        return VARIANTS[variant].table_label(table)

    def notes(self, extra: list[str] | None = None) -> list[str]:
        n = [f"PSNR (dB) / SSIM on the Y channel, border = scale cropped; {VARIANCE_NOTE}; "
             "baseline and fine-tune do not depend on a target image (N = 1, no spread)."]
        n.append(f"Protocol `{self.cfg['adapt']['protocol']}`: {PROTOCOL_TEXT[self.cfg['adapt']['protocol']]} "
                 "(docs/method.md).")
        n += extra or []
        if self.paper:
            n.append("Paper: the numbers printed in Tang & Yang (NeurIPS 2024); Δ = ours − paper.")
        else:
            n.append(f"Configuration '{self.cfg['run']['name']}' is not the paper's: no paper numbers are shown, "
                     "and these numbers are not comparable with the paper's.")
        untrained = {k[2] for k, c in self.cells.items() if c.get("untrained_encoder")}
        if any(VARIANTS[v].encoder == "configured" for v in untrained):
            n.append("The encoder was UNTRAINED in these runs: a smoke test of the pipeline, not a "
                     "reproduction of the method's effect.")
        elif untrained:
            n.append(f"{', '.join(sorted(METHOD[v] for v in untrained))}: the encoder's architecture UNTRAINED (seeded "
                     "random weights), by design: the control beside the trained encoder's rows.")
        return n

    # ---- the three statistics --------------------------------------------------------------------------
    def statistics(self, keys) -> list[Statistic]:
        """final always; validated and oracle where any of these cells evaluated along the way."""
        curves = any(_finite(self.cells[k].get("oracle_psnr_mean")) for k in keys if k in self.cells)
        return [s for s in STATISTICS if s.name == "final" or curves]

    @staticmethod
    def stat_columns(stats: list[Statistic], prefix: str = "", label: str = "", diff: bool = True) -> list:
        cols = []
        for s in stats:
            cols.append((f"{label}PSNR, {STAT_LABEL[s.name]} (mean ± std)", "ms", (prefix + s.mean, prefix + s.std)))
            if diff:
                cols.append((f"{label}Δ vs source, {STAT_LABEL[s.name]} [{CONFIDENCE:.0%} CI]", "ci",
                             tuple(prefix + k for k in (s.diff, s.low, s.high, s.t_low, s.t_high, s.sign_p))))
        return cols

    @staticmethod
    def stat_values(c: dict, prefix: str = "") -> dict:
        """The cell's numbers of every statistic (std only with N > 1), keyed prefix + aggregate column."""
        out = {}
        for s in STATISTICS:
            for key in (s.mean, s.std, s.diff, s.low, s.high, s.t_low, s.t_high, s.sign_p):
                value = c.get(key, math.nan)
                out[prefix + key] = value if key != s.std or c["n"] > 1 else math.nan
        return out

    def stat_notes(self, stats: list[Statistic]) -> list[str]:
        names = {s.name for s in stats}
        return [CI_NOTE] + ([VALIDATED_NOTE] if "validated" in names else []) + ([ORACLE_NOTE] if "oracle" in names else [])

    def paper_columns(self, stats: list[Statistic]) -> list:
        return [("Paper PSNR", "num", ("paper_psnr",)), ("Paper variance", "var", ("paper_var",)),
                ("Paper SSIM", "num", ("paper_ssim",))] + [
            (f"Δ PSNR ({s.name} − paper)", "diff", (self.delta_key(s),)) for s in stats]

    @staticmethod
    def delta_key(s: Statistic, prefix: str = "") -> str:
        return f"delta_{prefix}psnr" if s.name == "final" else f"delta_{prefix}{s.name}"

    # Tables 1-3: rows = methods.
    def method_rows(self, name: str) -> Table:
        spec = self.cfg["experiments"]["tables"][name]
        multi = len(spec["tasks"]) > 1 or len(spec["backbones"]) > 1
        keys = [(t, b, v) for t in spec["tasks"] for b in spec["backbones"] for v in spec["variants"]]
        stats = self.statistics(keys)
        cols = [("Task", "text", ("task",)), ("Backbone", "text", ("backbone",))] if multi else []
        cols += [("Method", "text", ("method",)), ("N", "int", ("n",))] + self.stat_columns(stats)
        cols += [("PSNR variance, final step", "var", ("psnr_var",)),
                 ("SSIM, final step (mean ± std)", "ms4", ("ssim_mean", "ssim_std"))]
        rows = []
        for task, bb, v in keys:
            c = self.cell(name, task, bb, v)
            row = {"task": self.task_label(task), "backbone": bb, "method": self.method(name, v), "n": c["n"],
                   **self.stat_values(c), "psnr_var": c["psnr_var"] if c["n"] > 1 else math.nan,
                   "ssim_mean": c["ssim_mean"], "ssim_std": c.get("ssim_std", math.nan)}
            self._add_paper(row, self.paper_of(name, task, bb, v))
            rows.append(row)
        if self.paper:
            cols += self.paper_columns(stats)
        return Table(name, TITLES[name], cols, rows, self.notes(self.stat_notes(stats)))

    @staticmethod
    def _add_paper(row: dict, pv: PaperValue | None) -> None:
        """paper_psnr/ssim/var/minutes and delta_* (ours - paper, per statistic) columns; NaN where the paper
        has none."""
        def get(attr):
            value = getattr(pv, attr) if pv else None
            return math.nan if value is None else value

        for attr in ("psnr", "ssim", "var", "minutes"):
            row[f"paper_{attr}"] = get(attr)
        for s in STATISTICS:
            ours = row.get(s.mean)
            row[Builder.delta_key(s)] = ours - row["paper_psnr"] if _finite(ours) and _finite(row["paper_psnr"]) else math.nan

    # Tables 4 and 5: rows = tasks (4) or backbones (5), the statistics of each variant side by side.
    def pivot(self, name: str, by: str) -> Table:
        spec = self.cfg["experiments"]["tables"][name]
        variants = spec["variants"]
        keys = [(t, b, v) for t in spec["tasks"] for b in spec["backbones"] for v in variants]
        cols = [("Task", "text", ("task",)), ("Backbone", "text", ("backbone",)), ("N", "int", ("n",))]
        shown: dict[str, list[Statistic]] = {}
        for v in variants:
            shown[v] = self.statistics([k for k in keys if k[2] == v])
            cols += self.stat_columns(shown[v], f"{v}_", f"{METHOD[v]}: ", diff=VARIANTS[v].trains)
            if self.paper:
                cols += [(f"Paper {METHOD[v]}", "num", (f"paper_{v}",)),
                         (f"Paper {METHOD[v]} variance", "var", (f"paper_{v}_var",))]
        if self.paper:
            cols += [(f"Δ {METHOD[v]} PSNR ({s.name} − paper)", "diff", (self.delta_key(s, f"{v}_"),))
                     for v in variants if VARIANTS[v].trains for s in shown[v]]
        rows = []
        outer = spec["tasks"] if by == "task" else spec["backbones"]
        inner = spec["backbones"] if by == "task" else spec["tasks"]
        for o in outer:
            for i in inner:
                task, bb = (o, i) if by == "task" else (i, o)
                row = {"task": self.task_label(task), "backbone": bb, "n": 0}
                for v in variants:
                    c = self.cell(name, task, bb, v)
                    row["n"] = max(row["n"], c["n"])  # the target images of the adapted variants
                    row.update(self.stat_values(c, f"{v}_"))
                    pv = self.paper_of(name, task, bb, v)
                    row[f"paper_{v}"] = pv.psnr if pv and pv.psnr is not None else math.nan
                    row[f"paper_{v}_var"] = pv.var if pv and pv.var is not None else math.nan
                    for s in STATISTICS:
                        ours = row[f"{v}_{s.mean}"]
                        row[self.delta_key(s, f"{v}_")] = ours - row[f"paper_{v}"] if _finite(ours) and _finite(
                            row[f"paper_{v}"]) else math.nan
                rows.append(row)
        stats = max(shown.values(), key=len)
        return Table(name, TITLES[name], cols, rows, self.notes(self.stat_notes(stats)))

    # Table 6: rows = methods, with time and hardware; other methods quoted from the paper.
    def comparison(self, name: str) -> Table:
        spec = self.cfg["experiments"]["tables"][name]
        table_cells = set(self.plan.table_cells())
        keys = [(t, b, v) for t in spec["tasks"] for b in spec["backbones"] for v in spec["variants"]
                if (t, b, v) in table_cells]  # `only` leaves some out
        stats = self.statistics(keys)
        has_oracle = len(stats) > 1
        cols = [("Method", "text", ("method",)), ("N", "int", ("n",))] + self.stat_columns(stats)
        cols += [("PSNR variance, final step", "var", ("psnr_var",)),
                 ("SSIM, final step (mean ± std)", "ms4", ("ssim_mean", "ssim_std")),
                 ("Adaptation time (min)", "time", ("minutes",))]
        cols += [("Evaluation time (min)", "time", ("eval_minutes",))] if has_oracle else []
        cols += [("Hardware", "text", ("hardware",)), ("Source", "text", ("source",))]
        if self.paper:
            cols += self.paper_columns(stats)[:3] + [("Paper time (min)", "time", ("paper_minutes",))]
            cols += self.paper_columns(stats)[3:]
        rows = []
        for task, bb, v in keys:
            c = self.cell(name, task, bb, v)
            label = VARIANTS[v].comparison_label.format(backbone=bb, label=METHOD[v])
            if len(spec["tasks"]) > 1:
                label += f" ({self.task_label(task)})"
            seconds, eval_seconds = c["seconds_mean"], c.get("eval_seconds_mean", math.nan)
            row = {"method": label, "n": c["n"], **self.stat_values(c),
                   "psnr_var": c["psnr_var"] if c["n"] > 1 else math.nan,
                   "ssim_mean": c["ssim_mean"], "ssim_std": c.get("ssim_std", math.nan),
                   "minutes": seconds / 60.0 if _finite(seconds) and VARIANTS[v].trains else math.nan,
                   "eval_minutes": eval_seconds / 60.0 if _finite(eval_seconds) and c.get("evaluations_mean", 0)
                   else math.nan,
                   "hardware": c["hardware"] if VARIANTS[v].trains else "", "source": "this run"}
            self._add_paper(row, self.paper_of(name, task, bb, v))
            rows.append(row)
        for label, pv in TABLE6_QUOTED:
            row = {"method": label, "n": math.nan, **self.stat_values({"n": 1}), "psnr_mean": pv.psnr,
                   "psnr_var": math.nan, "eval_minutes": math.nan,
                   "ssim_mean": pv.ssim if pv.ssim is not None else math.nan, "ssim_std": math.nan,
                   "minutes": pv.minutes if pv.minutes is not None else math.nan, "hardware": "",
                   "source": "quoted from the paper"}
            self._add_paper(row, pv)
            for s in STATISTICS:
                row[self.delta_key(s)] = math.nan
            rows.append(row)
        notes = ["Adaptation time: wall-clock seconds of the adaptation loop per run (adapt.json), evaluations "
                 "excluded, averaged over the N runs; evaluation time (the test set every adapt.eval_every steps) "
                 "is its own column, and the authors' wall clock included both. The paper's times are on an RTX "
                 "2080Ti (SAFMN, SRFormer) and a V100 (HAT)."]
        return Table(name, TITLES[name], cols, rows, self.notes(notes + self.stat_notes(stats)))

    def build(self, name: str) -> Table:
        if name in ("table1", "table2", "table3"):
            return self.method_rows(name)
        if name == "table4":
            return self.pivot(name, "task")
        if name == "table5":
            return self.pivot(name, "backbone")
        if name == "table6":
            return self.comparison(name)
        raise IodaError(f"unknown table {name!r} (expected table1..table6)")


def read_cells(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise IodaError(f"{path}: file not found (expected aggregate.csv from `ioda aggregate`)")
    df = pd.read_csv(path)
    need = {"task", "backbone", "variant", "n", "psnr_mean", "psnr_var", "ssim_mean", "ssim_var"}
    if not need <= set(df.columns):
        raise IodaError(f"{path}: missing columns {sorted(need - set(df.columns))} (expected `ioda aggregate` output)")
    return df


def build_tables(plan: Plan, cells: pd.DataFrame) -> list[Table]:
    from ioda.standins.guard import banner_first

    b = Builder(plan, cells)
    tables = [b.build(name) for name in sorted(plan.tables)]
    for t in tables:
        t.title = banner_first(plan.cfg, t.title)
    return tables


def write_tables(tables: list[Table], out_dir: Path) -> list[Path]:
    written = []
    for t in tables:
        paths = [out_dir / f"{t.name}.{ext}" for ext in ("csv", "md", "tex")]
        with removed_on_failure(*paths):
            with atomic_path(paths[0]) as tmp:
                t.raw_frame().to_csv(tmp, index=False, float_format="%.6f")
            write_text(paths[1], to_markdown(t))
            write_text(paths[2], to_latex(t))
        written += paths
    return written


def build_parser() -> argparse.ArgumentParser:
    p = report_parser("ioda tables", __doc__)
    p.add_argument("--aggregate", help="aggregate.csv (default: <results_dir>/metrics/aggregate.csv)")
    p.add_argument("--out-dir", help="default: <results_dir>/tables")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = setup_logging(args.log)
    plan = Plan(load_config(args.config))
    cells = read_cells(args.aggregate or plan.metrics_dir() / "aggregate.csv")
    written = write_tables(build_tables(plan, cells), Path(args.out_dir) if args.out_dir else plan.tables_dir())
    log.info("wrote %d table files", len(written))
    return 0
