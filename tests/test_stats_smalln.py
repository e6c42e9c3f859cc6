"""Small-N statistics of a paired difference: the Student-t interval against the textbook formula, the exact
sign-flip p-value against patterns counted by hand, and the both-intervals verdict. Their columns in
aggregate.csv, the tables and summary.md are checked in test_report.py."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from ioda.report.stats import (SIGN_FLIP_RESAMPLES, paired_diff, shows_effect_both, sign_flip_p,
                               sign_flip_patterns, t_ci)

# 97.5% quantiles of Student's t in closed form (not from scipy): with a = 4p(1 - p), p = 0.975,
# df = 2: (2p - 1) sqrt(2 / a); df = 4: 2 sqrt(q - 1), q = cos(arccos(sqrt(a)) / 3) / sqrt(a).
_A = 4 * 0.975 * 0.025
T975 = {2: 0.95 * math.sqrt(2 / _A), 4: 2 * math.sqrt(math.cos(math.acos(math.sqrt(_A)) / 3) / math.sqrt(_A) - 1)}


def hand_t(d: list[float]) -> tuple[float, float]:
    x = np.asarray(d)
    half = T975[len(x) - 1] * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean() - half, x.mean() + half


@pytest.mark.parametrize("d", [[1.0, 2.0, 4.0], [-1.0, -0.5, 0.0], [0.12, -0.03, 0.4, 0.25, 0.08]])
def test_t_interval_is_the_textbook_formula(d):
    assert t_ci(d) == pytest.approx(hand_t(d), rel=1e-12)


def test_t_interval_without_an_interval():
    assert all(math.isnan(v) for v in t_ci([1.0]) + t_ci([]))  # N < 2
    assert all(math.isnan(v) for v in t_ci([math.nan, 2.0]))  # one finite value left
    assert t_ci([0.4, 0.4, 0.4]) == (0.4, 0.4)  # no spread: the mean itself, as the bootstrap


def test_sign_flip_p_counted_by_hand():
    # all positive: only the observed pattern and its mirror reach |mean|, 2 of 2^N
    assert sign_flip_p([0.1, 0.3, 0.2, 0.5, 0.05]) == 2 / 32 == 1 / 16
    assert sign_flip_p([-0.1, -0.3, -0.2, -0.5, -0.05]) == 1 / 16  # two-sided
    assert sign_flip_patterns(5) == 32
    # [1, 2, 4]: |sums| of the 8 patterns are 7, 5, 3, 1 (twice each): observed 7 -> 2/8
    assert sign_flip_p([1.0, 2.0, 4.0]) == 0.25
    # [1, -2, 4]: observed |3|; 7, 5 and 3 reach it -> 6/8
    assert sign_flip_p([1.0, -2.0, 4.0]) == 0.75
    # [-1, -0.5, 0]: a zero difference flips to itself, so each pattern counts twice: 4/8
    assert sign_flip_p([-1.0, -0.5, 0.0]) == 0.5


def test_sign_flip_p_ties_count_despite_rounding():
    # decimals that are not exact in binary: several patterns tie the observed |sum| 0.2 exactly, their float
    # sums differ in the last bits; the reference counts on exact fractions
    d = ["0.3", "0.1", "0.2", "-0.4", "0.7", "-0.1"]
    exact = [Fraction(v) for v in d]
    observed = abs(sum(exact))
    hits = sum(abs(sum(s * v for s, v in zip(signs, exact))) >= observed
               for signs in itertools.product((1, -1), repeat=len(d)))
    assert sign_flip_p([float(v) for v in d]) == hits / 2 ** len(d)
    assert sign_flip_p([0.1, 0.2, -0.3]) == 1.0  # observed mean 0 (up to rounding): every pattern reaches it


def test_sign_flip_p_for_one_and_no_value():
    assert sign_flip_p([2.0]) == 1.0  # +d and -d have the same |mean|
    assert math.isnan(sign_flip_p([])) and math.isnan(sign_flip_p([math.nan]))
    assert sign_flip_p([0.0, 0.0]) == 1.0


def test_sign_flip_p_monte_carlo_above_the_exact_limit():
    x = np.full(24, 0.3)  # 2^24 patterns: random ones instead, seeded
    assert sign_flip_patterns(24) == SIGN_FLIP_RESAMPLES
    p = sign_flip_p(x, seed=3)
    assert p == sign_flip_p(x, seed=3) and p == pytest.approx(1 / (SIGN_FLIP_RESAMPLES + 1), abs=2e-5)
    # the exact test and the random one agree where both run
    y = [0.5, -0.2, 0.1, 0.4, -0.3, 0.25]
    assert sign_flip_p(y, exact_max=0, n_resamples=20_000, seed=1) == pytest.approx(sign_flip_p(y), abs=0.02)


def test_an_effect_needs_both_intervals_to_exclude_zero():
    assert shows_effect_both(0.1, 0.5, 0.05, 0.6) is True
    assert shows_effect_both(-0.5, -0.1, -0.6, -0.05) is True
    assert shows_effect_both(0.1, 0.5, -0.2, 0.8) is False  # the bootstrap excludes 0, the t interval does not
    assert shows_effect_both(-0.2, 0.5, 0.1, 0.8) is False
    assert shows_effect_both(0.1, 0.5, 0.0005, 0.8) is False  # within the resolution of 0
    assert shows_effect_both(0.1, 0.5, math.nan, math.nan) is None  # no t interval: no verdict
    # differences 1, 2, 4 dB at N = 3: bootstrap [1, 4] excludes 0, t [-1.46, 6.13] does not -> no effect
    d = paired_diff([21.0, 22.0, 24.0], 20.0, seed=0)
    assert d.low >= 1.0 and not d.includes_zero
    assert (d.t_low, d.t_high) == pytest.approx(hand_t([1.0, 2.0, 4.0])) and d.shows_effect is False
    assert d.sign_flip_p == 0.25
    close = paired_diff([23.0, 23.5, 24.5], 20.0, seed=0)  # 3, 3.5, 4.5: both intervals exclude 0
    assert close.shows_effect is True
    single = paired_diff([26.0], 20.0, seed=0)
    assert single.shows_effect is None and math.isnan(single.t_low) and single.sign_flip_p == 1.0
