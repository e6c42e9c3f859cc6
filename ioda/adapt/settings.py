"""AdaptSettings: everything that steers one adaptation run, built from a config's `adapt` section in one place.

The params schema (ioda/schemas/params.schema.yaml) is the one home of every default and the one validator:
`from_config` reads a validated section for a variant, `build` checks hand-given values (flags, the workflow's
JSON) against the same schema entries. A field is found from its schema key by name (`occlusion.p` ->
`occlusion_p`); the two keys that depend on the method (its step budget and learning rate) come from the variant
(Variant.steps_key, Variant.lr_key). Adding a setting: the schema entry, an AdaptSettings field, and the code that
reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from ioda.protocol import get_protocol
from ioda.adapt.variants import Variant
from ioda.config import defaults, get_dotted, leaves, paper_config, schema
from ioda.errors import IodaError

if TYPE_CHECKING:  # torch is imported when a run starts
    from ioda.train.numerics import Numerics

_ADAPT, _RUN = defaults("adapt"), defaults("run")


@dataclass
class AdaptSettings:
    steps: int = _ADAPT["steps"]
    batch_size: int = _ADAPT["batch_size"]
    lr_patch: int = _ADAPT["lr_patch"]
    lr: float = _ADAPT["lr"]  # this run's Adam lr: adapt.lr (direction loss) or adapt.baseline_lr.<method>
    betas: tuple[float, float] = tuple(_ADAPT["betas"])  # the authors' (0, 0.99**0.8)
    loss: str | None = _ADAPT["loss"]  # None: the protocol's (authors direction_lrsim, paper direction)
    clip_input: str | None = _ADAPT["clip_input"]  # read by the encoder (None: the protocol's); recorded
    seed: int = _RUN["seed"]
    ckpt_every: int = 100
    log_every: int = 10  # losses reach the host (and are checked for NaN/inf) only this often
    eval_every: int = _ADAPT["eval_every"]
    numerics: str | Numerics = _RUN["numerics"]  # run.numerics: auto | fp32 | fast, or a Numerics (ioda.train.numerics)
    channels_last: bool = False
    region_opts: dict = field(default_factory=dict)
    occlusion_p: float = _ADAPT["occlusion"]["p"]
    occlusion_cell: int = _ADAPT["occlusion"]["cell"]
    occlusion_cell_p: float = _ADAPT["occlusion"]["cell_p"]
    protocol: str = _ADAPT["protocol"]
    clip_antialias: bool = _ADAPT["clip_antialias"]  # read by the encoder; kept here so adapt.json records it
    eval_batch: int = _ADAPT["eval_batch"]  # read by the evaluator

    def to_dict(self) -> dict:
        return asdict(self)


# How a run executes, not what it computes: no config key sets them (region_opts follows from the protocol).
EXECUTION_ONLY = ("ckpt_every", "log_every", "numerics", "channels_last", "region_opts")
# What only the direction loss reads, and what only runs that evaluate along the way read.
_DIRECTION_ONLY = ("betas", "loss", "clip_input", "protocol", "clip_antialias")
_OCCLUSION = ("occlusion_p", "occlusion_cell", "occlusion_cell_p")
_EVALUATION = ("eval_every", "eval_batch")


def schema_key(name: str, variant: Variant) -> str:
    """The config key (dotted, in `adapt`, or `run.seed`) that sets AdaptSettings.<name> for this variant."""
    if name == "seed":
        return "run.seed"
    if name == "steps" and variant.steps_key:
        return variant.steps_key
    if name == "lr" and variant.lr_key:
        return variant.lr_key
    leaves = _adapt_leaves()
    for key in leaves:
        if key.replace(".", "_") == name:
            return key
    raise IodaError(f"AdaptSettings.{name}: no key of the params schema's `adapt` section sets it")


def _adapt_leaves() -> dict[str, dict]:
    return leaves(schema()["properties"]["adapt"])


def used_fields(variant: Variant, evaluates: bool) -> tuple[str, ...]:
    """The settings a run of this variant reads (a change to any other must not rerun it)."""
    if not variant.trains:
        return ()
    names = [f.name for f in fields(AdaptSettings) if f.name not in EXECUTION_ONLY]
    if variant.supervised:
        names = [n for n in names if n not in _DIRECTION_ONLY + _OCCLUSION]
    if not variant.occlusion:
        names = [n for n in names if n not in _OCCLUSION]
    if not evaluates:
        names = [n for n in names if n not in _EVALUATION]
    return tuple(names)


def config_values(cfg: dict, variant: Variant, *, evaluates: bool = True) -> dict:
    """The values of the settings a run of `variant` reads, from a validated config (`adapt` and `run`)."""
    out = {}
    for name in used_fields(variant, evaluates):
        key = schema_key(name, variant)
        value = get_dotted(cfg, key) if key.startswith("run.") else get_dotted(cfg["adapt"], key)
        out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def cell_json(cfg: dict, variant: Variant, *, evaluates: bool) -> str:
    """A cell's settings as the workflow hands them to `ioda adapt --settings-json`: only what its runs read, so
    that changing a key reruns exactly the runs it steers (Snakemake compares this param)."""
    return json.dumps(config_values(cfg, variant, evaluates=evaluates), sort_keys=True)


def from_config(cfg: dict, variant: Variant, *, evaluates: bool = True) -> AdaptSettings:
    """The AdaptSettings of a run of `variant` under a validated config (fields it does not read: defaults)."""
    return build(config_values(cfg, variant, evaluates=evaluates), variant)


def preset(name: str) -> dict:
    """A whole config's `adapt` and `run` sections behind `ioda adapt --settings`: `paper` is config/paper.yaml's,
    `cpu` the params schema's defaults (a CPU-sized budget for trying things out on a laptop)."""
    if name == "paper":
        cfg = paper_config()
        return {"adapt": cfg["adapt"], "run": cfg["run"]}
    return {"adapt": defaults("adapt"), "run": defaults("run")}


