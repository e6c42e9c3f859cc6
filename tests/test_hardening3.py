"""Hardening, third round: a crash that never ended, stand-ins that slipped through, and the newest commands.
Each test is one case a hostile new user tried; each ends in one clear line or a traceback and a non-zero
exit, never a hang."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ioda.errors import IodaError

ROOT = Path(__file__).resolve().parents[1]


def test_crash_after_a_held_warning_prints_its_traceback_and_ends():
    # a command that warns, then fails unexpectedly: the traceback and the warning, exit 1, promptly
    code = textwrap.dedent("""
        import sys, types, warnings
        from ioda import cli
        mod = types.ModuleType("ioda_fake_cmd")
        def main(argv):
            warnings.warn("held warning")
            raise RuntimeError("boom")
        mod.main = main
        sys.modules["ioda_fake_cmd"] = mod
        cli.COMMANDS["fake"] = ("ioda_fake_cmd", "a command that crashes")
        sys.exit(cli.main(["fake"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert proc.returncode == 1
    assert "RuntimeError: boom" in proc.stderr and "held warning" in proc.stderr
    assert proc.stderr.count("held warning") == 1


def test_one_stacked_run_trains_as_a_plain_run(tmp_path):
    import torch

    from ioda.adapt.batches import DirectionSampler, SourcePool
    from ioda.adapt.stacked import StackedTrainers
    from ioda.adapt.trainer import AdaptSettings, DirectionTrainer
    from ioda.adapt.variants import get_variant
    from ioda.archs import build_model
    from ioda.clip import build_encoder
    from ioda.data.pairs import Pair
    from ioda.imageio import write_image

    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    write_image(tmp_path / "lr.png", lr)
    write_image(tmp_path / "hr.png", np.repeat(np.repeat(lr, 4, 0), 4, 1))
    source = SourcePool([Pair("0", tmp_path / "lr.png", tmp_path / "hr.png")], 4, need_hr=False)
    v = get_variant("image_guided")
    s = AdaptSettings(steps=2, batch_size=1, lr_patch=16, lr=1e-3, seed=0, eval_every=0)
    sampler = DirectionSampler(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), None, source, scale=4,
                               lr_patch=16, batch_size=1, region=v.region, occlusion=v.occlusion, seed=0)
    t = DirectionTrainer(build_model("safmn_tiny", seed=0), build_encoder("tiny", seed=0), sampler, v, s,
                         torch.device("cpu"), tmp_path / "run")
    (summary,) = StackedTrainers([t]).run()
    assert summary["steps"] == 2 and len(t.loss_rows) == 2


# ---- stand-ins: recognised by their content ----

def test_stand_in_weights_copied_elsewhere_are_refused_without_their_record(tmp_path):
    import shutil

    import torch

    from ioda.standins import weights as ws
    from ioda.standins.guard import refuse_standins

    written = ws.write_backbone("safmn_tiny", tmp_path / "clone1" / "weights" / "SAFMN_L_DF2K_x4.pth")
    copy = tmp_path / "clone2" / "weights" / "SAFMN_L_DF2K_x4.pth"
    copy.parent.mkdir(parents=True)
    shutil.copy(written, copy)  # no standins/record.json anywhere above it
    with pytest.raises(IodaError, match=r"clone2/weights/SAFMN_L_DF2K_x4\.pth: a stand-in file"):
        refuse_standins([copy], allowed=False)
    refuse_standins([copy], allowed=True)
    assert set(torch.load(copy, weights_only=True)) == {"params"}  # the official key layout is unchanged


def test_stand_in_safetensors_carry_the_mark(tmp_path):
    import torch
    from safetensors.torch import save_file

    from ioda.standin_mark import KEY, TEXT, is_marked

    save_file({"w": torch.zeros(2)}, str(tmp_path / "a.safetensors"), metadata={KEY: TEXT})
    save_file({"w": torch.zeros(2)}, str(tmp_path / "b.safetensors"))
    assert is_marked(tmp_path / "a.safetensors") and not is_marked(tmp_path / "b.safetensors")


@pytest.mark.parametrize("record", ["[]", '{"files": ["a.pth"]}', '{"files": {"a.pth": 3}}'])
def test_a_malformed_stand_in_record_is_one_line(tmp_path, record):
    from ioda.standins.cli import _known
    from ioda.standins.guard import record_path, refuse_standins

    rec = record_path(tmp_path)
    rec.parent.mkdir(parents=True)
    rec.write_text(record)
    (tmp_path / "w.pth").write_bytes(b"not a stand-in")
    for call in (lambda: refuse_standins([tmp_path / "w.pth"], allowed=False), lambda: _known(tmp_path)):
        with pytest.raises(IodaError, match=r"record\.json: not a stand-in record \(expected a JSON object"):
            call()


def test_a_stand_in_dataset_with_the_published_counts_is_refused_without_standins(tmp_path, monkeypatch):
    from ioda.data import prepare as prep
    from ioda.standins import datasets as ds

    ds.write_dataset("RealSR_Canon", tmp_path / "raw", n_train=1, n_test=1, size=(32, 48))
    monkeypatch.setattr(prep, "verify_manual", lambda entry, root: None)  # as if the counts matched
    with pytest.raises(IodaError, match=r"Canon_001_HR\.png: a stand-in image .*--standins"):
        prep.prepare("RealSR_Canon", tmp_path / "out", root=tmp_path / "raw")
    assert not (tmp_path / "out").exists()
    assert prep.prepare("RealSR_Canon", tmp_path / "out", root=tmp_path / "raw", standins=True).is_file()


def test_data_and_masks_do_not_import_standins():
    for folder in ("data", "masks"):
        for f in (ROOT / "ioda" / folder).glob("*.py"):
            assert "ioda.standins" not in f.read_text(), f


# ---- ioda plan: impossible figures ----

def _timings(tmp_path, figure) -> Path:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"device": "cuda", "hardware": "test GPU",
                                "figures": {"adapt_step": {"safmn_l": figure}}}))
    return path


