"""Deterministic train/val/test split of jets by a hash of their identity.

A jet is identified by ``(run, luminosityBlock, event, jet_index)``. These four integers are mixed
with splitmix64 (numpy ``uint64`` arithmetic, which wraps the same way on every platform) into a
64-bit hash, the hash is mapped to a number ``u`` uniform in [0, 1), and the split is ``train`` for
``u < f_train``, ``val`` for ``u < f_train + f_val`` and ``test`` otherwise. A jet therefore lands
in the same split whatever shard, skim run, worker count or machine it is read with, and adding
jets to a skim never moves the old ones between splits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hepmpm.errors import HepmpmError

#: Split names, in the order of their codes (0, 1, 2).
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Default fractions of ``SPLITS``.
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
#: Distinguishes the split hash from other uses of splitmix64 on the same jets.
_SPLIT_SALT = np.uint64(0x6865706D706D2D31)  # "hepmpm-1"


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser of ``x`` (integers, taken modulo 2^64) -> uint64 [same shape].

    Vectorised over the array; overflow wraps modulo 2^64, as in the reference C implementation.
    """
    z = np.asarray(x).astype(np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def jet_hash(
    run: np.ndarray, luminosity_block: np.ndarray, event: np.ndarray, jet_index: np.ndarray
) -> np.ndarray:
    """64-bit hash of each jet's identity -> uint64 [n_jets]; inputs are integer arrays [n_jets]."""
    h = splitmix64(np.asarray(run).astype(np.uint64) ^ _SPLIT_SALT)
    for part in (luminosity_block, event, jet_index):
        # jet_index is int32; a negative value would wrap consistently via int64 -> uint64.
        h = splitmix64(h ^ np.asarray(part).astype(np.int64).astype(np.uint64))
    return h


def unit_interval(h: np.ndarray) -> np.ndarray:
    """Map uint64 hashes to float64 uniform in [0, 1) using their top 53 bits [same shape]."""
    return (np.asarray(h, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def check_fractions(
    fractions: Sequence[float] | Mapping[str, float] | None,
) -> tuple[float, float, float]:
    """Validate split fractions (train, val, test): non-negative, summing to 1.

    Accepts a sequence of three numbers, a mapping with exactly the keys ``train``, ``val``,
    ``test``, or ``None`` for :data:`DEFAULT_FRACTIONS`.
    """
    if fractions is None:
        return DEFAULT_FRACTIONS
    if isinstance(fractions, Mapping):
        if set(fractions) != set(SPLITS):
            raise HepmpmError(
                f"split fractions need exactly the keys {list(SPLITS)}, got {sorted(fractions)}"
            )
        values = [fractions[name] for name in SPLITS]
    else:
        values = list(fractions)
        if len(values) != len(SPLITS):
            raise HepmpmError(
                f"split fractions need {len(SPLITS)} numbers (train, val, test), got {values}"
            )
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise HepmpmError(f"split fractions must be numbers, got {values}") from None
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise HepmpmError(f"split fractions must be finite and >= 0, got {values}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise HepmpmError(f"split fractions must sum to 1, got {values} (sum {sum(values):.6g})")
    total = sum(values)  # within 1e-6 of 1: normalise so that the thresholds end exactly at 1
    return values[0] / total, values[1] / total, values[2] / total


def split_code(name: str) -> int:
    """The code (0, 1, 2) of a split name; a clear error for anything else."""
    if name not in SPLITS:
        raise HepmpmError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
    return SPLITS.index(name)


def assign_splits(
    hashes: np.ndarray,
    fractions: Sequence[float] | Mapping[str, float] | None = None,
) -> np.ndarray:
    """Split code per jet (0 train, 1 val, 2 test) -> int8 [n_jets], from jet hashes [n_jets]."""
    f_train, _, f_test = check_fractions(fractions)
    u = unit_interval(hashes)
    codes = np.full(u.shape, 2, dtype=np.int8)
    codes[u < 1.0 - f_test] = 1  # f_test = 0 puts no jet in test (u < 1 always)
    codes[u < f_train] = 0
    return codes
