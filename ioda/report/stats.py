"""Statistics of a cell's N runs (one per single target image): spread, paired difference to the source
model with a seeded percentile-bootstrap and a Student-t confidence interval and an exact sign-flip p-value, and
the step count chosen on a validation domain.

Pure functions on numbers; ioda.report.aggregate feeds them the runs' PSNRs and curves.

- Spread: population variance (ddof=0, the paper's "±") and sample standard deviation (ddof=1).
- Paired difference: run i adapted on target image i and the source model are scored on the same target test
  images, so d_i = PSNR(run i) - PSNR(source). The interval is scipy's percentile bootstrap of mean(d) over the
  N target images (BOOTSTRAP_RESAMPLES resamples, seeded); with N < 2 there is no interval. At the paper's N = 5
  the bootstrap interval is too narrow (it ignores that the spread itself is estimated from 5 numbers), so the
  paired Student-t interval (df = N - 1) is computed beside it, and a cell shows an effect only when BOTH
  intervals exclude 0 (shows_effect_both). The two-sided sign-flip (randomisation) p-value of mean(d) = 0 is
  exact over all 2^N sign patterns up to SIGN_FLIP_EXACT_MAX images: at N = 5 its smallest value is 2/32 = 1/16,
  so p < 0.05 cannot happen there.
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
# The sign-flip test enumerates all 2^N patterns up to this N (2^20 sums, 8 MB); above, SIGN_FLIP_RESAMPLES
# seeded random patterns.
SIGN_FLIP_EXACT_MAX = 20
SIGN_FLIP_RESAMPLES = 100_000


def shows_effect(low: float, high: float, resolution: float = RESOLUTION_DB) -> bool | None:
    """Whether an interval of a difference excludes 0 by more than `resolution`; None without an interval."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low > resolution or high < -resolution


def shows_effect_both(low: float, high: float, t_low: float, t_high: float,
                      resolution: float = RESOLUTION_DB) -> bool | None:
    """The verdict: an effect only when both the bootstrap [low, high] and the t [t_low, t_high] interval
    exclude 0 by more than `resolution`; None when either interval is missing."""
    boot, t = shows_effect(low, high, resolution), shows_effect(t_low, t_high, resolution)
    if boot is None or t is None:
        return None
    return boot and t


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
    t_low: float = math.nan  # CONFIDENCE paired Student-t interval of the mean; NaN for n < 2
    t_high: float = math.nan
    sign_flip_p: float = math.nan  # two-sided sign-flip p-value of mean = 0; NaN for n = 0

    @property
    def includes_zero(self) -> bool | None:
        """Whether the bootstrap interval reaches 0 (within RESOLUTION_DB); None without one (n < 2)."""
        effect = shows_effect(self.low, self.high)
        return None if effect is None else not effect

    @property
    def shows_effect(self) -> bool | None:
        """The verdict: both the bootstrap and the t interval exclude 0; None without intervals (n < 2)."""
        return shows_effect_both(self.low, self.high, self.t_low, self.t_high)


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


def t_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean, mean ± t_{(1+confidence)/2, N-1} * s / sqrt(N) with s the sample standard
    deviation; (NaN, NaN) for n < 2. With no spread it is the mean itself, as the bootstrap's."""
    x = _finite(values)
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):  # no spread (scipy needs a scale > 0): the value itself, not its rounded mean
        return float(x[0]), float(x[0])
    mean = float(x.mean())
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    low, high = sps.t.interval(confidence, df=n - 1, loc=mean, scale=sem)
    return float(low), float(high)


def sign_flip_patterns(n: int) -> int:
    """How many sign patterns sign_flip_p weighs for n values: all 2^n, or SIGN_FLIP_RESAMPLES random ones."""
    return 2 ** n if n <= SIGN_FLIP_EXACT_MAX else SIGN_FLIP_RESAMPLES


def sign_flip_p(values, seed: int = 0, n_resamples: int = SIGN_FLIP_RESAMPLES,
                exact_max: int = SIGN_FLIP_EXACT_MAX) -> float:
    """Two-sided sign-flip (randomisation) p-value of mean = 0 for paired differences: the share of the 2^N
    patterns of signs on the |d_i| whose |mean| is at least the observed |mean| (observed pattern included).
    Exact for N <= exact_max; above, (hits + 1) / (n_resamples + 1) over seeded random patterns. NaN for N = 0.
    Equal |means| are compared with a tolerance, since sums of the same numbers in another order can differ
    in the last bits."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return math.nan
    observed = abs(float(x.sum()))  # sums, not means: the same order, one division less
    tol = 1e-9 * max(1.0, float(np.abs(x).sum()))
    if n <= exact_max:
        sums = np.zeros(1)
        for v in x:  # every pattern's sum, built one value at a time: 2^n sums
            sums = np.concatenate((sums + v, sums - v))
        return float(np.count_nonzero(np.abs(sums) >= observed - tol)) / len(sums)
    signs = np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=(n_resamples, n))
    hits = np.count_nonzero(np.abs(signs @ x) >= observed - tol)
    return float(hits + 1) / (n_resamples + 1)


def paired_diff(adapted, source, seed: int, n_resamples: int = BOOTSTRAP_RESAMPLES) -> PairedDiff:
    """Mean of adapted_i - source_i with its bootstrap and t intervals and sign-flip p-value. `source` is one number (the source model on
    the same test images as every run) or one value per run; runs with a non-finite value are left out."""
    a = np.asarray(list(adapted), dtype=np.float64)
    s = np.broadcast_to(np.asarray(source, dtype=np.float64), a.shape)
    d = _finite(a - s)
    low, high = bootstrap_ci(d, seed, n_resamples)
    t_low, t_high = t_ci(d)
    return PairedDiff(n=len(d), mean=float(d.mean()) if len(d) else math.nan, low=low, high=high,
                      t_low=t_low, t_high=t_high, sign_flip_p=sign_flip_p(d, seed))


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
