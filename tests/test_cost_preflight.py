"""`ioda plan` (cost projection from measured timings) and `ioda preflight` (disk, device memory, stand-ins)."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from types import SimpleNamespace

import pytest

from ioda import cli
from ioda.config import paper_config
from ioda.cost import Job, critical_path, jobs_of, makespan, render
from ioda.errors import IodaError
from ioda.adapt.variants import VARIANTS
from ioda.plan import Plan
from ioda import preflight

A = paper_config()["adapt"]


def timings(**figs) -> dict:
    return {"device": "cuda", "hardware": "test GPU", "figures": figs}


def step(s, batch=A["batch_size"], patch=A["lr_patch"], mem=None):
    return {"s": s, "batch": batch, "lr_patch": patch, "peak_mem_mib": mem}


def test_adaptation_hours_are_steps_times_the_measured_step():
    plan = Plan(paper_config())
    t = timings(adapt_step={"safmn_l": step(1.0), "hat": step(2.0), "srformer": step(3.0)})
    jobs = {j.name: j for j in jobs_of(plan, t)}
    per = {"safmn_l": 1.0, "hat": 2.0, "srformer": 3.0}
    direction = [(task, b, v) for task, b, v in plan.cells() if VARIANTS[v].direction]
    for task, b, v in direction:
        j = jobs[f"adapt/{b}/{task}/{v}"]
        assert j.seconds == pytest.approx(A["steps"] * per[b] * plan.tasks[task]["n_images"])
        assert "evaluations along the way" in j.why  # no eval figure: left out, and said
    assert jobs["adapt/safmn_l/canon/finetune"].seconds is None  # no finetune figure
    assert jobs["pretrain/hat/DF2K"].seconds == 0.0  # official weights imported


def test_a_figure_at_other_settings_is_not_used():
    plan = Plan(paper_config())
    t = timings(adapt_step={"hat": step(2.0, batch=1)})
    j = next(j for j in jobs_of(plan, t) if j.name == "adapt/hat/canon/ioda")
    assert j.seconds is None and "measured at batch 1, the config uses 2" in j.why


def test_makespan_follows_dependencies_and_devices():
    jobs = [Job("r", "a", 10.0), Job("r", "b", 5.0, ["a"]), Job("r", "c", 7.0), Job("r", "d", None, ["c"])]
    assert makespan(jobs, 1) == 22.0
    assert makespan(jobs, 2) == 15.0
    assert critical_path(jobs) == 15.0


def test_plan_cli_prints_rules_totals_and_missing(tmp_path, capsys):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(timings(adapt_step={"safmn_l": step(0.5)}, masks_image={"vit_h": {"s": 10.0}})))
    assert cli.main(["plan", "--config", "config/paper.yaml", "--timings", str(path), "--devices", "1", "4"]) == 0
    out = capsys.readouterr().out
    assert "masks" in out and f"{25 * 10 / 3600:.2f}" in out  # 25 label maps x 10 s
    assert "wall time on 4 devices" in out and "critical path" in out
    assert "no adapt_step figure for hat on cuda" in out and "15.3 / 9.0 / 11.2 min" in out
    path.write_text("[]")
    assert cli.main(["plan", "--config", "config/paper.yaml", "--timings", str(path)]) == 2


def test_render_of_the_shipped_gpu_timings_uses_only_gpu_figures():
    from ioda.files import read_json

    t = read_json("benchmarks/out/timings-cuda.json")
    assert t["device"] == "cuda" and "H100" in t["hardware"]
    text = render(Plan(paper_config()), t, [1], "timings-cuda.json")
    assert "hat          11.2 min" in text and "no pretrain_step figure for safmn_l on cuda" in text


def test_preflight_names_missing_disk(monkeypatch, tmp_path):
    cfg = paper_config()
    cfg["run"].update(device="cpu", results_dir=str(tmp_path / "results"))
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(1, 0, 1024))
    with pytest.raises(IodaError) as err:
        preflight.check(cfg, None)
    msg = str(err.value)
    assert msg.startswith("preflight: disk:") and "GiB free, the run writes about" in msg and "\n" not in msg


def test_preflight_names_missing_device_memory(monkeypatch):
    import torch

    cfg = paper_config()
    t = timings(adapt_step={"safmn_l": step(0.1, mem=4000), "hat": step(0.4, mem=24314), "srformer": step(0.7, mem=14330)})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=16 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "small GPU")
    with pytest.raises(IodaError, match=r"small GPU has 16\.0 GiB, hat adaptation at batch 2, LR patch 128 needs "
                                        r"23\.7 GiB \(measured on test GPU\)"):
        preflight.check(cfg, t)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=80 * 2**30))
    report = preflight.check(cfg, t)
    assert report["device_memory"]["need_mib"] == 24314


def test_preflight_cpu_run_passes_and_says_what_it_did_not_check(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(open(".test/config.yaml").read())
    assert cli.main(["preflight", "--config", str(cfg), "--device", "cpu", "--out", str(tmp_path / "p.json")]) == 0
    assert "preflight ok" in capsys.readouterr().out
    assert json.loads((tmp_path / "p.json").read_text())["device_memory"]["note"].startswith("not checked")
