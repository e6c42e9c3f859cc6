"""Statistics of a cell's N runs (one per single target image): spread, paired difference to the source
model with a seeded percentile-bootstrap confidence interval, and the step count chosen on a validation domain.

Pure functions on numbers; ioda.report.aggregate feeds them the runs' PSNRs and curves.

- Spread: population variance (ddof=0, the paper's "±") and sample standard deviation (ddof=1).
- Paired difference: run i adapted on target image i and the source model are scored on the same target test
  images, so d_i = PSNR(run i) - PSNR(source). The interval is scipy's percentile bootstrap of mean(d) over the
  N target images (BOOTSTRAP_RESAMPLES resamples, seeded); with N < 2 there is no interval.
- Validated step: the step with the best mean PSNR over the VALIDATION task's runs (same source model,
  backbone and variant, another target domain), earliest of equal steps; it is then read off the task's own
  curves. The chooser is only ever given the validation curves, so the task's own target HR never picks it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95
# An interval "includes 0" when it reaches within this many dB of 0: the tables' last digit, above how closely two
# evaluations of one model agree (the step-0 evaluation inside a run and the source model's own differ by ~1e-6
# dB on a CPU; the batched and per-image evaluators by 1.7e-4 dB on a GPU, README "Speed").
RESOLUTION_DB = 1e-3


def shows_effect(low: float, high: float, resolution: float = RESOLUTION_DB) -> bool | None:
    """Whether an interval of a difference excludes 0 by more than `resolution`; None without an interval."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low > resolution or high < -resolution


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); NaN for n < 2
    var: float  # population variance (ddof=0), the paper's "±"; NaN for n = 0


@dataclass(frozen=True)
class PairedDiff:
    n: int
    mean: float
    low: float  # CONFIDENCE percentile-bootstrap interval of the mean; NaN for n < 2
    high: float

    @property
    def includes_zero(self) -> bool | None:
        """Whether the interval reaches 0 (within RESOLUTION_DB); None when there is no interval (n < 2)."""
        effect = shows_effect(self.low, self.high)
        return None if effect is None else not effect


def _finite(values) -> np.ndarray:
    x = np.asarray(list(values), dtype=np.float64)
    return x[np.isfinite(x)]


def spread(values) -> Spread:
    x = np.asarray(list(values), dtype=np.float64)
    x = x[~np.isnan(x)]  # missing runs out; an infinite PSNR (identical images) stays and makes the mean inf
    n = len(x)
    return Spread(
        n=n,
        mean=float(x.mean()) if n else math.nan,
        std=float(x.std(ddof=1)) if n > 1 else math.nan,
        var=float(x.var(ddof=0)) if n else math.nan,
    )


def bootstrap_ci(values, seed: int, n_resamples: int = BOOTSTRAP_RESAMPLES,
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (scipy.stats.bootstrap), seeded; (NaN, NaN) for n < 2."""
    x = _finite(values)
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):  # every resample has the same mean; scipy would warn about a degenerate sample
        return float(x[0]), float(x[0])
    res = sps.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                        method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_diff(adapted, source, seed: int, n_resamples: int = BOOTSTRAP_RESAMPLES) -> PairedDiff:
    """Mean of adapted_i - source_i with its bootstrap interval. `source` is one number (the source model on
    the same test images as every run) or one value per run; runs with a non-finite value are left out."""
    a = np.asarray(list(adapted), dtype=np.float64)
    s = np.broadcast_to(np.asarray(source, dtype=np.float64), a.shape)
    d = _finite(a - s)
    low, high = bootstrap_ci(d, seed, n_resamples)
    return PairedDiff(n=len(d), mean=float(d.mean()) if len(d) else math.nan, low=low, high=high)


def validated_step(validation_curves: Sequence[Mapping[int, float]]) -> int | None:
    """The step of the best mean PSNR over the validation runs' curves ({step: psnr}), over the steps every
    curve evaluated (non-finite values dropped); the earliest of equal means. None without such a step."""
    curves = [{int(s): float(p) for s, p in c.items() if math.isfinite(p)} for c in validation_curves]
    curves = [c for c in curves if c]
    if not curves:
        return None
    common = sorted(set.intersection(*(set(c) for c in curves)))
    if not common:
        return None
    means = [float(np.mean([c[s] for c in curves])) for s in common]
    return common[int(np.argmax(means))]  # argmax: the first of equal maxima


def value_at_step(curve: Mapping[int, float], step: int | None) -> float:
    """A run's PSNR at a step chosen elsewhere; NaN when the run did not evaluate that step."""
    if step is None:
        return math.nan
    value = curve.get(int(step), math.nan)
    return float(value) if math.isfinite(value) else math.nan
