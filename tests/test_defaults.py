"""One home for defaults, one way from the config to a run: every key of the params schema reaches the jobs it
steers through the workflow (so changing it in params.yaml changes, and reruns, exactly those), and no constant
outside the schema (or, for pre-training, the preset's recipe) steers a run."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ioda.adapt.cli import adapt_settings, build_parser
from ioda.adapt.settings import EXECUTION_ONLY, AdaptSettings, cell_json, preset, schema_key, used_fields
from ioda.adapt.variants import VARIANTS, get_variant
from ioda.config import defaults, leaves as _leaves, load_config, paper_config, schema
from ioda.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _set(cfg: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        cfg = cfg.setdefault(part, {})
    cfg[last] = value


def _perturbed(sub: dict, default, i: int):
    """A valid value different from the default (and, for numbers, from every other key's)."""
    if "enum" in sub:
        return next(v for v in sub["enum"] if v != default and v is not None)
    if sub.get("type") == "boolean":
        return not default
    if sub.get("type") == "integer" or (isinstance(default, int) and not isinstance(default, bool)):
        return default + 1 + i
    if sub.get("type") == "number" or sub.get("$ref") == "#/$defs/real" or isinstance(default, float):
        return round(default * 0.5 + 0.001 * (i + 1), 6) if default else 0.01 * (i + 1)
    if sub.get("type") == "array":
        return [round(0.1 * (i + 1) + 0.01 * k, 4) for k in range(len(default))]
    raise AssertionError(f"{sub}: no perturbation rule for this schema type")


SCHEMA = schema()
ADAPT_LEAVES = _leaves(SCHEMA["properties"]["adapt"])
TRAINED = [v for v in VARIANTS.values() if v.trains]


def _keys_of(variant, evaluates=True) -> dict[str, str]:
    """AdaptSettings field -> the config key that sets it, for the settings a run of `variant` reads."""
    return {name: schema_key(name, variant) for name in used_fields(variant, evaluates)}


def test_every_adapt_key_sets_a_field_and_every_field_has_a_key():
    """The schema and AdaptSettings name the same settings: each `adapt` key is read by some variant's runs,
    each non-execution field is set by a key (found by name, or the variant's steps/lr key)."""
    read = {key for v in TRAINED for key in _keys_of(v).values()}
    assert read == set(ADAPT_LEAVES) | {"run.seed"}, (
        f"schema keys no run reads: {sorted(set(ADAPT_LEAVES) - read)}; keys read but not in the schema: "
        f"{sorted(read - set(ADAPT_LEAVES) - {'run.seed'})}")
    for f in dataclasses.fields(AdaptSettings):
        if f.name not in EXECUTION_ONLY:
            assert any(f.name in used_fields(v, True) for v in TRAINED), f"AdaptSettings.{f.name}: no run reads it"


def test_defaults_live_in_the_schema_only():
    """AdaptSettings() and `ioda adapt --settings cpu` are the schema's defaults; `--settings paper` is
    config/paper.yaml; params.yaml and config/paper.yaml spell every adapt key out (DVC reads params.yaml literally)."""
    d, plain = defaults("adapt"), AdaptSettings()
    direction = VARIANTS["ioda"]
    for name, key in _keys_of(direction).items():
        want = defaults("run")["seed"] if key == "run.seed" else _get(d, key)
        assert getattr(plain, name) == (tuple(want) if isinstance(want, list) else want), key
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    for key in ADAPT_LEAVES:
        for name, cfg in (("params.yaml", params), ("config/paper.yaml", paper)):
            try:
                _get(cfg["adapt"], key)
            except KeyError:
                pytest.fail(f"{name}: adapt.{key} is not spelled out")
    assert preset("cpu")["adapt"] == d
    assert preset("paper")["adapt"] == paper_config()["adapt"] == load_config(ROOT / "config" / "paper.yaml")["adapt"]


@pytest.mark.parametrize("name", ["cpu", "paper"])
@pytest.mark.parametrize("variant", [v.name for v in TRAINED])
def test_cli_without_flags_takes_every_setting_from_the_preset(name, variant):
    import torch

    v = get_variant(variant)
    args = build_parser().parse_args(["p.png", "--model", "m.pth", "--out-dir", "o", "--settings", name,
                                      "--variant", variant, "--eval-data", "test"])
    s = adapt_settings(args, v, torch.device("cpu"))
    cfg = preset(name)
    for field, key in _keys_of(v).items():
        want = _get(cfg, key) if key.startswith("run.") else _get(cfg["adapt"], key)
        got = getattr(s, field)
        assert (list(got) if isinstance(got, tuple) else got) == want, (field, key)


def test_a_key_changes_the_settings_param_of_exactly_the_cells_it_steers():
    """The workflow hands each cell its settings as one JSON param: changing a key changes it (and so reruns the
    cell) exactly where a run reads that key."""
    cfg = load_config(ROOT / "params.yaml")
    plan = Plan(cfg)
    for i, (key, sub) in enumerate(sorted(ADAPT_LEAVES.items())):
        changed = copy.deepcopy(cfg)
        _set(changed["adapt"], key, _perturbed(sub, _get(cfg["adapt"], key), i))
        for v in TRAINED:
            for evaluates in (True, False):
                before, after = (json.loads(cell_json(c, v, evaluates=evaluates)) for c in (cfg, changed))
                assert (before != after) == (key in _keys_of(v, evaluates).values()), (key, v.name, evaluates)
    assert plan.evaluates  # the plan decides `evaluates` per run (adapt.eval_every > 0 and a direction loss)


def _adapt_commands(out: str) -> list[list[str]]:
    """argv of every `python -m ioda <command>` in a dry run's printed shell commands."""
    cmds = []
    for line in out.splitlines():
        if "-m ioda " in line:
            words = shlex.split(line.split("-m ioda ", 1)[1])
            cmds.append(words[: words.index(">")] if ">" in words else words)
    return cmds


# Keys of the other sections, and the command and flag each must reach (or where else they are read).
ROUTES = {
    "run.seed": [("pretrain", "--seed")],
    "run.threads": "the rules' threads (OMP_NUM_THREADS)",
    "pretrain.steps": [("pretrain", "--steps")],
    "pretrain.batch_size": [("pretrain", "--batch-size")],
    "pretrain.lr_patch": [("pretrain", "--lr-patch")],
    "pretrain.lr": [("pretrain", "--lr")],
    "pretrain.resume": [("pretrain", "--resume")],
    "masks.segment_area": [("masks", "--segment-area")],
    "encoder.alpha_init": [("adapt", "--alpha-init")],
}
# Keys whose route is another test's (named) or that only the report reads from results/config.json.
ELSEWHERE = {
    "run.name", "run.device", "run.stack_runs", "run.scale", "run.paper", "run.data_dir", "run.raw_dir",
    "run.results_dir",  # test_workflow (dry runs, stack_runs), test_report
    "encoder.name", "encoder.weights", "encoder.alpha_weights",  # test_workflow.test_paper_dry_run...
    "masks.source", "masks.sam_model", "masks.sam_checkpoint",  # test_workflow.test_paper_dry_run...
    "report.tsne_samples", "report.tsne_task", "report.curves", "report.visuals", "report.save_images",
    "report.paired",  # test_report (the paired figure)
    "run.numerics",  # test_numerics.test_workflow_passes_numerics_only_when_set (`auto` passes no flag)
    "pretrain.store",  # test_patch_store (the workflow packs once and pre-trains from the store)
    "masks.points_per_side",  # test_workflow.test_paper_dry_run (SAM only; the demo uses superpixels)
    "run.standins",  # test_paper_standins (accepted with it, refused without), test_cost_preflight
    # test_encoders (the effect config's dry run: the pretrain-encoder command)
    "encoder.pretrain.datasets", "encoder.pretrain.steps", "encoder.pretrain.batch_size", "encoder.pretrain.bank_size",
    "encoder.pretrain.seed",
}


def test_every_key_of_every_section_reaches_its_jobs(tmp_path):
    """Change every key at once; in the workflow's dry run, each `ioda adapt` command must turn into
    AdaptSettings holding the new value exactly where the key applies, and the other sections' keys must reach
    their commands. A hidden constant (a key the rule does not pass, a default a CLI keeps on its own) leaves
    the old value and fails here."""
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["run"].update(device="cpu", data_dir=str(tmp_path / "data"), results_dir=str(tmp_path / "results"))
    full = load_config(ROOT / "params.yaml")
    for i, (key, sub) in enumerate(sorted(ADAPT_LEAVES.items())):
        _set(cfg["adapt"], key, _perturbed(sub, _get(full["adapt"], key), i))
    cfg["adapt"]["eval_every"] = 3  # keep it below steps so the curve cell still runs
    other = {key: sub for section in ("run", "pretrain", "masks", "encoder", "report")
             for key, sub in _leaves(SCHEMA["properties"][section], f"{section}.").items()}
    assert set(other) == set(ROUTES) | ELSEWHERE, (
        f"keys with no route: {sorted(set(other) - set(ROUTES) - ELSEWHERE)}")
    for i, key in enumerate(sorted(k for k, r in ROUTES.items() if isinstance(r, list))):
        _set(cfg, key, _perturbed(other[key], _get(full, key), 40 + i))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--configfile", str(path)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want_cfg = load_config(path)
    plan = Plan(want_cfg)
    commands = _adapt_commands(proc.stdout)
    for key, routes in ROUTES.items():
        if not isinstance(routes, list):
            continue
        value = _get(want_cfg, key)
        for command, flag in routes:
            argvs = [a for a in commands if a[0] == command]
            assert argvs, command
            for argv in argvs:
                if isinstance(value, bool):
                    assert (flag in argv) == value, (key, argv)
                else:
                    assert flag in argv and str(value) == argv[argv.index(flag) + 1], (key, argv)
    adapt = [argv[1:] for argv in commands if argv[0] == "adapt"]
    # one command per backbone x task x variant cell, adapting all its runs
    assert len(adapt) == len({(r.backbone, r.task, r.variant) for r in plan.adapt_runs()})
    reached: set[str] = set()
    import torch

    parser = build_parser()
    for argv in adapt:
        args = parser.parse_args(argv)
        runs = [r for r in plan.adapt_runs() if args.out_dir in (str(plan.adapt_dir(r)), str(plan.adapt_dir(r).parent))]
        assert runs and len(args.index) == len(runs), argv
        variant = get_variant(args.variant)
        settings = adapt_settings(args, variant, torch.device("cpu"))
        for run in runs:
            for field, key in _keys_of(variant, plan.evaluates(run)).items():
                value = _get(want_cfg, key) if key.startswith("run.") else _get(want_cfg["adapt"], key)
                got = getattr(settings, field)
                assert (list(got) if isinstance(got, tuple) else got) == value, (
                    f"{key} = {value!r} did not reach AdaptSettings.{field} of {run} (got {got!r})")
                reached.add(key)
    assert reached == set(ADAPT_LEAVES) | {"run.seed"}, f"keys no planned run uses: {sorted(set(ADAPT_LEAVES) - reached)}"


def test_flags_override_the_settings_and_the_schema_checks_them():
    """Hand use: a flag overrides the workflow's JSON (and a preset); a bad value is refused naming the flag
    with what the params schema accepts."""
    import torch

    from ioda.errors import IodaError

    v = get_variant("ioda")
    base = cell_json(load_config(ROOT / "params.yaml"), v, evaluates=False)
    args = build_parser().parse_args(["p.png", "--model", "m", "--out-dir", "o", "--settings-json", base,
                                      "--steps", "7", "--occlusion-p", "0.25"])
    s = adapt_settings(args, v, torch.device("cpu"))
    assert (s.steps, s.occlusion_p, s.lr) == (7, 0.25, json.loads(base)["lr"])
    for argv, expect in ((["--lr-patch", "4"], "--lr-patch must be at least 8, got 4"),
                         (["--occlusion-p", "2"], "--occlusion-p must be in [0, 1], got 2"),
                         (["--betas", "0.5", "1"], "--betas must be 2 numbers, each in [0, 1), got 0.5 1.0")):
        args = build_parser().parse_args(["p.png", "--model", "m", "--out-dir", "o", "--settings", "cpu", *argv])
        with pytest.raises(IodaError, match=expect.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            adapt_settings(args, v, torch.device("cpu"))
    args = build_parser().parse_args(["p.png", "--model", "m", "--out-dir", "o", "--settings-json", '{"stpes": 3}'])
    with pytest.raises(IodaError, match="--settings-json stpes: not a setting of ioda adapt"):
        adapt_settings(args, v, torch.device("cpu"))


def test_cli_defaults_are_the_schemas():
    """The masks command's defaults are the schema's; pre-training's are the preset's recipe (the schema's
    pretrain keys default to null: the recipe)."""
    from ioda.masks.cli import build_parser as masks_parser

    assert masks_parser().get_default("segment_area") == defaults("masks")["segment_area"]
    assert all(defaults("pretrain")[k] is None for k in ("steps", "batch_size", "lr_patch", "lr"))


def test_schema_enums_are_the_registries():
    """Every closed list of names in the schema is a registry's keys (adding a variant, a protocol, a loss... is
    one registry entry plus this list; a name the code does not know cannot validate)."""
    from ioda.adapt.losses import LOSSES
    from ioda.archs.presets import PRESETS
    from ioda.clip.preprocess import INPUT_RANGES
    from ioda.masks.labels import SOURCES
    from ioda.masks.sam import SAM_CHECKPOINTS
    from ioda.protocol import PROTOCOLS
    from ioda.train.numerics import MODES

    props = SCHEMA["properties"]
    assert SCHEMA["$defs"]["variant"]["enum"] == list(VARIANTS)
    assert props["variants"]["default"] == list(VARIANTS)
    from ioda.encoders import ENCODERS

    assert props["encoder"]["properties"]["name"]["enum"] == list(ENCODERS)
    assert props["adapt"]["properties"]["protocol"]["enum"] == list(PROTOCOLS)
    assert set(props["adapt"]["properties"]["loss"]["enum"]) == {None, *LOSSES}
    assert set(props["adapt"]["properties"]["clip_input"]["enum"]) == {None, *INPUT_RANGES}
    assert set(props["backbones"]["additionalProperties"]["properties"]["preset"]["enum"]) == {None, *PRESETS}
    assert props["masks"]["properties"]["source"]["enum"] == list(SOURCES)
    assert props["run"]["properties"]["numerics"]["enum"] == list(MODES)
    assert set(props["masks"]["properties"]["sam_model"]["enum"]) == set(SAM_CHECKPOINTS)
    assert set(props["adapt"]["properties"]["baseline_lr"]["properties"]) == {
        v.lr_key.split(".", 1)[1] for v in VARIANTS.values() if v.lr_key and "." in v.lr_key}
    # the paper's numbers are data keyed by variant: every key must name a registered variant
    from ioda.report.paper_numbers import PAPER

    assert {key[3] for table in PAPER.values() for key in table} <= set(VARIANTS)


def _number_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every number in the schema (a list's items as KEY[0]); followed through $defs."""
    if "$ref" in node:
        node = {**schema()["$defs"][node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
    out = [prefix] if "number" in ([node["type"]] if isinstance(node.get("type"), str) else node.get("type", [])) else []
    for alt in node.get("anyOf", []):  # a number or null
        out += [k for k in _number_keys(alt, prefix) if k not in out]
    for key, sub in node.get("properties", {}).items():
        out += _number_keys(sub, f"{prefix}.{key}" if prefix else key)
    if isinstance(node.get("items"), dict):
        out += _number_keys(node["items"], f"{prefix}[0]")
    return out


def _with_value(cfg: dict, dotted: str, value) -> dict:
    node = cfg
    *parents, last = dotted.replace("[0]", "").split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if dotted.endswith("[0]"):
        node[last] = [value, *load_config(ROOT / "params.yaml")[parents[0]][last][1:]]
    else:
        node[last] = value
    return cfg


NUMBER_KEYS = _number_keys(schema())


def test_every_number_of_the_schema_is_found():
    assert {"pretrain.lr", "adapt.lr", "adapt.betas[0]", "adapt.baseline_lr.zssr", "adapt.occlusion.p"} <= set(
        NUMBER_KEYS)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("key", NUMBER_KEYS)
def test_nan_and_inf_refused_naming_the_key(key, value):
    """Both validators: ioda's (one line naming the key) and Snakemake's on the same schema file."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate as snakemake_validate

    from ioda.config import validate
    from ioda.errors import IodaError

    cfg = _with_value(yaml.safe_load((ROOT / "params.yaml").read_text()), key, value)
    with pytest.raises(IodaError) as err:
        validate(cfg, "params.yaml")
    assert key.replace("[0]", "") in str(err.value) and "\n" not in str(err.value) and "finite" in str(err.value)
    with pytest.raises(WorkflowError):
        snakemake_validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    snakemake_validate(_with_value(cfg, key, 0.5), str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))


def test_nan_in_params_stops_the_dry_run_in_one_line(tmp_path):
    text = (ROOT / ".test" / "config.yaml").read_text()
    cfg = yaml.safe_load(text)
    cfg["adapt"]["lr"] = float("nan")
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert ".nan" in path.read_text()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(path)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "adapt.lr" in ln]
    assert len(lines) == 1 and "finite" in lines[0], proc.stdout + proc.stderr
