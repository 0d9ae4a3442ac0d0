"""Feature definitions against hand-computed values (math module, not vector or numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hepmpm.errors import HepmpmError
from hepmpm.features import (
    MPM7ID,
    PART17,
    JetKinematics,
    ParticleInputs,
    charge_from_pdg_id,
    compute_features,
    get_feature_set,
)

# Two jets: one at phi = -3.12 (so particles across the ±pi boundary), one central.
JETS = JetKinematics(
    pt=np.array([600.0, 450.0]),
    eta=np.array([0.5, -1.0]),
    phi=np.array([-3.12, 0.3]),
    mass=np.array([80.0, 170.0]),
)
# (pt GeV, eta, phi, mass GeV, pdgId, charge, d0 cm, d0err cm, dz cm, dzerr cm)
PARTICLES = [
    (120.0, 0.45, 3.10, 0.1396, 211, 1, 0.02, 0.003, -0.05, 0.004),  # across +pi / -pi
    (40.0, 0.60, -3.05, 0.0, 22, 0, 0.0, 0.0, 0.0, 0.0),
    (15.0, 0.52, 3.13, 0.0005, 11, -1, -0.001, 0.002, 0.01, 0.003),
    (200.0, -1.1, 0.25, 0.4977, 130, 0, 0.0, 0.0, 0.0, 0.0),
    (30.0, -0.9, 0.40, 0.1057, -13, 1, 0.5, 0.01, 2.0, 0.02),
]
COUNTS = np.array([3, 2])


def _inputs() -> ParticleInputs:
    columns = np.array(PARTICLES).T
    return ParticleInputs(*columns)


def _by_hand(particle: tuple, jet: int) -> dict[str, float]:
    pt, eta, phi, mass, pdg, charge, d0, d0err, dz, dzerr = particle
    jpt, jeta, jphi, jmass = (float(a[jet]) for a in (JETS.pt, JETS.eta, JETS.phi, JETS.mass))
    energy = math.sqrt((pt * math.cosh(eta)) ** 2 + mass**2)
    jet_energy = math.sqrt((jpt * math.cosh(jeta)) ** 2 + jmass**2)
    dphi = (phi - jphi + math.pi) % (2 * math.pi) - math.pi
    deta = eta - jeta
    return {
        "part_pt_log": math.log(pt),
        "part_e_log": math.log(energy),
        "part_logptrel": math.log(pt / jpt),
        "part_logerel": math.log(energy / jet_energy),
        "part_deltaR": math.hypot(deta, dphi),
        "part_charge": charge,
        "part_isChargedHadron": float(abs(pdg) == 211),
        "part_isNeutralHadron": float(abs(pdg) == 130),
        "part_isPhoton": float(pdg == 22),
        "part_isElectron": float(abs(pdg) == 11),
        "part_isMuon": float(abs(pdg) == 13),
        "part_d0": math.tanh(d0),
        "part_d0err": d0err,
        "part_dz": math.tanh(dz),
        "part_dzerr": dzerr,
        "part_deta": deta,
        "part_dphi": dphi,
    }


def test_part17_matches_hand_computed_values():
    features = compute_features(PART17, _inputs(), JETS, COUNTS)
    assert features.shape == (5, 17) and features.dtype == np.float32
    jet_of = [0, 0, 0, 1, 1]
    for row, (particle, jet) in enumerate(zip(PARTICLES, jet_of, strict=True)):
        expected = _by_hand(particle, jet)
        got = dict(zip(PART17.names, features[row], strict=True))
        for name in PART17.names:
            assert got[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-6), (row, name)


def test_delta_phi_wraps_across_pi():
    features = compute_features(PART17, _inputs(), JETS, COUNTS)
    dphi = features[:, PART17.names.index("part_dphi")]
    # 3.10 - (-3.12) = 6.22 rad is really -0.063 rad; -3.05 - (-3.12) = +0.07 rad.
    assert dphi[0] == pytest.approx(6.22 - 2 * math.pi, abs=1e-5)
    assert dphi[1] == pytest.approx(0.07, abs=1e-5)
    assert np.all((dphi >= -math.pi) & (dphi < math.pi))


def test_mpm7id_particle_classes_and_raw_values():
    features = compute_features(MPM7ID, _inputs(), JETS, COUNTS)
    assert MPM7ID.names == ("pt", "deta", "dphi", "d0", "d0err", "dz", "dzerr", "id")
    np.testing.assert_allclose(features[:, 0], [p[0] for p in PARTICLES])
    # pi+ -> h+ (3), photon (0), e- (4), K0L -> h0 (2), mu+ (7)
    assert features[:, -1].tolist() == [3, 0, 4, 2, 7]
    np.testing.assert_allclose(features[:, 3], [p[6] for p in PARTICLES], rtol=1e-6)


def test_charge_follows_pdg_convention():
    pdg = np.array([211, -211, 11, -11, 13, -13, 22, 130, 1, 2])
    assert charge_from_pdg_id(pdg).tolist() == [1, -1, -1, 1, -1, 1, 0, 0, 0, 0]


def test_weaver_normalisation_of_part17():
    raw = np.zeros((1, 17), dtype=np.float32)
    raw[0, PART17.names.index("part_pt_log")] = 2.3
    raw[0, PART17.names.index("part_deltaR")] = 10.0  # clipped at +5
    raw[0, PART17.names.index("part_d0err")] = 3.0  # errors clipped to [0, 1]
    raw[0, PART17.names.index("part_charge")] = -1.0  # untouched
    raw[0, PART17.names.index("part_dphi")] = 0.3  # untouched
    out = dict(zip(PART17.names, PART17.normalise(raw)[0], strict=True))
    assert out["part_pt_log"] == pytest.approx((2.3 - 1.7) * 0.7)
    assert out["part_deltaR"] == 5.0
    assert out["part_d0err"] == 1.0
    assert out["part_charge"] == -1.0
    assert out["part_dphi"] == pytest.approx(0.3)
    assert out["part_e_log"] == pytest.approx((0 - 2.0) * 0.7)


def test_normalise_rejects_wrong_width_and_unknown_sets():
    with pytest.raises(HepmpmError, match="17 features"):
        PART17.normalise(np.zeros((2, 8)))
    with pytest.raises(HepmpmError, match="unknown feature set 'part18'"):
        get_feature_set("part18")
