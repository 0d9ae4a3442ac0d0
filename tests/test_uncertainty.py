"""Statistical errors of tagger metrics: the binomial error by hand, the bootstrap against the
closed form where one exists, and the paired bootstrap of a difference."""

from __future__ import annotations

import numpy as np
import pytest

from hepmpm.evaluation.uncertainty import binomial_error, bootstrap


def test_binomial_error_by_hand():
    assert binomial_error(0.7, 1000) == pytest.approx((0.7 * 0.3 / 1000) ** 0.5)
    assert binomial_error(1.0, 50) == 0.0
    with pytest.raises(ValueError):
        binomial_error(0.5, 0)


def test_bootstrap_of_a_fraction_matches_the_binomial_error():
    rng = np.random.default_rng(3)
    right = rng.random(2000) < 0.8
    values = bootstrap(lambda i: right[i].mean(), len(right), resamples=1000, seed=1)
    assert values.std() == pytest.approx(binomial_error(right.mean(), len(right)), rel=0.1)
    again = bootstrap(lambda i: right[i].mean(), len(right), resamples=1000, seed=1)
    assert np.array_equal(values, again)  # seeded


def test_paired_difference_is_tighter_than_the_errors_combined():
    """Two taggers right on mostly the same jets: the paired spread of their difference is far
    below the quadrature sum of their separate errors."""
    rng = np.random.default_rng(4)
    a = rng.random(2000) < 0.8
    b = a.copy()
    flip = rng.choice(len(a), 60, replace=False)
    b[flip] = ~b[flip]
    paired = bootstrap(lambda i: a[i].mean() - b[i].mean(), len(a), resamples=500).std()
    combined = np.hypot(binomial_error(a.mean(), len(a)), binomial_error(b.mean(), len(b)))
    assert paired < 0.5 * combined
