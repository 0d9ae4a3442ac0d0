"""The parametric detector against hand-computed values, with resolutions switched off."""

import numpy as np
import pytest
import vector

from hepmpm.generate.detector import PION_MASS, Detector, GenParticles
from hepmpm.generate.preset import load_preset

PERFECT = [
    "detector.tracker.efficiency=1.0",
    "detector.tracker.muon_efficiency=1.0",
    "detector.tracker.pt_resolution_constant=0.0",
    "detector.tracker.pt_resolution_slope=0.0",
    "detector.tracker.d0_resolution={a: 0.0, b: 0.0}",
    "detector.tracker.dz_resolution={a: 0.0, b: 0.0}",
    "detector.ecal.stochastic=0.0",
    "detector.ecal.constant=0.0",
    "detector.hcal.stochastic=0.0",
    "detector.hcal.constant=0.0",
    "detector.electron_id.efficiency=1.0",
    "detector.muon_id.efficiency=1.0",
]


def _particles(rows, vertices=None):
    """rows: (event, pdgId, charge, pt, eta, phi, mass); vertices in mm."""
    rows = np.array(rows, dtype=float)
    n = len(rows)
    vertices = np.zeros((n, 3)) if vertices is None else np.asarray(vertices, dtype=float)
    momentum = vector.array(
        {"pt": rows[:, 3], "eta": rows[:, 4], "phi": rows[:, 5], "mass": rows[:, 6]}
    )
    return GenParticles(
        event=rows[:, 0].astype(np.int64),
        pdg_id=rows[:, 1].astype(np.int32),
        charge=rows[:, 2].astype(np.int32),
        momentum=momentum,
        vx=vertices[:, 0],
        vy=vertices[:, 1],
        vz=vertices[:, 2],
    )


def _reconstruct(particles, n_events=1, overrides=()):
    detector = Detector(load_preset("sim", [*PERFECT, *overrides]).detector)
    return detector.reconstruct(particles, n_events, np.random.default_rng(0))


def test_displaced_track_impact_parameters():
    # pi+ with px = 0, py = 10, pz = 10 GeV from a vertex at (1, 0, 2) mm:
    # d0 = (vy px - vx py) / pT = -1 mm = -0.1 cm; dz = vz - (vx px + vy py)/pT * pz/pT = 0.2 cm
    eta = np.arcsinh(1.0)
    cands = _reconstruct(
        _particles([(0, 211, 1, 10.0, eta, np.pi / 2, PION_MASS)], [(1.0, 0.0, 2.0)])
    )
    assert len(cands) == 1
    assert cands.pdg_id[0] == 211 and cands.charge[0] == 1
    assert cands.d0[0] == pytest.approx(-0.1)
    assert cands.dz[0] == pytest.approx(0.2)
    assert cands.pt[0] == pytest.approx(10.0)
    assert cands.eta[0] == pytest.approx(0.881374, abs=1e-6)
    assert cands.mass[0] == pytest.approx(PION_MASS)


def test_impact_parameter_resolution_is_reported():
    cands = _reconstruct(
        _particles([(0, -211, -1, 4.0, 0.3, 0.2, PION_MASS)]),
        overrides=["detector.tracker.d0_resolution={a: 0.001, b: 0.01}"],
    )
    assert cands.d0_err[0] == pytest.approx(np.hypot(0.001, 0.01 / 4.0))


def test_photons_in_one_cell_merge_and_other_cells_do_not():
    cands = _reconstruct(
        _particles(
            [
                (0, 22, 0, 5.0, 0.490, 0.9950, 0.0),
                (0, 22, 0, 3.0, 0.495, 0.9995, 0.0),  # same ECAL crystal as the first
                (0, 22, 0, 2.0, 0.600, 0.9950, 0.0),  # six crystals away in eta
            ]
        )
    )
    photons = cands.pdg_id == 22
    assert photons.sum() == 2
    e = cands.pt * np.cosh(cands.eta)
    expected = 5.0 * np.cosh(0.490) + 3.0 * np.cosh(0.495)
    assert np.sort(e[photons])[-1] == pytest.approx(expected, rel=1e-9)


def test_particle_types_follow_pf_conventions():
    rows = [
        (0, 11, -1, 20.0, 0.1, 0.0, 0.000511),  # e-: tracked, identified -> +11
        (0, -13, 1, 30.0, -0.5, 1.0, 0.105658),  # mu+: -> -13
        (0, 2112, 0, 20.0, 1.0, -2.0, 0.939),  # neutron -> HCAL 130
        (0, 211, 1, 15.0, 2.7, 2.5, PION_MASS),  # outside the tracker -> HCAL 130
        (0, 13, -1, 15.0, 2.8, -1.0, 0.105658),  # muon outside the tracker -> lost
    ]
    cands = _reconstruct(_particles(rows))
    assert sorted(cands.pdg_id.tolist()) == [-13, 11, 130, 130]
    neutral = cands.pdg_id == 130
    assert np.all(cands.charge[neutral] == 0) and np.all(cands.d0_err[neutral] == 0)
    assert np.all(cands.mass[neutral] == 0)


def test_energy_scale_threshold_and_event_grouping():
    rows = [(1, 2112, 0, 30.0, 0.0, 0.0, 0.0), (0, 22, 0, 0.3, 0.0, 0.0, 0.0)]
    cands = _reconstruct(_particles(rows), n_events=2, overrides=["detector.hcal.energy_scale=0.9"])
    assert cands.event.tolist() == [1]  # the 0.3 GeV photon is below the ECAL threshold
    assert cands.pt[0] == pytest.approx(27.0)


def test_soft_particles_are_added_per_event():
    cands = _reconstruct(
        _particles([(0, 22, 0, 50.0, 0.0, 0.0, 0.0)]),
        n_events=200,
        overrides=["detector.soft_particles.mean_count=30"],
    )
    per_event = np.bincount(cands.event, minlength=200)
    assert per_event.mean() == pytest.approx(30, rel=0.1)
    assert np.all(np.diff(cands.event) >= 0)  # grouped by event
