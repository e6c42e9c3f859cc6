"""One home for defaults: every key of the params schema's `adapt` section reaches AdaptSettings through the
workflow (so changing it in params.yaml changes, and reruns, exactly the runs it steers), and no constant
outside the schema steers a run."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ioda.adapt.cli import adapt_settings, build_parser, settings_preset
from ioda.adapt.trainer import AdaptSettings
from ioda.adapt.variants import VARIANTS, get_variant
from ioda.config import defaults, load_config, paper_config, schema
from ioda.plan import Plan, Run

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, IODA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")
BASELINES = ("finetune", "zssr")


def _direction(run: Run) -> bool:
    return VARIANTS[run.variant].method == "direction"


# schema key (dotted) -> (AdaptSettings field, the runs whose settings it must reach). Adding a key to the
# schema's `adapt` section without a route here (and the plumbing behind it) fails the test below.
ROUTES = {
    "steps": ("steps", lambda plan, r: _direction(r)),
    "finetune_steps": ("steps", lambda plan, r: r.variant == "finetune"),
    "zssr_steps": ("steps", lambda plan, r: r.variant == "zssr"),
    "batch_size": ("batch_size", lambda plan, r: True),
    "lr_patch": ("lr_patch", lambda plan, r: True),
    "lr": ("lr", lambda plan, r: _direction(r)),
    "baseline_lr.finetune": ("lr", lambda plan, r: r.variant == "finetune"),
    "baseline_lr.zssr": ("lr", lambda plan, r: r.variant == "zssr"),
    "betas": ("betas", lambda plan, r: _direction(r)),
    "loss": ("loss", lambda plan, r: _direction(r)),
    "clip_input": ("clip_input", lambda plan, r: _direction(r)),
    "eval_every": ("eval_every", lambda plan, r: plan.evaluates(r)),
    "eval_batch": ("eval_batch", lambda plan, r: plan.evaluates(r)),
    "protocol": ("protocol", lambda plan, r: _direction(r)),
    "clip_antialias": ("clip_antialias", lambda plan, r: _direction(r)),
    "occlusion.p": ("occlusion_p", lambda plan, r: VARIANTS[r.variant].occlusion),
    "occlusion.cell": ("occlusion_cell", lambda plan, r: VARIANTS[r.variant].occlusion),
    "occlusion.cell_p": ("occlusion_cell_p", lambda plan, r: VARIANTS[r.variant].occlusion),
}
# AdaptSettings fields that are no setting of the experiment: how a run executes, not what it computes (or,
# region_opts, an extension point that is empty in every run). Anything else must come from params.yaml.
EXECUTION_ONLY = {"ckpt_every", "log_every", "amp", "channels_last", "region_opts"}
FROM_RUN_SECTION = {"seed": "seed"}


def _leaves(node: dict, prefix: str = "") -> dict[str, dict]:
    """Dotted key -> schema of each leaf setting of a schema object."""
    out = {}
    for key, sub in node.get("properties", {}).items():
        if sub.get("type") == "object" and "properties" in sub:
            out.update(_leaves(sub, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = sub
    return out


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
        return next(v for v in sub["enum"] if v != default)
    if sub.get("type") == "boolean":
        return not default
    if sub.get("type") == "integer":
        return default + 1 + i
    if sub.get("type") == "number" or sub.get("$ref") == "#/$defs/real":
        return round(default * 0.5 + 0.001 * (i + 1), 6) if default else 0.01 * (i + 1)
    if sub.get("type") == "array":
        return [round(0.1 * (i + 1) + 0.01 * k, 4) for k in range(len(default))]
    raise AssertionError(f"adapt.{sub}: no perturbation rule for this schema type")


ADAPT_LEAVES = _leaves(schema()["properties"]["adapt"])


def test_every_adapt_key_has_a_route_and_every_settings_field_a_source():
    assert set(ROUTES) == set(ADAPT_LEAVES), (
        "schema adapt keys without a route to AdaptSettings (add the flag, the workflow param and a ROUTES entry): "
        f"{sorted(set(ADAPT_LEAVES) - set(ROUTES))}; routes to keys the schema lacks: {sorted(set(ROUTES) - set(ADAPT_LEAVES))}")
    routed = {field for field, _ in ROUTES.values()}
    for f in dataclasses.fields(AdaptSettings):
        assert f.name in routed | EXECUTION_ONLY | set(FROM_RUN_SECTION), (
            f"AdaptSettings.{f.name} steers a run but no params.yaml key sets it")


def test_defaults_live_in_the_schema_only():
    """AdaptSettings() and `ioda adapt --settings cpu` are the schema's defaults; `--settings paper` is
    config/paper.yaml; params.yaml spells every key out (DVC reads it literally)."""
    d, plain = defaults("adapt"), AdaptSettings()
    for key, (field, _) in ROUTES.items():
        if key not in ("finetune_steps", "zssr_steps") and not key.startswith("baseline_lr."):  # baselines' own
            want = _get(d, key)
            assert getattr(plain, field) == (tuple(want) if isinstance(want, list) else want), key
    assert plain.seed == defaults("run")["seed"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    for key in ADAPT_LEAVES:
        for name, cfg in (("params.yaml", params), ("config/paper.yaml", paper)):
            try:
                _get(cfg["adapt"], key)
            except KeyError:
                pytest.fail(f"{name}: adapt.{key} is not spelled out")
    assert settings_preset("cpu") == d
    assert settings_preset("paper") == paper_config()["adapt"] == load_config(ROOT / "config" / "paper.yaml")["adapt"]


@pytest.mark.parametrize("preset", ["cpu", "paper"])
@pytest.mark.parametrize("variant", ["ioda", "finetune", "zssr"])
def test_cli_without_flags_takes_every_setting_from_the_preset(preset, variant):
    import torch

    args = build_parser().parse_args(["p.png", "--model", "m.pth", "--out-dir", "o", "--settings", preset,
                                      "--variant", variant, "--eval-data", "test"])
    s = adapt_settings(args, get_variant(variant), torch.device("cpu"))
    src = settings_preset(preset)
    key_steps, lr = ("steps", src["lr"]) if variant == "ioda" else (f"{variant}_steps", src["baseline_lr"][variant])
    assert (s.steps, s.lr, s.batch_size, s.lr_patch) == (src[key_steps], lr, src["batch_size"], src["lr_patch"])
    assert (list(s.betas), s.loss, s.clip_input, s.eval_every) == (src["betas"], src["loss"], src["clip_input"], src["eval_every"])
    assert (s.occlusion_p, s.occlusion_cell, s.occlusion_cell_p) == tuple(src["occlusion"].values())


def _adapt_commands(out: str) -> list[list[str]]:
    """argv of every `python -m ioda adapt` in a dry run's printed shell commands."""
    cmds = []
    for line in out.splitlines():
        if "-m ioda adapt " in line:
            words = shlex.split(line.split("-m ioda adapt ", 1)[1])
            cmds.append(words[: words.index(">")])
    return cmds


