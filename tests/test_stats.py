"""ioda.report.stats against hand-computed values: spread, the seeded bootstrap on small fixed samples (whose
exact bootstrap distributions are enumerated by hand below), the paired difference and the validated step."""

import math

import numpy as np
import pytest

from ioda.report.stats import (BOOTSTRAP_RESAMPLES, bootstrap_ci, paired_diff, shows_effect, spread,
                               validated_step, value_at_step)


def test_spread_population_variance_and_sample_std():
    s = spread([21.0, 22.0, 24.0, math.nan])  # the NaN run is left out
    assert s.n == 3 and s.mean == pytest.approx(67 / 3)
    assert s.var == pytest.approx(14 / 9)  # squared deviations 16/9 + 1/9 + 25/9, over 3
    assert s.std == pytest.approx(math.sqrt(7 / 3))  # the same sum over 2
    one = spread([5.0])
    assert one.mean == 5.0 and one.var == 0.0 and math.isnan(one.std)


def test_bootstrap_interval_of_small_fixed_samples():
    # [0, 0, 3]: a resample's mean is the number of 3s drawn, k ~ Binomial(3, 1/3): P(k=0) = 8/27 > 2.5% and
    # P(k=3) = 1/27 = 3.7% > 2.5%, so the 95% percentile interval is [0, 3]
    assert bootstrap_ci([0.0, 0.0, 3.0], seed=0) == pytest.approx((0.0, 3.0))
    # [0, 0, 0, 8]: mean = 2k, k ~ Binomial(4, 1/4): P(k=0) = 81/256; P(k=4) = 1/256 < 2.5% < P(k>=3) = 13/256,
    # so the upper end is 2 * 3 = 6
    assert bootstrap_ci([0.0, 0.0, 0.0, 8.0], seed=1) == pytest.approx((0.0, 6.0))
    # [-1, 1]: means -1, 0, 1 with probabilities 1/4, 1/2, 1/4 -> [-1, 1], which includes 0
    assert bootstrap_ci([-1.0, 1.0], seed=2) == pytest.approx((-1.0, 1.0))
    assert bootstrap_ci([0.4, 0.4, 0.4], seed=0) == (0.4, 0.4)  # no spread, no interval width
    assert all(math.isnan(v) for v in bootstrap_ci([1.0], seed=0))  # one image: no interval


def test_bootstrap_is_seeded():
    x = [0.1, 0.2, 0.05, 0.3, -0.02, 0.15]
    assert bootstrap_ci(x, seed=7) == bootstrap_ci(x, seed=7)
    low, high = bootstrap_ci(x, seed=7)
    assert low < np.mean(x) < high and BOOTSTRAP_RESAMPLES >= 1000
    assert bootstrap_ci(x, seed=7, n_resamples=200) != bootstrap_ci(x, seed=7)  # the count is honoured


def test_paired_difference_to_the_source_model():
    d = paired_diff([25.1, 25.3, 25.0], 25.0, seed=0)
    assert d.n == 3 and d.mean == pytest.approx(0.4 / 3)
    assert 0.0 <= d.low <= d.mean <= d.high <= 0.3 + 1e-9 and d.includes_zero  # low is the all-25.0 resample
    lower = paired_diff([24.0, 24.5], [25.0, 25.0], seed=0)  # per-run source values also work
    assert lower.mean == pytest.approx(-0.75) and lower.high == pytest.approx(-0.5) and not lower.includes_zero
    single = paired_diff([26.0], 25.0, seed=0)
    assert single.mean == pytest.approx(1.0) and single.includes_zero is None


def test_an_interval_within_the_resolution_of_zero_shows_no_effect():
    # two evaluations of the same source model (step 0 of a run, and the model itself) differ by ~1e-6 dB
    same = paired_diff([25.397112, 25.397112, 25.397112], 25.397113, seed=0)
    assert same.high < 0 and same.includes_zero and shows_effect(same.low, same.high) is False
    assert shows_effect(0.002, 0.01) and shows_effect(-0.3, -0.0011) and not shows_effect(-0.02, 0.3)
    assert shows_effect(0.0005, 0.01) is False and shows_effect(math.nan, 1.0) is None


def test_validated_step_on_a_synthetic_curve():
    val = [{0: 20.0, 4: 21.0, 8: 22.0, 12: 21.5}, {0: 20.0, 4: 21.5, 8: 21.8, 12: 21.0}]
    # means: 20, 21.25, 21.9, 21.25 -> step 8
    assert validated_step(val) == 8
    assert validated_step([{0: 1.0, 4: 2.0, 8: 2.0}]) == 4  # the earliest of equal means
    assert validated_step([{0: 1.0, 4: 2.0, 8: 9.0}, {0: 1.0, 4: 2.0}]) == 4  # only steps every run evaluated
    assert validated_step([{0: 1.0, 4: math.nan}]) == 0 and validated_step([]) is None


def test_validated_value_is_read_at_the_validation_step_not_the_tasks_best():
    val = [{0: 20.0, 4: 20.5, 8: 21.0}]
    own = {0: 25.0, 4: 99.0, 8: 25.5}  # the task's own curve peaks at step 4 (its oracle)
    step = validated_step(val)  # the chooser only ever sees validation curves
    assert step == 8 and value_at_step(own, step) == 25.5
    assert math.isnan(value_at_step(own, 12)) and math.isnan(value_at_step(own, None))
