"""benchmarks/gpu_paper.py, the one GPU benchmark of the paper's networks: its smoke run (tiny presets, a few steps,
on the CPU) goes through every measurement and writes the JSON with the keys the speed goals need, marked as CPU."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKBONE_KEYS = {"fp32_s_per_run", "fast_s_per_run", "fast_compile_s", "fast_peak_mib", "psnr_delta_db",
                 "weights_max_abs_diff", "fp32_s_per_step", "fast_s_per_step"}


@pytest.mark.slow
def test_smoke_run_writes_every_key_marked_as_cpu(tmp_path):
    out = tmp_path / "gpu-paper.json"
    (tmp_path / "dev-out").mkdir()  # $OUT of the device tool: the JSON is copied there too
    proc = subprocess.run([sys.executable, "benchmarks/gpu_paper.py", "--smoke", "--device", "cpu", "--threads", "1",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), IODA_PROGRESS="0", OUT=str(tmp_path / "dev-out")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["smoke"] is True and "NOT GPU figures" in r["note"]
    assert r["hardware"]["device"] == "cpu" and r["torch"]
    assert all("error" not in v and "skipped" not in v for v in r["parts"].values()), r["parts"]
    for backbone in ("safmn_l", "hat", "srformer"):
        row = r[backbone]
        assert row["preset"].endswith("_tiny") and BACKBONE_KEYS <= set(row)
        assert math.isfinite(row["fp32_s_per_run"]) and row["fp32_s_per_run"] > 0 and row["fast_s_per_run"] > 0
        assert row["fast_peak_mib"] is None  # no GPU memory on a CPU
        assert row["psnr_delta_db"] == 0.0 and row["weights_max_abs_diff"] == 0.0  # fast is fp32 eager on a CPU
    assert r["pretrain_plain_img_s"] > 0 and r["pretrain_fast_img_s"] > 0
    assert r["k_runs"]["stacked"]["s_per_step_all_runs"] > 0
    assert set(r["goals_met"].values()) == {None}  # CPU figures are never held against the GPU goals
    assert json.loads((tmp_path / "dev-out" / out.name).read_text()) == r
