"""params.yaml loading and validation against the JSON schema shipped in the package.

The schema is single-sourced in `ioda/schemas/params.schema.yaml`; `workflow/schemas/config.schema.yaml`
links to it so Snakemake validates the same rules when the workflow starts."""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

import jsonschema
import yaml

from ioda.errors import IodaError
from ioda.files import read_yaml

_MISSING = object()


def schema() -> dict:
    return yaml.safe_load(resources.files("ioda.schemas").joinpath("params.schema.yaml").read_text())


def _set_defaults(validator_cls):
    """A validator that fills schema `default`s into the instance (as Snakemake's validate does)."""
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(prop, sub["default"])
        yield from validate_props(validator, properties, instance, schema_)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


def validate(cfg: Any, source: str = "config") -> dict:
    if not isinstance(cfg, dict):
        raise IodaError(f"{source}: expected a mapping at the top level, got {type(cfg).__name__}")
    validator = _set_defaults(jsonschema.Draft202012Validator)(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise IodaError(f"{source}: key {key!r}: {err.message}")
    return cfg


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> dict:
    """Read params.yaml, apply `key.sub=value` overrides (YAML-parsed values), validate, fill defaults."""
    cfg = read_yaml(path)
    for item in overrides or []:
        if "=" not in item:
            raise IodaError(f"override {item!r}: expected key.path=value")
        key, value = item.split("=", 1)
        set_key(cfg, key, yaml.safe_load(value))
    return validate(cfg, str(path))


def get_key(cfg: dict, dotted: str, default: Any = _MISSING) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif default is not _MISSING:
            return default
        else:
            raise IodaError(f"config: missing key {dotted!r}")
    return node


def set_key(cfg: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise IodaError(f"config: key {dotted!r}: {part!r} is not a mapping")
    node[parts[-1]] = value

