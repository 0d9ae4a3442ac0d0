"""Working points and data/simulation scale factors of a tagger, written as correctionlib JSON.

``hepmpm calibrate`` reads two ``hepmpm tag`` folders (simulation and data, tagged by the same
model), fixes score thresholds on simulation (:mod:`.working_points`), measures the signal
efficiency and the mistag rate per pT and |η| bin in both (:mod:`.efficiency`, Clopper-Pearson
intervals), divides them into scale factors with propagated uncertainties
(:mod:`.scale_factors`) and writes a ``correctionlib.schemav2`` file (:mod:`.correction_json`),
a ``calibration.json`` summary and plots (:mod:`.plots`); :mod:`.run` is the whole step.

The modules import on first use: an analysis that only reads the JSON needs correctionlib.
"""

from __future__ import annotations

from hepmpm.lazy import lazy_attributes

_WHERE = {
    "CalibrationRequest": "run",
    "run_calibration": "run",
    "read_scale_factors": "run",
    "WorkingPoint": "working_points",
    "WorkingPointSpec": "working_points",
    "parse_working_points": "working_points",
    "find_threshold": "working_points",
    "BinnedEfficiency": "efficiency",
    "binned_efficiency": "efficiency",
    "ScaleFactors": "scale_factors",
    "scale_factors": "scale_factors",
    "read_tagged": "inputs",
}

__all__ = sorted(_WHERE)

__getattr__ = lazy_attributes("hepmpm.calibration", _WHERE)
