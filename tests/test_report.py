"""Report commands (aggregate, tables, figures, report) and the plan, on synthetic result files.

No pipeline run here: the files that `ioda evaluate` / `ioda adapt` would write are made up with known
numbers, so means, variances, oracle columns and the paper comparison can be checked exactly."""

from __future__ import annotations

import copy
import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from ioda.config import load_config
from ioda.errors import IodaError
from ioda.files import write_json
from ioda.imageio import write_image
from ioda.report import aggregate, figures, stats, summary, tables
from ioda.report.paper_numbers import PAPER, TABLE6_QUOTED, paper_value
from ioda.plan import Plan, Run

BASE = {
    "run": {"name": "synthetic", "seed": 0, "device": "cpu"},
    "datasets": {"demo_source": {}, "demo_canon": {}},
    "backbones": {"safmn_tiny": {"preset": "safmn_tiny"}, "hat_tiny": {"preset": "hat_tiny"}},
    "adapt": {"steps": 6, "eval_every": 2, "lr_patch": 16},
    "variants": ["baseline", "image_guided", "ioda", "finetune", "zssr"],
    "experiments": {
        "tasks": {"canon": {"source": "demo_source", "target": "demo_canon", "n_images": 3}},
        "tables": {
            "table1": {"tasks": ["canon"], "backbones": ["safmn_tiny"], "variants": ["baseline", "image_guided", "ioda"]},
            "table5": {"tasks": ["canon"], "backbones": ["safmn_tiny", "hat_tiny"], "variants": ["baseline", "finetune", "ioda"]},
            "table6": {"tasks": ["canon"], "backbones": ["safmn_tiny", "hat_tiny"], "variants": ["baseline", "zssr", "ioda"],
                       "only": {"zssr": ["safmn_tiny"]}},
        },
    },
    "report": {"tsne_samples": 12, "curves": {"task": "canon", "backbone": "safmn_tiny", "variants": ["ioda"]},
               "visuals": {"task": "canon", "backbone": "safmn_tiny", "variants": ["baseline", "ioda"], "crop": 16}},
}

# Known numbers: PSNR of run i of each variant.
PSNR = {"baseline": [20.0], "image_guided": [21.0, 22.0, 24.0], "ioda": [23.0, 23.5, 24.5],
        "finetune": [26.0], "zssr": [19.0, 19.5, 20.0]}


def write_config(tmp_path, cfg) -> str:
    cfg = copy.deepcopy(cfg)
    cfg["run"]["results_dir"] = str(tmp_path / "results")
    cfg["run"]["data_dir"] = str(tmp_path / "data")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def fake_results(tmp_path, cfg_dict=BASE) -> tuple[str, Plan]:
    """Write what evaluate/adapt would have written for every run of the plan."""
    cfg_path = write_config(tmp_path, cfg_dict)
    plan = Plan(load_config(cfg_path))
    rng = np.random.default_rng(0)
    test = plan.split_dir("canon", "test")
    hr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    write_image(test / "HR" / "a.png", hr)
    write_image(test / "LR_x4" / "a.png", hr[::4, ::4])
    for r in plan.runs():
        i = int(r.run[3:]) if r.run.startswith("img") else 0
        bump = 0.5 if r.backbone == "hat_tiny" else 0.0
        psnr = PSNR[r.variant][i] + bump
        ed = plan.eval_dir(r)
        write_json(ed / "summary.json", {"n": 1, "mean_psnr": psnr, "mean_ssim": psnr / 100.0, "device": "cpu"})
        (ed / "per_image.csv").write_text(f"image,psnr,ssim\na,{psnr},{psnr / 100}\n")
        write_image(ed / "images" / "a.png", hr)
        if r.variant != "baseline":
            ad = plan.adapt_dir(r)
            write_json(ad / "adapt.json", {"seconds": 60.0 * (i + 1), "eval_seconds": 6.0, "device": "cpu",
                                           "hardware": "test CPU", "encoder": {"untrained": True}})
            if plan.evaluates(r):
                with open(ad / "curve.csv", "w", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["step", "psnr", "ssim"])
                    for step, p in ((0, psnr - 2), (2, psnr - 1), (4, psnr + 0.25 * (i + 1)), (6, psnr)):
                        w.writerow([step, p, p / 100])
    return cfg_path, plan


