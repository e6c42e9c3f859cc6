"""ioda: instance-guided one-shot domain adaptation for super-resolution."""

__version__ = "0.1.0"
