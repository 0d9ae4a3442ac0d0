"""Calibration plots in the studies' mplhep style: efficiencies and scale factors vs jet pT.

One figure per working point and quantity; panels: signal efficiency, mistag rate. Points sit
at pT bin centres with horizontal bars over the bin and the Clopper-Pearson (efficiencies) or
propagated (SF) vertical errors; one series per |η| bin (and per sample for efficiencies).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hepmpm.calibration.efficiency import BinnedEfficiency
from hepmpm.calibration.scale_factors import ScaleFactors
from hepmpm.evaluation.plots import new_figure, save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PANELS = ("signal", "mistag")


def _points(
    ax: Axes, edges: np.ndarray, y: np.ndarray, low: np.ndarray, high: np.ndarray, **kw: Any
) -> None:
    centres, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
    ok = np.isfinite(y)
    ax.errorbar(
        centres[ok], y[ok], xerr=half[ok], yerr=[y[ok] - low[ok], high[ok] - y[ok]],
        linestyle="none", markersize=5, **{"marker": "o", **kw},
    )  # fmt: skip


def _eta_label(eta_edges: np.ndarray, j: int) -> str:
    return f"{eta_edges[j]:g} ≤ |η| < {eta_edges[j + 1]:g}"


def efficiency_plot(
    efficiencies: Mapping[str, Mapping[str, BinnedEfficiency]],
    pt_edges: np.ndarray,
    eta_edges: np.ndarray,
    title: str,
    path: Path,
) -> Path:
    """``efficiencies[panel][sample]`` (panel: signal, mistag, or mistag only on data without
    truth; sample: sim, data) vs pT."""
    panels = [panel for panel in PANELS if panel in efficiencies]
    fig, axes = new_figure(len(panels), 1, size=5.0)
    for ax, panel in zip(axes.flat, panels, strict=True):
        for sample, marker in (("sim", "o"), ("data", "s")):
            e = efficiencies[panel][sample]
            for j in range(len(eta_edges) - 1):
                _points(
                    ax, pt_edges, e.efficiency[:, j], e.low[:, j], e.high[:, j],
                    label=f"{sample}, {_eta_label(eta_edges, j)}", marker=marker,
                )  # fmt: skip
        ax.set_xlabel("jet $p_T$ [GeV]")
        ax.set_ylabel("signal efficiency" if panel == "signal" else "mistag rate")
        if panel == "mistag":
            ax.set_yscale("log")
        ax.set_title(title, fontsize=12, pad=22)
        ax.legend(fontsize=9)
    return save_figure(fig, path, text="Simulation / pseudo-data")


def scale_factor_plot(factors: Mapping[str, ScaleFactors], title: str, path: Path) -> Path:
    """``factors[panel]`` (signal, mistag) vs pT, nominal with up/down as the error bar; bins
    flagged (empty, no passing simulated jet) are drawn hollow at 1."""
    panels = [panel for panel in PANELS if panel in factors]
    fig, axes = new_figure(len(panels), 1, size=5.0)
    for ax, panel in zip(axes.flat, panels, strict=True):
        sf = factors[panel]
        flagged_label = "flagged bin (SF 1 ± 1)"
        for j in range(len(sf.eta_edges) - 1):
            ok = sf.flag[:, j] == "ok"
            nominal = np.where(ok, sf.nominal[:, j], np.nan)
            _points(ax, sf.pt_edges, nominal, sf.down[:, j], sf.up[:, j],
                    label=_eta_label(sf.eta_edges, j))  # fmt: skip
            if (~ok).any():
                centres = 0.5 * (sf.pt_edges[1:] + sf.pt_edges[:-1])
                ax.plot(centres[~ok], np.ones((~ok).sum()), "o", fillstyle="none", color="grey",
                        label=flagged_label)  # fmt: skip
                flagged_label = None  # one legend entry
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xlabel("jet $p_T$ [GeV]")
        ax.set_ylabel(f"SF ({'signal efficiency' if panel == 'signal' else 'mistag'})")
        ax.set_title(title, fontsize=12, pad=22)
        ax.legend(fontsize=9)
    return save_figure(fig, path, text="Simulation / pseudo-data")