@pytest.mark.parametrize("figure,expect", [
    ({"s": -0.1}, "-0.1"), ({"s": 0}, "0"), ({"s": float("nan")}, "nan"), ({"s": float("inf")}, "inf"),
    ({"s": True}, "True"), ({"s": "abc"}, "'abc'"), ("fast", "expected a mapping with 's', got str")])
def test_plan_refuses_impossible_figures_naming_the_key(tmp_path, capsys, figure, expect):
    from ioda import cli

    path = _timings(tmp_path, figure)
    assert cli.main(["plan", "--config", "config/paper.yaml", "--timings", str(path)]) == 2
    err = capsys.readouterr().err
    assert "figures.adapt_step.safmn_l" in err and expect in err and err.count("\n") == 1


def test_plan_refuses_a_string_in_place_of_a_figures_mapping(tmp_path, capsys):
    from ioda import cli

    path = tmp_path / "t.json"
    path.write_text(json.dumps({"device": "cuda", "figures": {"adapt_step": "abc"}}))
    assert cli.main(["plan", "--config", "config/paper.yaml", "--timings", str(path)]) == 2
    assert "figures.adapt_step: expected a mapping" in capsys.readouterr().err


def test_plan_warns_when_the_timings_device_is_not_the_configs(tmp_path, capsys, caplog):
    import yaml

    from ioda import cli

    cfg = yaml.safe_load(open(ROOT / "config/paper.yaml"))
    cfg["run"]["device"] = "cpu"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    path = _timings(tmp_path, {"s": 0.1, "batch": 2, "lr_patch": 128})
    assert cli.main(["plan", "--config", str(tmp_path / "c.yaml"), "--timings", str(path)]) == 0
    assert "measured on cuda, the config runs on cpu" in caplog.text


# ---- preflight ----

