"""Scale factors SF = ε_data / ε_sim per bin, with propagated statistical uncertainties.

With ε and its Clopper-Pearson errors Δ⁺, Δ⁻ in data (d) and simulation (s), linear propagation
of the ratio gives

    σ_up   = sqrt((Δ⁺_d / ε_s)² + (ε_d Δ⁻_s / ε_s²)²)
    σ_down = sqrt((Δ⁻_d / ε_s)² + (ε_d Δ⁺_s / ε_s²)²)

(the SF rises when data rises or simulation falls), ``up = SF + σ_up``, ``down = max(SF −
σ_down, 0)``. A bin without jets in either sample (flag ``empty``) or without a passing
simulated jet (``no_sim_pass``: the ratio is undefined) gets SF 1, up 2, down 0 and its flag:
never NaN. Other bins have flag ``ok``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hepmpm.calibration.efficiency import BinnedEfficiency, bin_index

#: Variations written for each scale factor, in the correctionlib ``systematic`` input.
VARIATIONS: tuple[str, ...] = ("nominal", "up", "down")
FLAGS: tuple[str, ...] = ("ok", "empty", "no_sim_pass")


@dataclass(frozen=True)
class ScaleFactors:
    """Per bin [n_pt, n_eta]: ``nominal``, ``up``, ``down`` and ``flag`` (one of :data:`FLAGS`);
    bin edges ``pt_edges`` [n_pt + 1] / GeV and ``eta_edges`` [n_eta + 1] (|η|)."""

    nominal: np.ndarray
    up: np.ndarray
    down: np.ndarray
    flag: np.ndarray
    pt_edges: np.ndarray
    eta_edges: np.ndarray

    def values(self, variation: str) -> np.ndarray:
        """The [n_pt, n_eta] values of ``variation`` (``nominal``, ``up`` or ``down``)."""
        return {"nominal": self.nominal, "up": self.up, "down": self.down}[variation]

    def lookup(self, pt: np.ndarray, abseta: np.ndarray, variation: str = "nominal") -> np.ndarray:
        """SF [N] of jets (pt / GeV, |η|); outside the binning the nearest bin (clamped), as
        the correctionlib file does."""
        n_pt, n_eta = len(self.pt_edges) - 1, len(self.eta_edges) - 1
        i_pt, i_eta, _ = bin_index(
            np.asarray(pt), np.asarray(abseta), self.pt_edges, self.eta_edges
        )
        return self.values(variation)[np.clip(i_pt, 0, n_pt - 1), np.clip(i_eta, 0, n_eta - 1)]


def scale_factors(
    data: BinnedEfficiency, sim: BinnedEfficiency, pt_edges: np.ndarray, eta_edges: np.ndarray
) -> ScaleFactors:
    """ε_data / ε_sim per bin with the uncertainties of the module docstring."""
    empty = (data.total == 0) | (sim.total == 0)
    no_pass = ~empty & (sim.passed == 0)
    good = ~(empty | no_pass)
    nominal, up, down = (
        np.ones(data.total.shape),
        np.full(data.total.shape, 2.0),
        np.zeros(data.total.shape),
    )
    e_d, e_s = data.efficiency[good], sim.efficiency[good]
    sf = e_d / e_s
    sigma_up = np.hypot(data.error_up[good] / e_s, e_d * sim.error_down[good] / e_s**2)
    sigma_down = np.hypot(data.error_down[good] / e_s, e_d * sim.error_up[good] / e_s**2)
    nominal[good], up[good], down[good] = sf, sf + sigma_up, np.maximum(sf - sigma_down, 0.0)
    flag = np.full(data.total.shape, "ok", dtype=object)
    flag[empty], flag[no_pass] = "empty", "no_sim_pass"
    return ScaleFactors(
        nominal, up, down, flag, np.asarray(pt_edges, float), np.asarray(eta_edges, float)
    )
