"""params.yaml loading and validation against the JSON schema shipped in the package.

The schema is single-sourced in `ioda/schemas/params.schema.yaml`; `workflow/schemas/config.schema.yaml`
links to it so Snakemake validates the same rules when the workflow starts. It is also the one home of every
default (`defaults`); the paper's values live in config/paper.yaml (`paper_config`; shipped in the package
through the link ioda/schemas/paper.yaml)."""

from __future__ import annotations

import copy
import functools
import math
import os
from importlib import resources
from typing import Any

import jsonschema
import yaml

from ioda.errors import IodaError
from ioda.files import read_json, read_yaml

def schema() -> dict:
    return copy.deepcopy(_schema())


@functools.cache
def _schema() -> dict:
    return yaml.safe_load(resources.files("ioda.schemas").joinpath("params.schema.yaml").read_text())


def _defaults_of(node: dict) -> dict:
    out = {}
    for key, sub in node.get("properties", {}).items():
        if "default" in sub:
            value = copy.deepcopy(sub["default"])
            out[key] = {**_defaults_of(sub), **value} if isinstance(value, dict) and "properties" in sub else value
    return out


def get_dotted(cfg: dict, dotted: str):
    """The value of a dotted key ("occlusion.p") in a config section."""
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def leaves(node: dict, prefix: str = "") -> dict[str, dict]:
    """Dotted key -> schema of each leaf setting under a schema object (nested mappings flattened)."""
    out = {}
    for key, sub in node.get("properties", {}).items():
        if sub.get("type") == "object" and "properties" in sub:
            out.update(leaves(sub, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = sub
    return out


def defaults(section: str) -> dict:
    """The schema's defaults of one top-level section (e.g. `adapt`), nested mappings filled in: what a
    params file that omits the section gets. Code reads its defaults here instead of repeating them."""
    return _defaults_of(_schema()["properties"][section])


@functools.cache
def _paper() -> dict:
    path = resources.files("ioda.schemas").joinpath("paper.yaml")
    return validate(yaml.safe_load(path.read_text()), "config/paper.yaml")


def paper_config() -> dict:
    """config/paper.yaml, validated with defaults filled: the home of the paper's values (`--settings paper`)."""
    return copy.deepcopy(_paper())


def _set_defaults(validator_cls):
    """A validator that fills schema `default`s into the instance (as Snakemake's validate does)."""
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_props(validator, properties, instance, schema_)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


# Keys that were renamed: a clear error instead of the schema's "unexpected property" (no alias: one name).
RENAMED_TASK_KEYS = {"targets": "n_images"}


def _check_renamed(cfg: dict, source: str) -> None:
    tasks = (cfg.get("experiments") or {}).get("tasks") if isinstance(cfg.get("experiments"), dict) else None
    for name, task in (tasks or {}).items() if isinstance(tasks, dict) else ():
        for old, new in RENAMED_TASK_KEYS.items():
            if isinstance(task, dict) and old in task:
                raise IodaError(f"{source}: key 'experiments.tasks.{name}.{old}': renamed to '{new}' "
                                f"(the number of single target images per cell)")


def refuse_non_finite(cfg: Any, source: str = "config") -> None:
    """NaN and inf (YAML .nan, .inf) are refused in one line naming the key. The schema refuses them too, but
    JSON Schema's message for that is a dump of the rule; this check runs first so the user reads the key."""
    todo = [("", cfg)]
    while todo:
        key, node = todo.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise IodaError(f"{source}: key {key!r}: {node} is not a finite number")
        if isinstance(node, dict):
            todo += [(f"{key}.{k}" if key else str(k), v) for k, v in reversed(node.items())]
        elif isinstance(node, list):
            todo += [(f"{key}[{i}]", v) for i, v in reversed(list(enumerate(node)))]


def validate(cfg: Any, source: str = "config") -> dict:
    if not isinstance(cfg, dict):
        raise IodaError(f"{source}: expected a mapping at the top level, got {type(cfg).__name__}")
    _check_renamed(cfg, source)
    refuse_non_finite(cfg, source)
    validator = _set_defaults(jsonschema.Draft202012Validator)(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise IodaError(f"{source}: key {key!r}: {err.message}")
    return cfg


def load_config(path: str | os.PathLike) -> dict:
    """Read a params file (params.yaml, config/paper.yaml, results/config.json), validate, fill defaults."""
    # JSON through json: YAML 1.1 reads JSON's 1e-05 (no dot) as a string, which would fail validation
    data = read_json(path) if str(path).endswith(".json") else read_yaml(path)
    return validate(data, str(path))
