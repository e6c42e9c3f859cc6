"""The paper configuration end to end on stand-in inputs: README's stand-in block (read from README, so the two
cannot drift) runs config/paper.yaml with its CPU overrides in a fresh copy of the project, on the real
architectures at full size. Every job succeeds, Tables 1-6 and the figures are written with the paper's numbers
beside ours, every report says in its first line that the inputs are stand-ins, a second run has nothing to do,
a stand-in is refused without run.standins, and DVC driven by the paper configuration (params file switch) reruns
only the adaptation onward when one adaptation key changes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ioda.standins.guard import BANNER

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = dict(os.environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
MARK = "paper-standins-command"


def readme_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {MARK} -->\n(.*?)<!-- /{MARK} -->", text, re.S)
    assert m, f"README.md has no <!-- {MARK} --> block"
    return [ln for ln in m.group(1).splitlines() if ln.strip() and not ln.startswith("```")]


def sh(cmd: str, cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def job_stats(output: str) -> dict[str, int]:
    m = re.search(r"Job stats:\n.*?\n-+ +-+\n(.*?\ntotal +\d+)", output, re.S)
    assert m, output[-2000:]
    return {row.split()[0]: int(row.split()[1]) for row in m.group(1).splitlines()}


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, copy_project):
    proj = copy_project(ROOT, tmp_path_factory.mktemp("paper") / "ioda")
    commands = readme_block()
    assert len(commands) == 2 and commands[0].startswith("ioda standins") and "snakemake" in commands[1]
    seconds, procs = [], []
    for cmd in commands:
        start = time.perf_counter()
        procs.append(sh(cmd.replace("ioda standins", f"{sys.executable} -m ioda standins", 1), proj))
        seconds.append(time.perf_counter() - start)
        assert procs[-1].returncode == 0, f"{cmd}\n{procs[-1].stdout[-3000:]}\n{procs[-1].stderr[-3000:]}"
    print(f"\npaper DAG on stand-ins: stand-ins {seconds[0]:.0f} s, workflow {seconds[1]:.0f} s")
    return {"dir": proj, "commands": commands, "procs": procs, "seconds": seconds}


def test_every_job_of_the_paper_dag_runs_on_stand_ins(paper_run):
    proj, out = paper_run["dir"], paper_run["procs"][1].stderr
    jobs = job_stats(out)
    dry = sh("snakemake -n --forceall --configfile config/paper.yaml", proj)  # the real config's job kinds
    kinds = lambda stats: {re.sub(r"_\d+_images$", "_N_images", k) for k in stats}  # noqa: E731 (N: targets)
    assert kinds(job_stats(dry.stdout + dry.stderr)) == kinds(jobs)
    assert f"{jobs['total']} of {jobs['total']} steps (100%) done" in out
    tables = sorted((proj / "results" / "tables").glob("table*.md"))
    assert [t.stem for t in tables] == [f"table{i}" for i in range(1, 7)]
    for t in tables:
        text = t.read_text()
        assert text.startswith(f"**{BANNER}"), t
        assert "Paper" in text and re.search(r"\| \d+\.\d+", text), t  # the paper's numbers beside ours
        assert (t.with_suffix(".tex")).read_text().splitlines()[2].startswith(r"\caption{STAND-IN INPUTS")
    for fig in ("fig1_bars", "fig4_tsne", "fig8_visuals", "curves"):
        assert (proj / "results" / "figures" / f"{fig}.png").stat().st_size > 0
    assert (proj / "results" / "summary.md").read_text().splitlines()[0] == f"> **{BANNER}**"
    # the real architectures at full size: SAFMN-L, HAT, SRFormer, ViT-B/16 Alpha-CLIP (adapt.json), SAM vit_h
    info = yaml.safe_load((proj / "results" / "adapt" / "hat" / "canon" / "ioda" / "img0" / "adapt.json").read_text())
    assert info["model"]["preset"] == "hat" and "ViT-B-16" in str(info)
    sam = yaml.safe_load((proj / "results" / "masks" / "RealSR_Canon" / "img0.json").read_text())
    assert sam["source"] == "sam" and sam["parameters"]["model_type"] == "vit_h"


def test_second_run_has_nothing_to_do(paper_run):
    again = sh(paper_run["commands"][1].replace("--cores 2", "-n --cores 2"), paper_run["dir"])
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_stand_ins_are_refused_without_the_key(paper_run):
    proc = sh(f"{sys.executable} -m ioda preflight --config config/paper.yaml", paper_run["dir"])
    assert proc.returncode == 2
    assert "a stand-in file" in proc.stderr and "run.standins: true" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def test_dvc_on_the_paper_config_reruns_only_adaptation_onward(paper_run):
    """README: DVC drives the paper configuration through params.yaml (the params file switch)."""
    proj = paper_run["dir"]  # the last test of the module: it may change the run
    merged = _merge(yaml.safe_load((proj / "config" / "paper.yaml").read_text()),
                    yaml.safe_load((proj / "config" / "paper_standins.yaml").read_text()))
    (proj / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    env = paper_run["commands"][1].split("snakemake")[0]  # the block's environment (HF cache of the stand-ins)
    dvc = str(BIN / "dvc")
    for cmd in (f"{dvc} init -q --no-scm", f"{env}{dvc} commit -f -q"):
        proc = sh(cmd, proj)
        assert proc.returncode == 0, proc.stderr[-3000:]
    watched = {
        "pretrain": proj / "results" / "pretrain" / "safmn_l" / "GTA5.safetensors",
        "import": proj / "results" / "pretrain" / "hat" / "DF2K.safetensors",
        "masks": proj / "results" / "masks" / "RealSR_Canon" / "img0.npz",
        "ioda": proj / "results" / "adapt" / "safmn_l" / "canon" / "ioda" / "img0" / "model.safetensors",
        "zssr": proj / "results" / "adapt" / "safmn_l" / "canon" / "zssr" / "img0" / "model.safetensors",
        "summary": proj / "results" / "summary.md",
    }
    before = {k: p.stat().st_mtime_ns for k, p in watched.items()}
    merged["adapt"]["zssr_steps"] += 1  # one adaptation key
    (proj / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    proc = sh(f"{env}{dvc} repro", proj)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Stage 'data' didn't change, skipping" in proc.stdout
    assert "Stage 'pretrain' didn't change, skipping" in proc.stdout
    after = {k: p.stat().st_mtime_ns for k, p in watched.items()}
    for k in ("pretrain", "import", "masks", "ioda"):
        assert after[k] == before[k], f"{k} was redone"
    for k in ("zssr", "summary"):
        assert after[k] > before[k], f"{k} was not redone"
