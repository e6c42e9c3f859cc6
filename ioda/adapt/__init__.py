"""One-shot domain adaptation: the direction loss, the ablation variants, the trainer and the baselines.

`ioda.adapt.adapt(model, photo, variant=..., settings=..., encoder=...)` is the programmatic entry point.
The names below are imported on first use, so that reading the variant registry (the workflow, the report
commands) does not import torch."""

from __future__ import annotations

import importlib

_EXPORTS = {"AdaptResult": "ioda.adapt.api", "adapt": "ioda.adapt.api", "adapt_stacked": "ioda.adapt.api",
            "AdaptSettings": "ioda.adapt.settings"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ioda.adapt' has no attribute {name!r}")
