"""Datasets: the registry, MATLAB-compatible resizing, synthetic camera degradations, downloads and pairs."""