@pytest.fixture
def results(tmp_path):
    return fake_results(tmp_path)


# ---- plan ---------------------------------------------------------------------------------------------------
def test_plan_runs_follow_the_tables(results):
    _, plan = results
    runs = plan.runs()
    assert Run("canon", "safmn_tiny", "baseline", "source") in runs
    assert Run("canon", "hat_tiny", "finetune", "all") in runs
    assert [r.run for r in runs if r.variant == "ioda" and r.backbone == "safmn_tiny"] == ["img0", "img1", "img2"]
    # `only` keeps ZSSR to one backbone; the table union has no duplicates
    assert not any(r.variant == "zssr" and r.backbone == "hat_tiny" for r in runs)
    assert len(runs) == len(set(runs))
    assert set(plan.masks_needed()) == {("demo_canon", 0), ("demo_canon", 1), ("demo_canon", 2)}
    assert plan.pretrained() == [("safmn_tiny", "demo_source"), ("hat_tiny", "demo_source")]


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["experiments"]["tables"]["table1"].update(tasks=["nope"]), "experiments.tables.table1.tasks"),
        (lambda c: c["experiments"]["tasks"]["canon"].update(target="missing"), "experiments.tasks.canon.target"),
        (lambda c: c["variants"].remove("zssr"), "experiments.tables.table6.variants"),
        (lambda c: c["experiments"]["tables"]["table6"]["only"].update(zssr=["srformer_tiny"]), "table6.only.zssr"),
        (lambda c: c["report"]["curves"].update(variants=["grid"]), "report.curves.variants"),
    ],
)
def test_plan_cross_checks_name_the_key(tmp_path, edit, key):
    cfg = copy.deepcopy(BASE)
    edit(cfg)
    with pytest.raises(IodaError, match=key.replace(".", r"\.")):
        Plan(load_config(write_config(tmp_path, cfg)))


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["adapt"].update(stpes=3), "'adapt'"),
        (lambda c: c["adapt"].update(steps=0), "'adapt.steps'"),
        (lambda c: c["backbones"]["safmn_tiny"].update(preset="resnet"), "'backbones.safmn_tiny.preset'"),
        (lambda c: c["experiments"]["tables"].update(table7={}), "'experiments.tables'"),
        (lambda c: c["run"].update(device="gpu0"), "'run.device'"),
    ],
)
def test_schema_rejects_typos_naming_the_key(tmp_path, edit, key):
    cfg = copy.deepcopy(BASE)
    edit(cfg)
    with pytest.raises(IodaError) as err:
        load_config(write_config(tmp_path, cfg))
    assert key in str(err.value) and "\n" not in str(err.value)


def test_shipped_configs_validate_and_plan():
    for path, paper in (("params.yaml", False), ("config/paper.yaml", True), (".test/config.yaml", False)):
        cfg = load_config(path)
        plan = Plan(cfg)
        assert cfg["run"]["paper"] is paper
        assert plan.runs()
    paper = load_config("config/paper.yaml")
    a = paper["adapt"]
    assert (a["steps"], a["batch_size"], a["lr_patch"], a["lr"]) == (1500, 2, 128, 1e-5)
    assert a["betas"] == [0.0, pytest.approx(0.99 ** 0.8)]
    assert all(t["n_images"] == 5 for t in paper["experiments"]["tasks"].values())
    assert paper["masks"]["sam_model"] == "vit_h" and paper["encoder"]["name"] == "ViT-B-16-quickgelu"


