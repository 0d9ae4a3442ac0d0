"""Pass fractions of jets in bins of pT and |η|, with Clopper-Pearson intervals.

Bins are half-open, ``[edges[i], edges[i + 1])``; pT in GeV. Jets outside the binning are not
counted (and are reported by the caller). Intervals are the central 68.27% Clopper-Pearson
intervals of :func:`hist.intervals.clopper_pearson_interval`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hist.intervals import clopper_pearson_interval

#: Coverage of the intervals: one Gaussian standard deviation.
COVERAGE = 0.682689492137086


@dataclass(frozen=True)
class BinnedEfficiency:
    """Jets passing / all jets per bin, arrays [n_pt, n_eta]; ``efficiency``, ``low``,
    ``high`` are NaN in bins without jets."""

    passed: np.ndarray
    total: np.ndarray
    efficiency: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def error_up(self) -> np.ndarray:
        return self.high - self.efficiency

    @property
    def error_down(self) -> np.ndarray:
        return self.efficiency - self.low


def bin_index(
    pt: np.ndarray, abseta: np.ndarray, pt_edges: np.ndarray, eta_edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per jet [N]: pT bin, |η| bin, and whether the jet lies inside the binning."""
    i_pt = np.searchsorted(pt_edges, pt, side="right") - 1
    i_eta = np.searchsorted(eta_edges, abseta, side="right") - 1
    inside = (i_pt >= 0) & (i_pt < len(pt_edges) - 1) & (i_eta >= 0) & (i_eta < len(eta_edges) - 1)
    return i_pt, i_eta, inside


def efficiency_from_counts(passed: np.ndarray, total: np.ndarray) -> BinnedEfficiency:
    """The efficiency and its Clopper-Pearson interval of ``passed`` of ``total`` jets."""
    passed, total = np.asarray(passed, dtype=np.int64), np.asarray(total, dtype=np.int64)
    filled = total > 0
    efficiency = np.full(total.shape, np.nan)
    low, high = efficiency.copy(), efficiency.copy()
    efficiency[filled] = passed[filled] / total[filled]
    if filled.any():
        interval = clopper_pearson_interval(
            passed[filled].astype(float), total[filled].astype(float), coverage=COVERAGE
        )
        low[filled], high[filled] = interval
    return BinnedEfficiency(passed, total, efficiency, low, high)


def binned_efficiency(
    passed: np.ndarray,
    pt: np.ndarray,
    abseta: np.ndarray,
    pt_edges: np.ndarray,
    eta_edges: np.ndarray,
) -> BinnedEfficiency:
    """Pass fraction of jets (``passed`` bool [N], ``pt`` [N] / GeV, ``abseta`` [N]) per bin."""
    i_pt, i_eta, inside = bin_index(pt, abseta, pt_edges, eta_edges)
    shape = (len(pt_edges) - 1, len(eta_edges) - 1)
    flat = np.ravel_multi_index((i_pt[inside], i_eta[inside]), shape)
    size = shape[0] * shape[1]
    total = np.bincount(flat, minlength=size).reshape(shape)
    n_pass = np.bincount(flat, weights=passed[inside], minlength=size).reshape(shape)
    return efficiency_from_counts(n_pass.astype(np.int64), total)