def _expected(sub: dict) -> str:
    """What a schema entry accepts, in words."""
    if sub.get("$ref") == "#/$defs/real":  # a finite number: its own bounds are the entry's
        sub = {"type": "number", **{k: v for k, v in sub.items() if k != "$ref"}}
    if "enum" in sub:
        return "one of " + ", ".join("null" if v is None else str(v) for v in sub["enum"])
    if sub.get("type") == "array":
        return f"{sub.get('minItems')} numbers, each {_expected(sub['items'])}"
    if sub.get("type") == "boolean":
        return "true or false"
    lo, xlo, hi, xhi = (sub.get(k) for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"))
    if xlo == 0 and hi is None and xhi is None:
        return "a positive number"
    if lo is not None and hi is None and xhi is None:
        return f"at least {lo}"
    if hi is None and xhi is None:
        return f"a {sub.get('type', 'value')}"
    lower = f"[{lo}" if lo is not None else f"({xlo}"
    upper = f"{hi}]" if hi is not None else f"{xhi})"
    return f"in {lower}, {upper}"


def _check_type(value, sub: dict, label: str) -> None:
    """A number where the schema wants one: the type is named (a range alone would mislead for 2.5 or "abc")."""
    want = "number" if sub.get("$ref") == "#/$defs/real" else sub.get("type")
    if want not in ("integer", "number"):
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and (want == "number" or float(value).is_integer()):
        return
    import json

    shown = json.dumps(value) if isinstance(value, (str, bool, list, dict)) or value is None else value
    word = "an integer" if want == "integer" else "a number"
    raise IodaError(f"{label} must be {word} ({_expected(sub)}), got {shown}")


def check_value(value, key: str, label: str) -> None:
    """A one-line IodaError naming `label` unless `value` is valid for the params schema's `key` (dotted, in
    `adapt`, or `run.seed`)."""
    import jsonschema

    sub = {**_adapt_leaves(), "run.seed": schema()["properties"]["run"]["properties"]["seed"]}[key]
    _check_type(value, sub, label)
    checked = {**sub, "$defs": schema()["$defs"]}  # entries refer to shared definitions (a finite number)
    if next(jsonschema.Draft202012Validator(checked).iter_errors(value), None) is not None:
        shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        raise IodaError(f"{label} must be {_expected(sub)}, got {shown}")


def build(values: dict, variant: Variant, *, names: dict[str, str] | None = None) -> AdaptSettings:
    """AdaptSettings from `values` (field -> value; absent fields: the schema's defaults), each checked against
    its params-schema entry; `names` says how to call a field in the one-line error (a flag, a key)."""
    names = names or {}
    known = {f.name for f in fields(AdaptSettings)}
    for name, value in values.items():
        if name not in known:
            raise IodaError(f"{names.get(name, name)}: not a setting of ioda adapt (expected one of "
                            f"{', '.join(sorted(known - set(EXECUTION_ONLY)))})")
        if name not in EXECUTION_ONLY:
            check_value(value, schema_key(name, variant), names.get(name, name))
    settings = AdaptSettings(**values)
    settings.betas = tuple(settings.betas)
    settings.region_opts = get_protocol(settings.protocol).region_opts(variant.region)
    return settings