# ---- aggregate ----------------------------------------------------------------------------------------------
def test_aggregate_mean_population_variance_and_oracle(results):
    cfg_path, plan = results
    assert aggregate.main(["--config", cfg_path]) == 0
    cells = pd.read_csv(plan.metrics_dir() / "aggregate.csv")
    ig = cells[(cells.variant == "image_guided") & (cells.backbone == "safmn_tiny")].iloc[0]
    assert ig.n == 3
    assert ig.psnr_mean == pytest.approx(np.mean([21, 22, 24]))
    assert ig.psnr_var == pytest.approx(np.var([21, 22, 24]), abs=1e-6)  # population variance
    assert ig.seconds_mean == pytest.approx(120.0)
    # every direction-loss run evaluated along the way (not only the plotted curve cell)
    assert ig.oracle_psnr_mean == pytest.approx(np.mean([21.25, 22.5, 24.75])) and ig.eval_seconds_mean == 6.0
    io = cells[(cells.variant == "ioda") & (cells.backbone == "safmn_tiny")].iloc[0]
    # oracle: best step along each curve (step 4: psnr + 0.25 (i+1)), kept apart from the fixed-budget mean
    best = [23.25, 24.0, 25.25]
    assert io.oracle_psnr_mean == pytest.approx(np.mean(best)) and io.oracle_n == 3
    assert io.psnr_mean == pytest.approx(np.mean([23.0, 23.5, 24.5]))
    assert io.oracle_step_mean == pytest.approx(4.0) and io.evaluations_mean == 4
    zs = cells[cells.variant == "zssr"].iloc[0]
    assert math.isnan(zs.oracle_psnr_mean)  # not a direction-loss run: no curve
    metrics = json.loads((plan.metrics_dir() / "metrics.json").read_text())
    assert metrics["canon"]["hat_tiny"]["ioda"]["psnr"] == pytest.approx(np.mean([23.5, 24.0, 25.0]))
    curves = pd.read_csv(plan.metrics_dir() / "curves.csv")
    assert len(curves) == 4 * 9 and set(curves["run"]) == {"img0", "img1", "img2"} and 0 in set(curves["step"])


def test_aggregate_missing_or_broken_file_names_it(results):
    cfg_path, plan = results
    victim = plan.eval_dir(Run("canon", "safmn_tiny", "ioda", "img1")) / "summary.json"
    victim.unlink()
    with pytest.raises(IodaError, match="img1/summary.json"):
        aggregate.main(["--config", cfg_path])
    write_json(victim, {"n": 1})
    with pytest.raises(IodaError, match="mean_psnr"):
        aggregate.main(["--config", cfg_path])
    assert not (plan.metrics_dir() / "aggregate.csv").exists()  # nothing half-written


def test_aggregate_std_and_paired_difference_to_the_source_model(results):
    cfg_path, plan = results
    aggregate.main(["--config", cfg_path])
    cells = pd.read_csv(plan.metrics_dir() / "aggregate.csv")
    ig = cells[(cells.variant == "image_guided") & (cells.backbone == "safmn_tiny")].iloc[0]
    assert ig.psnr_std == pytest.approx(math.sqrt(7 / 3))  # sample std of 21, 22, 24 (ddof=1)
    # source model 20 dB on the same test images: differences 1, 2, 4; every resample's mean lies in [1, 4]
    assert ig.diff_psnr_mean == pytest.approx(7 / 3)
    assert 1.0 <= ig.diff_ci_low < 7 / 3 < ig.diff_ci_high <= 4.0 and ig.ci_resamples == 10_000
    d = stats.paired_diff([21.0, 22.0, 24.0], 20.0, seed=0)  # run.seed seeds the bootstrap
    assert (ig.diff_ci_low, ig.diff_ci_high) == pytest.approx((d.low, d.high), abs=1e-6)
    # the oracle's difference is measured against the same source model
    assert ig.oracle_diff_mean == pytest.approx(np.mean([21.25, 22.5, 24.75]) - 20.0)
    base = cells[(cells.variant == "baseline") & (cells.backbone == "safmn_tiny")].iloc[0]
    assert math.isnan(base.diff_psnr_mean) and base.ci_resamples == 0  # the reference itself
    ft = cells[(cells.variant == "finetune") & (cells.backbone == "hat_tiny")].iloc[0]
    assert ft.diff_psnr_mean == pytest.approx(6.0) and math.isnan(ft.diff_ci_low)  # one run: no interval
    assert math.isnan(ig.validated_psnr_mean) and ig.validated_n == 0  # no validation task configured
    metrics = json.loads((plan.metrics_dir() / "metrics.json").read_text())
    assert metrics["canon"]["safmn_tiny"]["image_guided"]["diff_ci_low"] == pytest.approx(ig.diff_ci_low, abs=1e-5)


