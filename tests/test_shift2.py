"""The `shift2` generator preset: shifted from `sim` exactly where its header says, in other
directions than `data`, and its detector acts so."""

from __future__ import annotations

import numpy as np
import pytest
from test_detector import PERFECT, _particles

from hepmpm.generate.detector import PION_MASS, Detector
from hepmpm.generate.preset import PRESET_NAMES, load_preset


def _differences(a: dict, b: dict, prefix: str = "") -> dict[str, tuple]:
    """Dotted keys whose values differ between two nested mappings: key -> (a's, b's)."""
    found = {}
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            found |= _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            found[f"{prefix}{key}"] = (x, y)
    return found


def test_shift2_differs_from_sim_where_it_says():
    assert "shift2" in PRESET_NAMES
    sim, data, shift2 = (load_preset(n).model_dump() for n in ("sim", "data", "shift2"))
    changed = _differences(sim, shift2)
    assert set(changed) == {
        "name", "description", "run_number", "pythia.settings",
        "detector.tracker.pt_min", "detector.tracker.efficiency",
        "detector.tracker.pt_resolution_constant", "detector.tracker.d0_resolution.a",
        "detector.tracker.d0_resolution.b", "detector.tracker.dz_resolution.a",
        "detector.ecal.energy_scale",
        "detector.ecal.constant", "detector.hcal.energy_scale", "detector.hcal.cell_size",
        "detector.electron_id.efficiency", "detector.muon_id.efficiency",
    }  # fmt: skip
    settings = set(shift2["pythia"]["settings"]) - set(sim["pythia"]["settings"])
    assert settings == {
        "TimeShower:alphaSvalue = 0.1200", "StringPT:sigma = 0.45",
        "StringFlav:probStoUD = 0.30", "StringZ:aLund = 0.80",
    }  # fmt: skip
    # Other directions than `data`: its scales and FSR move the other way, and it shares no
    # changed setting with `data` at the same value.
    assert shift2["detector"]["ecal"]["energy_scale"] > 1 > data["detector"]["ecal"]["energy_scale"]
    assert shift2["detector"]["hcal"]["energy_scale"] > 1 > data["detector"]["hcal"]["energy_scale"]
    to_data = _differences(sim, data)
    assert not {k for k in set(changed) & set(to_data) if changed[k][1] == to_data[k][1]}
    assert not set(shift2["pythia"]["settings"]) - set(sim["pythia"]["settings"]) & set(
        data["pythia"]["settings"]
    )


def test_shift2_detector_response():
    """With resolutions off, the same particles: photon and neutral-hadron energies 5 % and 12 %
    high, and a 0.7 GeV track lost (1 GeV threshold) that `sim` keeps."""
    rows = [
        (0, 22, 0, 40.0, 0.1, 0.1, 0.0),
        (0, 130, 0, 60.0, -0.8, 1.5, 0.0),
        (0, 211, 1, 0.7, 0.5, -1.0, PION_MASS),
    ]
    found = {}
    for name in ("sim", "shift2"):
        detector = Detector(load_preset(name, PERFECT).detector)
        cands = detector.reconstruct(_particles(rows), 1, np.random.default_rng(0))
        found[name] = {int(p): float(pt) for p, pt in zip(cands.pdg_id, cands.pt, strict=True)}
    assert found["shift2"][22] == pytest.approx(1.05 * found["sim"][22])
    assert found["shift2"][130] == pytest.approx(1.12 * found["sim"][130])
    assert 211 in found["sim"] and 211 not in found["shift2"]
