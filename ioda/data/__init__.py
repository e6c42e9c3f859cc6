"""Datasets: the registry, MATLAB-compatible resizing, synthetic camera degradations, downloads and pairs."""

from ioda.data.degradations import DEGRADATIONS, degrade
from ioda.data.imresize import imresize
from ioda.data.registry import REGISTRY, get_entry

__all__ = ["DEGRADATIONS", "REGISTRY", "degrade", "get_entry", "imresize"]