VALIDATED = copy.deepcopy(BASE)
VALIDATED["datasets"]["demo_halo"] = {}
VALIDATED["experiments"]["tasks"] = {
    "canon": {"source": "demo_source", "target": "demo_canon", "n_images": 3, "validation": "halo"},
    "halo": {"source": "demo_source", "target": "demo_halo", "n_images": 3, "validation": "canon"},
}


def write_curves(plan, task, backbone, variant, rows_of_run):
    for run in plan.run_ids(task, variant):
        with open(plan.adapt_dir(Run(task, backbone, variant, run)) / "curve.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "psnr", "ssim"])
            w.writerows([step, p, p / 100] for step, p in rows_of_run(int(run[3:])))


def test_validation_cells_join_the_plan(tmp_path):
    _, plan = fake_results(tmp_path, VALIDATED)
    # halo is in no table, but its direction-loss cells (and its source model) run for canon's validated step
    assert ("halo", "safmn_tiny", "image_guided") in plan.support_cells()
    assert ("halo", "hat_tiny", "ioda") in plan.support_cells() and ("halo", "hat_tiny", "baseline") in plan.cells()
    assert ("halo", "safmn_tiny", "zssr") not in plan.cells()  # no curve: nothing to validate
    assert Run("halo", "safmn_tiny", "image_guided", "img2") in plan.adapt_runs()
    assert not set(plan.support_cells()) & set(plan.table_cells())


def test_validated_statistic_never_reads_the_tasks_own_curves_to_choose(tmp_path):
    cfg_path, plan = fake_results(tmp_path, VALIDATED)
    # halo (validation) peaks at step 2 on average; canon's own curves peak at step 4 (their oracle)
    write_curves(plan, "halo", "safmn_tiny", "ioda", lambda i: [(0, 20.0), (2, 21.0 + i), (4, 20.5 + i), (6, 20.0)])
    write_curves(plan, "canon", "safmn_tiny", "ioda", lambda i: [(0, 20.0), (2, 22.0 + i), (4, 30.0), (6, 23.0)])
    aggregate.main(["--config", cfg_path])

    def ioda_cell():
        cells = pd.read_csv(plan.metrics_dir() / "aggregate.csv")
        return cells[(cells.task == "canon") & (cells.backbone == "safmn_tiny") & (cells.variant == "ioda")].iloc[0]

    c = ioda_cell()
    assert c.validation_task == "halo" and c.validated_step == 2
    assert c.validated_psnr_mean == pytest.approx(23.0) and c.oracle_psnr_mean == pytest.approx(30.0)
    assert c.validated_diff_mean == pytest.approx(3.0)  # 22, 23, 24 against the 20 dB source model
    runs = pd.read_csv(plan.metrics_dir() / "runs.csv")
    assert runs[(runs.task == "canon") & (runs.variant == "ioda") & (runs.backbone == "safmn_tiny")][
        "validated_psnr"].tolist() == pytest.approx([22.0, 23.0, 24.0])
    # poison the task's own curves everywhere but the chosen step: the choice and the value do not move
    write_curves(plan, "canon", "safmn_tiny", "ioda", lambda i: [(0, 99.0), (2, 22.0 + i), (4, -5.0), (6, 99.0)])
    aggregate.main(["--config", cfg_path])
    c = ioda_cell()
    assert c.validated_step == 2 and c.validated_psnr_mean == pytest.approx(23.0) and c.oracle_psnr_mean == 99.0
    # the task's own curves gone: the step is still chosen (on halo), there is just no value to read
    for run in plan.run_ids("canon", "ioda"):
        (plan.adapt_dir(Run("canon", "safmn_tiny", "ioda", run)) / "curve.csv").unlink()
    aggregate.main(["--config", cfg_path])
    c = ioda_cell()
    runs = pd.read_csv(plan.metrics_dir() / "runs.csv")
    mine = runs[(runs.task == "canon") & (runs.variant == "ioda") & (runs.backbone == "safmn_tiny")]
    assert (mine["validated_step"] == 2).all() and mine["validated_psnr"].isna().all() and c.validated_n == 0
    # the validation task's curves do move it: halo now peaks at step 6
    write_curves(plan, "halo", "safmn_tiny", "ioda", lambda i: [(0, 20.0), (2, 20.5), (4, 20.6), (6, 21.0)])
    write_curves(plan, "canon", "safmn_tiny", "ioda", lambda i: [(0, 20.0), (2, 22.0 + i), (4, 30.0), (6, 23.0)])
    aggregate.main(["--config", cfg_path])
    c = ioda_cell()
    assert c.validated_step == 6 and c.validated_psnr_mean == pytest.approx(23.0)


@pytest.mark.parametrize(
    "validation, match",
    [("nope", "expected another task"), ("canon", "expected another task"), ("other", "same source dataset")],
)
def test_validation_task_is_checked(tmp_path, validation, match):
    cfg = copy.deepcopy(VALIDATED)
    cfg["datasets"]["demo_other"] = {}
    cfg["experiments"]["tasks"]["other"] = {"source": "demo_canon", "target": "demo_halo"}
    cfg["experiments"]["tasks"]["canon"]["validation"] = validation
    with pytest.raises(IodaError, match=r"experiments\.tasks\.canon\.validation.*" + match):
        Plan(load_config(write_config(tmp_path, cfg)))


def test_the_old_targets_key_names_its_new_name(tmp_path):
    cfg = copy.deepcopy(BASE)
    cfg["experiments"]["tasks"]["canon"]["targets"] = cfg["experiments"]["tasks"]["canon"].pop("n_images")
    with pytest.raises(IodaError, match=r"experiments\.tasks\.canon\.targets'.*renamed to 'n_images'"):
        load_config(write_config(tmp_path, cfg))


# ---- tables -------------------------------------------------------------------------------------------------
def test_tables_demo_config_has_no_paper_column(results):
    cfg_path, plan = results
    aggregate.main(["--config", cfg_path])
    assert tables.main(["--config", cfg_path]) == 0
    for name in ("table1", "table5", "table6"):
        for ext in ("csv", "md", "tex"):
            assert (plan.tables_dir() / f"{name}.{ext}").stat().st_size > 0
    md = (plan.tables_dir() / "table1.md").read_text()
    assert "Paper" not in md and "not the paper's" in md and "population, ddof=0" in md
    assert f"| {np.mean([21, 22, 24]):.3f} ± {np.std([21, 22, 24], ddof=1):.3f} |" in md  # mean ± std
    assert f"| {np.var([21, 22, 24]):.3g} |" in md  # the paper's statistic, its own column
    # differences to the source model with their bootstrap and t intervals and sign-flip p; image-guided's
    # 1, 2, 4 dB: the bootstrap excludes 0, the t interval does not, so no effect is shown (†)
    assert "| +2.333 [+1.000, +4.000]; t [-1.461, +6.128]; p = 0.25 † |" in md
    assert "| +3.667 [+3.000, +4.500]; t [+1.769, +5.564]; p = 0.25 |" in md
    assert "UNTRAINED" in md
    t1 = pd.read_csv(plan.tables_dir() / "table1.csv")
    assert list(t1["method"]) == ["Baseline (source model)", "Image-guided", "IODA (occlusion + instance)"]
    t5 = pd.read_csv(plan.tables_dir() / "table5.csv")
    assert list(t5["backbone"]) == ["safmn_tiny", "hat_tiny"]
    assert t5["ioda_diff_psnr_mean"].iloc[0] == pytest.approx(np.mean([23.0, 23.5, 24.5]) - 20.0)
    assert (t5["n"] == 3).all()
    tex = (plan.tables_dir() / "table5.tex").read_text()
    assert r"safmn\_tiny" in tex and r"$\pm$" in tex and r"\begin{tabular}" in tex
    t6 = pd.read_csv(plan.tables_dir() / "table6.csv")
    quoted = t6[t6["source"] == "quoted from the paper"]
    assert len(quoted) == len(TABLE6_QUOTED)
    ours = t6[t6["method"] == "safmn_tiny + IODA"].iloc[0]
    assert ours["minutes"] == pytest.approx(2.0)  # mean of 60, 120, 180 s (adaptation only)
    assert ours["eval_minutes"] == pytest.approx(0.1)  # evaluations: their own column
    assert ours["hardware"] == "test CPU"
    # the three statistics side by side, each named for what it is, in every table
    for name in ("table1", "table5", "table6"):
        md = (plan.tables_dir() / f"{name}.md").read_text()
        assert "PSNR, final step" in md and "PSNR, best step, oracle" in md and "the authors' statistic" in md
        assert "PSNR, validated step" in md and "Δ vs source, final step [95% CI]" in md
        assert "Protocol `paper`" in md
    t1 = pd.read_csv(plan.tables_dir() / "table1.csv")
    assert t1["oracle_psnr_mean"].iloc[2] == pytest.approx(np.mean([23.25, 24.0, 25.25]))
    assert t5["ioda_oracle_psnr_mean"].iloc[1] == pytest.approx(np.mean([23.75, 24.5, 25.75]))


def test_tables_mark_intervals_that_include_zero(results):
    cfg_path, plan = results
    # a source model at 22.5 dB: image-guided's differences -1.5, -0.5, +1.5 straddle 0; IODA's 0.5, 1, 2 have a
    # bootstrap interval above 0 but a t interval that reaches below it: both marked
    write_json(plan.eval_dir(Run("canon", "safmn_tiny", "baseline", "source")) / "summary.json",
               {"n": 1, "mean_psnr": 22.5, "mean_ssim": 0.2, "device": "cpu"})
    aggregate.main(["--config", cfg_path])
    tables.main(["--config", cfg_path])
    rows = {line.split(" | ")[0]: line for line in (plan.tables_dir() / "table1.md").read_text().splitlines()
            if line.startswith("| ")}
    # |sum| 0.5 of -1.5, -0.5, +1.5 is the smallest any sign pattern reaches: p = 1
    assert "[-1.500, +1.500]; t [-3.961, +3.628]; p = 1 †" in rows["| Image-guided"]
    assert "[+0.500, +2.000]; t [-0.731, +3.064]; p = 0.25 †" in rows["| IODA (occlusion + instance)"]
    assert r"$\dagger$" in (plan.tables_dir() / "table1.tex").read_text()
    assert tables.fmt_cell("ci", [0.1, -0.2, 0.3]).endswith("†") and tables.fmt_cell("ci", [1.0, math.nan, math.nan]) == "+1.000"
    assert tables.fmt_cell("ci", [1.0, 0.5, 1.5, 0.2, 1.8, 0.0625]) == "+1.000 [+0.500, +1.500]; t [+0.200, +1.800]; p = 0.0625"
    assert tables.fmt_cell("ci", [1.0, 0.5, 1.5, -0.2, 2.2, 0.0625]).endswith("†")  # the t interval reaches 0


def test_tables_paper_flag_adds_paper_numbers_and_difference(tmp_path):
    cfg = copy.deepcopy(BASE)
    cfg["run"]["paper"] = True
    cfg["datasets"] = {"DF2K": {}, "RealSR_Canon": {}}
    cfg["experiments"]["tasks"]["canon"].update(source="DF2K", target="RealSR_Canon")
    cfg["backbones"] = {"safmn_tiny": {"preset": "safmn_l"}, "hat_tiny": {"preset": "hat"}}
    cfg_path, plan = fake_results(tmp_path, cfg)
    aggregate.main(["--config", cfg_path])
    tables.main(["--config", cfg_path])
    t1 = pd.read_csv(plan.tables_dir() / "table1.csv")
    ioda_row = t1[t1["method"].str.startswith("IODA")].iloc[0]
    assert ioda_row["paper_psnr"] == pytest.approx(27.461) and ioda_row["paper_var"] == pytest.approx(0.008)
    assert ioda_row["delta_psnr"] == pytest.approx(np.mean([23.0, 23.5, 24.5]) - 27.461)
    assert ioda_row["delta_oracle"] == pytest.approx(np.mean([23.25, 24.0, 25.25]) - 27.461)
    md = (plan.tables_dir() / "table1.md").read_text()
    assert "Paper PSNR" in md and "Δ PSNR (final − paper)" in md and "Δ PSNR (oracle − paper)" in md
    assert "Paper variance" in md and "| 0.008 |" in md and "Δ PSNR (validated − paper)" in md
    assert "Paper IODA (occlusion + instance) variance" in (plan.tables_dir() / "table5.md").read_text()
    t5 = pd.read_csv(plan.tables_dir() / "table5.csv")
    assert t5["paper_finetune"].tolist() == pytest.approx([29.875, 29.989])
    t6 = pd.read_csv(plan.tables_dir() / "table6.csv")
    hat = t6[t6["method"] == "hat_tiny + IODA"].iloc[0]
    assert hat["paper_minutes"] == pytest.approx(9.01)


def test_paper_numbers_match_method_md():
    assert paper_value("table1", "DF2K", "RealSR_Canon", "safmn_l", "ioda").psnr == 27.461
    assert paper_value("table4", "Cityscapes", "ACDC_snow", "safmn", "ioda").psnr == 30.521
    assert paper_value("table5", "DF2K", "RealSR_Canon", "srformer", "baseline").psnr == 25.946
    assert paper_value("table1", "DF2K", "RealSR_Canon", "safmn_tiny", "ioda") is None  # not the paper's model
    assert paper_value("table2", "DF2K", "RealSR_Canon", "safmn_l", "text_guided").psnr is None
    assert len(PAPER["table4"]) == 14


# ---- figures and summary ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fig1_bars", "curves", "fig8_visuals", "paired"])
def test_figures_write_png_and_pdf(tmp_path, name):
    cfg = copy.deepcopy(VALIDATED)
    cfg["report"]["paired"] = {"task": "canon", "backbone": "safmn_tiny", "variants": ["image_guided", "ioda"]}
    cfg_path, plan = fake_results(tmp_path, cfg)
    aggregate.main(["--config", cfg_path])
    assert figures.main([name, "--config", cfg_path]) == 0
    png, pdf = plan.figures_dir() / f"{name}.png", plan.figures_dir() / f"{name}.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:4] == b"%PDF"


def test_fig8_missing_sr_image_fails_without_output(results):
    cfg_path, plan = results
    (plan.eval_dir(Run("canon", "safmn_tiny", "ioda", "img0")) / "images" / "a.png").unlink()
    with pytest.raises(IodaError, match="ioda/img0/images/a.png"):
        figures.main(["fig8_visuals", "--config", cfg_path])
    assert not (plan.figures_dir() / "fig8_visuals.png").exists()


def test_fig4_tsne_with_the_tiny_encoder(results):
    from ioda.masks import save_label_map

    cfg_path, plan = results
    rng = np.random.default_rng(1)
    lr = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    write_image(plan.split_dir("canon", "pool") / "LR_x4" / "p0.png", lr)
    labels = np.zeros((24, 24), dtype=np.int32)
    labels[:12] = 1
    labels[12:, :12] = 2
    save_label_map(plan.labels("demo_canon", 0), labels, {"source": "test"})
    feats, _, _ = figures.tsne_features(plan, 12, seed=0)
    assert {k: v.shape[0] for k, v in feats.items()} == dict.fromkeys(feats, 12)
    assert all(np.isfinite(figures.dispersion(v)) and figures.dispersion(v) >= 0 for v in feats.values())
    assert figures.main(["fig4_tsne", "--config", cfg_path]) == 0
    assert (plan.figures_dir() / "fig4_tsne.png").stat().st_size > 1000


def test_dispersion_is_zero_for_identical_features_and_grows_with_spread():
    same = np.tile([[1.0, 0.0, 0.0]], (5, 1))
    assert figures.dispersion(same) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    near = same + 0.01 * rng.standard_normal(same.shape)
    far = same + 1.0 * rng.standard_normal(same.shape)
    assert figures.dispersion(near) < figures.dispersion(far)


def test_summary_states_untrained_and_links_figures(results):
    cfg_path, plan = results
    aggregate.main(["--config", cfg_path])
    tables.main(["--config", cfg_path])
    figures.main(["fig1_bars", "--config", cfg_path])
    assert summary.main(["--config", cfg_path]) == 0
    text = (plan.results / "summary.md").read_text()
    assert "untrained" in text and "not** the paper's numbers" in text
    assert "](figures/fig1_bars.png)" in text and "fig4_tsne" not in text.split("## Figures")[1]
    assert "**Table 1" in text and "**Table 6" in text
    # the notes every table carries are said once, after the tables
    notes = [ln for ln in text.split("## Tables")[1].split("## Figures")[0].splitlines() if ln.startswith("- ")]
    assert "Notes to every table above:" in text and len(notes) == len(set(notes)) > 3
    # effects in words: both IODA cells gain; image-guided's 1, 2, 4 dB have a bootstrap interval above 0 but a t
    # interval that reaches 0 (no effect under the both-intervals rule); ZSSR's -1, -0.5, 0 dB reach 0; fine-tune:
    # one run
    effects = text.split("## Effects")[1].split("##")[0]
    assert "- Final step: 2 of 4 adapted cells show an effect" in effects and "2 gains, 0 losses" in effects
    assert "2 with one run have no interval" in effects and "canon/safmn_tiny/ioda +3.667 dB" in effects
    assert "- Best step, oracle: 2 of 3" in effects and "Validated" not in effects  # no validation task here
    assert "min in total over" in text


# ---- small-N statistics: t interval and sign-flip p beside the bootstrap ---------------------------------------
def _hand_t(d: list[float]) -> tuple[float, float]:
    """Student-t 95% interval of three values by the textbook formula; t(0.975, 2) = 0.95 sqrt(2 / 0.0975) in
    closed form."""
    assert len(d) == 3
    x = np.asarray(d)
    half = 0.95 * math.sqrt(2 / 0.0975) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean() - half, x.mean() + half


def test_aggregate_writes_t_interval_and_sign_flip_columns(results):
    cfg_path, plan = results
    aggregate.main(["--config", cfg_path])
    cells = pd.read_csv(plan.metrics_dir() / "aggregate.csv")
    for prefix in ("", "validated_", "oracle_"):
        for col in ("diff_t_low", "diff_t_high", "sign_flip_p"):
            assert prefix + col in cells.columns
    for s in aggregate.STATISTICS:  # beside each statistic's bootstrap columns
        assert s.t_low.replace("_t_", "_ci_") == s.low and s.sign_p.endswith("sign_flip_p")
    ig = cells[(cells.variant == "image_guided") & (cells.backbone == "safmn_tiny")].iloc[0]
    assert (ig.diff_t_low, ig.diff_t_high) == pytest.approx(_hand_t([1.0, 2.0, 4.0]), abs=1e-6)
    assert ig.sign_flip_p == 0.25 and ig.oracle_sign_flip_p == 0.25
    assert (ig.oracle_diff_t_low, ig.oracle_diff_t_high) == pytest.approx(_hand_t([1.25, 2.5, 4.75]), abs=1e-6)
    assert math.isnan(ig.validated_sign_flip_p)  # no validation task configured
    base = cells[(cells.variant == "baseline") & (cells.backbone == "safmn_tiny")].iloc[0]
    assert math.isnan(base.diff_t_low) and math.isnan(base.sign_flip_p)  # the reference itself
    ft = cells[(cells.variant == "finetune") & (cells.backbone == "hat_tiny")].iloc[0]
    assert math.isnan(ft.diff_t_low) and ft.sign_flip_p == 1.0  # one run
    runs = pd.read_csv(plan.metrics_dir() / "runs.csv")
    assert "sign_flip_p" not in runs.columns and len(runs) == len(plan.runs())


def test_tables_and_summary_use_both_intervals(results):
    cfg_path, plan = results
    aggregate.main(["--config", cfg_path])
    tables.main(["--config", cfg_path])
    md = (plan.tables_dir() / "table1.md").read_text()
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ")}
    # image-guided's bootstrap [1, 4] excludes 0 but its t interval does not: marked
    assert "+2.333 [+1.000, +4.000]; t [-1.461, +6.128]; p = 0.25 †" in rows["| Image-guided"]
    assert "+3.667 [+3.000, +4.500]; t [+1.769, +5.564]; p = 0.25 |" in rows["| IODA (occlusion + instance)"]
    assert "BOTH intervals exclude 0" in md and "1/16" in md
    t1 = pd.read_csv(plan.tables_dir() / "table1.csv")
    assert {"diff_t_low", "diff_t_high", "sign_flip_p", "oracle_sign_flip_p"} <= set(t1.columns)
    summary.main(["--config", cfg_path])
    effects = (plan.results / "summary.md").read_text().split("## Effects")[1].split("##")[0]
    assert "- Final step: 2 of 4 adapted cells show an effect (both the 95% bootstrap and t intervals" in effects
    assert "canon/safmn_tiny/image_guided" not in effects and "sign-flip p = 0.25" in effects
    assert "at N = 3 the smallest two-sided sign-flip p is 1/4" in effects
