"""Statistical uncertainties of tagger metrics on a finite test set.

- :func:`binomial_error`: the standard error ``sqrt(p (1 - p) / n)`` of a fraction such as the
  accuracy (each test jet right or wrong, independently).
- :func:`bootstrap`: a statistic recomputed on test sets resampled with replacement, for metrics
  without a closed form (background rejection, AUC) and for differences between two taggers
  scored on the same jets (a paired bootstrap: both see the same resampled jets, so the spread of
  the difference excludes what the jets have in common).

These are the test-set (statistical) errors only; the spread between training seeds is
another, often larger, uncertainty (the studies measure it over seeds).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def binomial_error(fraction: float, n: int) -> float:
    """Standard error of a fraction ``fraction`` measured on ``n`` independent trials."""
    if n <= 0:
        raise ValueError("binomial_error needs at least one trial")
    return math.sqrt(max(fraction * (1.0 - fraction), 0.0) / n)


def bootstrap(
    statistic: Callable[[np.ndarray], float], n: int, resamples: int = 200, seed: int = 0
) -> np.ndarray:
    """``statistic`` of ``resamples`` bootstrap test sets: each call gets the indices [n] (int64)
    of ``n`` jets drawn with replacement; returns the values [resamples] (float64). Their
    standard deviation is the statistic's bootstrap error."""
    if n <= 0:
        raise ValueError("bootstrap needs at least one jet")
    rng = np.random.default_rng(seed)
    return np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