def test_preflight_checks_the_data_disk_too(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from ioda import preflight
    from ioda.config import paper_config

    cfg = paper_config()
    data, results = tmp_path / "data", tmp_path / "results"
    cfg["run"].update(device="cpu", data_dir=str(data), results_dir=str(results))
    gib = 1024**3
    monkeypatch.setattr(preflight, "disk_need", lambda plan: ({plan.data: 5 * gib, plan.results: gib}, []))
    usage = namedtuple("Usage", "total used free")
    # the data disk nearly full, the results disk roomy (both lie on one filesystem here: the test says otherwise)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1, 0, gib if "data" in str(p) else 100 * gib))
    with pytest.raises(IodaError, match=r"preflight: disk: .* has 1\.0 GiB free, the run writes about 6\.0 GiB"):
        preflight.check(cfg, None)


def test_preflight_refuses_a_missing_timings_file_and_a_bogus_device(tmp_path, capsys):
    from ioda import cli

    cfg = tmp_path / "c.yaml"
    cfg.write_text((ROOT / ".test/config.yaml").read_text())
    assert cli.main(["preflight", "--config", str(cfg), "--timings", str(tmp_path / "none.json")]) == 2
    assert "--timings" in capsys.readouterr().err
    assert cli.main(["preflight", "--config", str(cfg), "--device", "bogus"]) == 2
    assert "--device 'bogus': expected auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err


def test_mps_without_mps_is_one_line(monkeypatch):
    import torch

    from ioda.runtime import resolve_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(IodaError, match="device 'mps' requested but MPS .* is not available"):
        resolve_device("mps")


# ---- the packed patch store ----

@pytest.fixture
def split(tmp_path):
    from ioda.imageio import write_image

    rng = np.random.default_rng(0)
    for i in range(2):
        lr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        write_image(tmp_path / "split" / "LR_x4" / f"im{i}.png", lr)
        write_image(tmp_path / "split" / "HR" / f"im{i}.png", np.repeat(np.repeat(lr, 4, 0), 4, 1))
    return tmp_path / "split"


def test_damaged_patch_stores_are_refused_by_name(split, tmp_path):
    import shutil

    from ioda.data.patch_store import pack_split, read_index

    store = pack_split(split, 4, tmp_path / "store").parent
    other_split = tmp_path / "other"
    shutil.copytree(split, other_split)
    pixels = np.load(store / "hr.npy")
    from ioda.imageio import write_image

    write_image(other_split / "HR" / "im0.png", np.full((32, 32, 3), 7, np.uint8))
    other = pack_split(other_split, 4, tmp_path / "other_store").parent
    good = (store / "hr.npy").read_bytes()

    def damaged(data: bytes, match: str):
        (store / "hr.npy").write_bytes(data)
        with pytest.raises(IodaError, match=match):
            read_index(store)
        (store / "hr.npy").write_bytes(good)

    damaged(good[:-100], r"hr\.npy: missing, damaged or not the \d+-byte uint8 array")  # truncated
    damaged(b"\0" * 64 + good[64:], r"hr\.npy: missing, damaged")  # header overwritten
    head = len(good) - pixels.size  # the .npy header
    damaged(good[:head + 5] + bytes([good[head + 5] ^ 0xFF]) + good[head + 6:], r"hr\.npy: content differs")
    damaged((other / "hr.npy").read_bytes(), r"hr\.npy: content differs from the SHA-256")
    assert read_index(store)["count"] == 2


def test_pack_out_never_deletes_the_input_or_a_foreign_folder(split, tmp_path, capsys):
    from ioda import cli

    before = sorted(p.name for p in (split / "HR").iterdir())
    for out in (split, split.parent):
        assert cli.main(["pack", str(split), "--out", str(out)]) == 2
        assert "holds the split" in capsys.readouterr().err
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("mine")
    assert cli.main(["pack", str(split), "--out", str(notes)]) == 2
    assert "a non-empty folder that is no patch store" in capsys.readouterr().err
    assert (notes / "a.txt").read_text() == "mine" and sorted(p.name for p in (split / "HR").iterdir()) == before
    store = tmp_path / "store"
    assert cli.main(["pack", str(split), "--out", str(store)]) == 0
    assert cli.main(["pack", str(split), "--out", str(store)]) == 0  # an earlier store is replaced


# ---- settings and configs ----

@pytest.mark.parametrize("value,shown", [(2.5, "2.5"), ("abc", '"abc"'), (True, "true")])
def test_settings_json_type_errors_name_the_type(value, shown):
    from ioda.adapt.settings import build
    from ioda.adapt.variants import get_variant

    with pytest.raises(IodaError, match=rf"--settings-json steps must be an integer \(at least 1\), got {shown}$"):
        build({"steps": value}, get_variant("ioda"), names={"steps": "--settings-json steps"})


DUPLICATE_STEPS = "adapt:\n  steps: 5\n  lr: 1.0e-5\n  steps: 7\n"


def test_a_key_given_twice_in_a_config_is_refused_naming_it(tmp_path):
    from ioda.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text((ROOT / ".test/config.yaml").read_text() + "\n" + DUPLICATE_STEPS)
    with pytest.raises(IodaError) as err:  # adapt twice at the top level, and steps twice inside
        load_config(path)
    assert "given twice" in str(err.value) and "\n" not in str(err.value)
    path.write_text(DUPLICATE_STEPS)
    with pytest.raises(IodaError, match=r"c\.yaml: malformed YAML at line 4, column 3: key 'steps' given twice"):
        load_config(path)


def test_snakemake_refuses_a_key_given_twice(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text((ROOT / ".test/config.yaml").read_text() + "\nrun:\n  name: again\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "key 'run' given twice in one mapping" in proc.stdout + proc.stderr


def test_evaluate_refuses_tiles_too_small_to_keep_the_scores(split, tmp_path, capsys):
    from ioda import cli
    from ioda.archs import build_model, save_model

    ckpt = tmp_path / "m.safetensors"
    save_model(build_model("safmn_tiny", seed=0), ckpt, preset="safmn_tiny")
    common = ["evaluate", "--model", str(ckpt), "--data", str(split), "--device", "cpu",
              "--out-csv", str(tmp_path / "a.csv"), "--out-json", str(tmp_path / "a.json")]
    for tile in ("1", "2", "8"):
        assert cli.main([*common, "--tile", tile]) == 2
        assert f"--tile {tile}: tiles below 16 LR px change the scores" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()
    assert cli.main([*common, "--tile", "16"]) == 0


@pytest.mark.parametrize("err,expect", [
    (OSError(28, "No space left on device"), "no space left on the device while writing stand-ins"),
    (RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                  "data/3: file write failed"), "no space left on the device"),
    (OSError(30, "Read-only file system", "standins/record.json"), "cannot write standins/record.json (Read-only"),
    (PermissionError(13, "Permission denied", "x"), "cannot write x (Permission denied)")])
def test_standins_write_failures_are_one_line(tmp_path, monkeypatch, capsys, err, expect):
    from ioda import cli
    from ioda.standins import cli as standins_cli

    def fail(*args, **kwargs):
        raise err

    monkeypatch.setattr(standins_cli, "write_json", fail)
    assert cli.main(["standins", "--config", str(ROOT / ".test/config.yaml"), "--root", str(tmp_path)]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if " INFO " not in ln]  # the progress log aside
    assert len(lines) == 1 and expect in lines[0]


def test_standins_root_that_is_a_file_is_one_line(tmp_path, capsys):
    from ioda import cli

    (tmp_path / "f").write_text("x")
    assert cli.main(["standins", "--config", str(ROOT / ".test/config.yaml"), "--root", str(tmp_path / "f")]) == 2
    assert "--root" in capsys.readouterr().err and (tmp_path / "f").read_text() == "x"


def test_more_target_images_than_the_pool_holds_are_refused_up_front(tmp_path):
    from ioda.config import paper_config
    from ioda.plan import Plan

    cfg = paper_config()
    cfg["run"]["data_dir"] = str(tmp_path / "data")
    cfg["experiments"]["tasks"]["gta_rain"]["n_images"] = 401
    with pytest.raises(IodaError, match=r"'experiments.tasks.gta_rain.n_images': 401 images, but the pool split "
                                        r"'train' of ACDC_rain has 400"):
        Plan(cfg)
    manifest = tmp_path / "data" / "ACDC_rain" / "manifest.json"  # a prepared dataset's own count decides
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"splits": {"train": {"count": 2}}}))
    cfg["experiments"]["tasks"]["gta_rain"]["n_images"] = 3
    with pytest.raises(IodaError, match="has 2"):
        Plan(cfg)
    # stand-in data (or data of another spec) is prepared again for this config: its count does not decide
    manifest.write_text(json.dumps({"splits": {"train": {"count": 2}}, "standins": True}))
    Plan(cfg)


