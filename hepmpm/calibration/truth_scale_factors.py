"""Data/simulation scale factors of a tagger from the truth of pseudo-data: the signal
efficiency and the background mistag rate on simulated and on pseudo-data jets at working points
fixed on simulation, in one bin, through :mod:`hepmpm.calibration`'s working points,
Clopper-Pearson efficiencies and SF propagation (what ``hepmpm calibrate`` does binned, from the
tagged files). The sim-to-real studies and the quickstart's report read them.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from hepmpm.calibration.efficiency import efficiency_from_counts
from hepmpm.calibration.scale_factors import scale_factors
from hepmpm.calibration.working_points import WorkingPointSpec, find_threshold
from hepmpm.config import StrictModel
from hepmpm.errors import HepmpmError
from hepmpm.evaluation.metrics import versus_background_score

#: One bin holds every jet: the samples' generator window (500 < pT < 1000 GeV, |eta| < 2).
ONE_BIN = np.array([0.0, 1.0])


class ScaleFactorConfig(StrictModel):
    """``scale_factors:`` of a study or the quickstart: data/simulation SFs of each tagger at
    mistag working points."""

    signals: list[str] = Field(
        default_factory=lambda: ["Tbqq", "Hbb"],
        description="signal classes; each is scored with p_s / (p_s + p_background)",
    )
    background: str = Field("QCD", description="the background class (its mistag SF too)")
    mistag: list[float] = Field(
        default_factory=lambda: [0.05, 0.01],
        description="background efficiencies of the working points, fixed on simulation",
    )

    def model_post_init(self, _context: object) -> None:
        if not all(0 < m < 1 for m in self.mistag):
            raise ValueError("scale_factors.mistag: rates must lie in (0, 1)")
        if self.background in self.signals:
            raise ValueError("scale_factors: the background cannot be a signal")

    def columns(self) -> list[str]:
        """The value names :func:`scale_factor_values` returns, in order."""
        names = []
        for signal in self.signals:
            for target in self.mistag:
                wp = WorkingPointSpec("mistag", target).name
                for panel in ("eff", "mistag"):
                    base = f"{signal}_{panel}_{wp}"
                    names += [f"sf_{base}", f"sf_err_{base}", f"abs_sf_m1_{base}"]
        return names


def scale_factor_values(
    sim: tuple[np.ndarray, np.ndarray],
    data: tuple[np.ndarray, np.ndarray],
    class_names: list[str],
    config: ScaleFactorConfig,
) -> dict[str, float]:
    """Scale factors of one tagger: ``sim`` and ``data`` are (scores [N, C], true output
    position [N]) of simulated and pseudo-data jets. For every signal and mistag working point
    (threshold on simulation), the signal-efficiency SF (``eff``) and the background mistag SF
    (``mistag``) in one bin: ``sf_*`` (nominal), ``sf_err_*`` (half the up-down interval) and
    ``abs_sf_m1_*`` = |SF - 1|; NaN at a working point the simulation cannot reach."""
    b = class_names.index(config.background)
    values: dict[str, float] = {}
    for signal in config.signals:
        s = class_names.index(signal)
        d_sim = versus_background_score(sim[0], s, b)
        d_data = versus_background_score(data[0], s, b)
        for target in config.mistag:
            spec = WorkingPointSpec("mistag", target)
            try:
                wp = find_threshold(spec, d_sim[sim[1] == s], d_sim[sim[1] == b])
            except HepmpmError:  # too few or tied QCD scores: NaN, not a stopped study
                for panel in ("eff", "mistag"):
                    base = f"{signal}_{panel}_{spec.name}"
                    values |= nan_values([f"sf_{base}", f"sf_err_{base}", f"abs_sf_m1_{base}"])
                continue
            for panel, index in (("eff", s), ("mistag", b)):
                rates = []
                for d, truth in ((d_data, data[1]), (d_sim, sim[1])):
                    chosen = truth == index
                    passed = int((d[chosen] >= wp.threshold).sum())
                    rates.append(efficiency_from_counts([[passed]], [[int(chosen.sum())]]))
                sf = scale_factors(rates[0], rates[1], ONE_BIN, ONE_BIN)
                nominal = float(sf.nominal[0, 0])
                base = f"{signal}_{panel}_{spec.name}"
                values[f"sf_{base}"] = nominal
                values[f"sf_err_{base}"] = float(sf.up[0, 0] - sf.down[0, 0]) / 2
                values[f"abs_sf_m1_{base}"] = abs(nominal - 1.0)
    return values


def nan_values(names: list[str]) -> dict[str, float]:
    """``names`` -> NaN: the columns of a run that did not measure them."""
    return dict.fromkeys(names, math.nan)