def test_every_adapt_key_reaches_the_settings_of_exactly_its_runs(tmp_path):
    """Change every `adapt` key of params.yaml at once; in the workflow's dry run, each `ioda adapt` command
    must turn into AdaptSettings holding the new value exactly where the key applies. A hidden constant (a
    key the rule does not pass, a default the CLI keeps on its own) leaves the old value and fails here."""
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg["run"].update(device="cpu", data_dir=str(tmp_path / "data"), results_dir=str(tmp_path / "results"))
    full = load_config(ROOT / "params.yaml")["adapt"]
    for i, (key, sub) in enumerate(sorted(ADAPT_LEAVES.items())):
        _set(cfg["adapt"], key, _perturbed(sub, _get(full, key), i))
    cfg["adapt"]["eval_every"] = 3  # keep it below steps so the curve cell still runs
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--configfile", str(path)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = Plan(load_config(path))
    commands = _adapt_commands(proc.stdout)
    # one command per backbone x task x variant cell, adapting all its runs
    assert len(commands) == len({(r.backbone, r.task, r.variant) for r in plan.adapt_runs()})
    want = load_config(path)["adapt"]
    reached: set[str] = set()
    import torch

    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)
        runs = [r for r in plan.adapt_runs() if args.out_dir in (str(plan.adapt_dir(r)), str(plan.adapt_dir(r).parent))]
        assert runs and len(args.index) == len(runs), argv
        settings = adapt_settings(args, get_variant(args.variant), torch.device("cpu"))
        assert settings.seed == cfg["run"]["seed"]
        for run in runs:
            for key, (field, applies) in ROUTES.items():
                if applies(plan, run):
                    value = _get(want, key)
                    got = getattr(settings, field)
                    assert (list(got) if isinstance(got, tuple) else got) == value, (
                        f"adapt.{key} = {value!r} did not reach AdaptSettings.{field} of {run} (got {got!r})")
                    reached.add(key)
    assert reached == set(ADAPT_LEAVES), f"keys no planned run uses: {sorted(set(ADAPT_LEAVES) - reached)}"


def _number_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every number in the schema (a list's items as KEY[0]); followed through $defs."""
    if "$ref" in node:
        node = {**schema()["$defs"][node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
    out = [prefix] if "number" in ([node["type"]] if isinstance(node.get("type"), str) else node.get("type", [])) else []
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
