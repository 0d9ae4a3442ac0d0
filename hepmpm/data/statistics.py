"""Per-feature statistics of a skim (mean, std, min, max, quantiles) for its manifest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from hepmpm.data.shards import particle_features
from hepmpm.features import FeatureSet

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def feature_statistics(
    shards: Sequence[Path], feature_set: FeatureSet, max_sample: int = 200_000
) -> dict[str, dict[str, float | int | dict[str, float]]]:
    """Statistics of every feature over all particles of ``shards``.

    Mean, std, min and max are exact (float64 sums); the quantiles come from an evenly strided,
    deterministic sample of at most ``max_sample`` particles.
    """
    total = np.zeros(feature_set.n_features)
    total_sq = np.zeros(feature_set.n_features)
    low = np.full(feature_set.n_features, np.inf)
    high = np.full(feature_set.n_features, -np.inf)
    count = 0
    samples = []
    n_particles = sum(
        int(pq.read_table(p, columns=["n_particles"])["n_particles"].to_numpy().sum())
        for p in shards
    )
    stride = max(1, -(-n_particles // max_sample))  # ceil: the sample stays within max_sample
    for path in shards:
        flat, _ = particle_features(pq.read_table(path, columns=["particles"])["particles"])
        values = flat.astype(np.float64)
        total += values.sum(axis=0)
        total_sq += (values**2).sum(axis=0)
        low = np.minimum(low, values.min(axis=0, initial=np.inf))
        high = np.maximum(high, values.max(axis=0, initial=-np.inf))
        count += len(values)
        samples.append(flat[::stride].copy())
    if count == 0:
        return {}
    sample = np.concatenate(samples)
    quantiles = np.quantile(sample, QUANTILES, axis=0)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return {
        name: {
            "count": count,
            "mean": float(mean[i]),
            "std": float(std[i]),
            "min": float(low[i]),
            "max": float(high[i]),
            "quantiles": {f"{q:g}": float(quantiles[j, i]) for j, q in enumerate(QUANTILES)},
        }
        for i, name in enumerate(feature_set.names)
    }
