"""Statistical errors of tagger metrics: the binomial error by hand, the bootstrap against the
closed form where one exists, and the paired bootstrap of a difference."""

from __future__ import annotations

import numpy as np
import pytest

from hepmpm.evaluation.metrics import (
    classification_metrics,
    mean_rejection,
    mean_rejection_of_scores,
)
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


@pytest.mark.parametrize("separation", [1.5, 30.0])  # 30: no QCD jet passes, unbounded
def test_mean_rejection_of_scores_equals_the_full_metrics(separation):
    """The bootstrap's lean rejection is the one of classification_metrics, bound included."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, 800)
    logits = rng.normal(size=(800, 4))
    logits[np.arange(800), labels] += separation
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    names = ["QCD", "Hbb", "Wqq", "Tbqq"]
    full = mean_rejection(classification_metrics(probs, labels, names))
    assert mean_rejection_of_scores(probs, labels, names) == pytest.approx(full)
    if separation > 10:
        assert full == (labels == 0).sum()  # every class bounded by the QCD jets there are