def test_a_stand_in_refused_inside_snakemake_is_one_line(tmp_path, copy_project):
    from ioda.standins import weights as ws

    proj = copy_project(ROOT, tmp_path / "proj")
    ws.write_backbone("safmn_tiny", proj / "weights" / "tiny.pth")  # a stand-in, and the config does not allow it
    cfg = (proj / ".test/config.yaml").read_text().replace("safmn_tiny: {preset: safmn_tiny}",
                                                           "safmn_tiny: {preset: safmn_tiny, weights: weights/tiny.pth}")
    (proj / "c.yaml").write_text(cfg)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "c.yaml"], cwd=proj,
                          capture_output=True, text=True, timeout=300)
    out = (proc.stdout + proc.stderr).splitlines()
    refusal = [ln for ln in out if "stand-in" in ln]
    assert proc.returncode != 0 and len(refusal) == 1 and refusal[0].startswith("ioda preflight: error: ")
    assert not any(ln.lstrip().startswith(("File ", "WorkflowError")) for ln in out)


def test_the_readme_plan_example_is_what_the_command_prints(capsys):
    import shlex

    from ioda import cli

    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- plan-example -->\n```\n", 1)[1].split("```\n<!-- /plan-example -->", 1)[0]
    command, shown = block.split("\n", 1)
    argv = shlex.split(command.removeprefix("$ "))
    assert argv[0] == "ioda" and cli.main(argv[1:]) == 0
    printed = capsys.readouterr().out
    assert [ln.rstrip() for ln in printed.splitlines()] == [ln.rstrip() for ln in shown.splitlines()]
