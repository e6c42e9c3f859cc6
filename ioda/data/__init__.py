"""Datasets: the registry, MATLAB-compatible resizing, synthetic camera degradations, downloads and pairs.

The degradations and the registry are imported on first use, so reading the registry alone (ioda.plan's checks)
does not import the image libraries the degradations need. imresize is bound here (the function, not the module
of the same name)."""

import importlib

from ioda.data.imresize import imresize

_WHERE = {"DEGRADATIONS": "ioda.data.degradations", "degrade": "ioda.data.degradations",
          "REGISTRY": "ioda.data.registry", "get_entry": "ioda.data.registry"}

__all__ = ["DEGRADATIONS", "REGISTRY", "degrade", "get_entry", "imresize"]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ioda.data' has no attribute {name!r}")
