"""Fixtures shared by several test modules (so test modules never import each other).

`e2e`: one real run of the CI config (.test/config.yaml) in a fresh copy of the project, started, interrupted
(Ctrl-C) during adaptation, then resumed to completion; the expensive part of the suite (about a minute on
2 cores), so it runs once per session and test_workflow.py and test_dvc.py share it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ioda.config import load_config
from ioda.plan import Plan, Run

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")


def _copy_project(src: Path, dst: Path) -> Path:
    """What a fresh clone of src holds, copied to dst (no data/, results/, caches)."""
    # benchmarks/pipeline.py owns "what a fresh clone holds"; load it by path (benchmarks/ is not a package).
    spec = importlib.util.spec_from_file_location("ioda_pipeline_benchmark", ROOT / "benchmarks" / "pipeline.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.copy_project(src, dst)


def _run_interrupted(proj: Path, out_file: Path) -> dict:
    """Start the workflow, press Ctrl-C (SIGINT to its process group) once the first adaptation job runs."""
    adapt_logs = proj / "logs" / "adapt"
    with open(out_file, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/default",
                                 "--cores", "2"], cwd=proj, env=ENV, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.time() + 300
            while time.time() < deadline and proc.poll() is None and not (
                    adapt_logs.is_dir() and any(adapt_logs.rglob("*.log"))):
                time.sleep(0.2)
            started = sorted(adapt_logs.rglob("*.log")) if adapt_logs.is_dir() else []
            time.sleep(1.0)  # inside `ioda adapt` by now
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    # one log per backbone/task/variant cell; the cell's job adapts all its runs
    plan = Plan(load_config(proj / "params.yaml"))
    cells = [p.relative_to(adapt_logs).with_suffix("").parts for p in started]
    run_dirs = [proj / plan.adapt_dir(Run(task, backbone, variant, r))
                for backbone, task, variant in cells for r in plan.run_ids(task, variant)]
    return {"rc": rc, "interrupted_runs": run_dirs,
            "left_models": [d for d in run_dirs if (d / "model.safetensors").exists()],
            "summary_after_interrupt": (proj / "results" / "summary.md").exists()}


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory) -> dict:
    """{dir, proc, seconds, interrupt}: the shared end-to-end run (see the module docstring)."""
    base = tmp_path_factory.mktemp("e2e")
    proj = base / "ioda"
    _copy_project(ROOT, proj)
    shutil.copy(proj / ".test" / "config.yaml", proj / "params.yaml")
    start = time.perf_counter()
    interrupt = _run_interrupted(proj, base / "interrupted.out")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/default", "--cores", "2"],
                          cwd=proj, env=ENV, capture_output=True, text=True, timeout=600)
    return {"dir": proj, "proc": proc, "seconds": time.perf_counter() - start, "interrupt": interrupt}


@pytest.fixture(scope="session")
def copy_project():
    """_copy_project(src, dst) for tests that need a project of their own."""
    return _copy_project


@pytest.fixture(scope="session")
def e2e(e2e_run) -> Path:
    """The finished end-to-end project folder (fails here, with Snakemake's stderr, if the run failed)."""
    assert e2e_run["proc"].returncode == 0, e2e_run["proc"].stderr[-3000:]
    return e2e_run["dir"]


@pytest.fixture(scope="session")
def e2e_interrupt(e2e_run, e2e) -> dict:
    """What the interrupted first attempt of the end-to-end run left behind (the resumed run succeeded)."""
    return e2e_run["interrupt"]
