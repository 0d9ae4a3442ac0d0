"""Random but realistic jets for validating exported models: raw features, padded, masked.

The particles are drawn with physical kinematics (positive pT and energy, particles near the
jet axis, the PF candidate types, impact parameters for charged particles only) and turned into
raw features by :func:`hepmpm.features.compute_features`, the code the skim and the tagger use.
Padded slots are zero with mask 0, as in the shards and in :class:`~hepmpm.export.OnnxTagger`.
"""

from __future__ import annotations

import numpy as np

from hepmpm.data.loader import pad_particles
from hepmpm.features import (
    FeatureSet,
    JetKinematics,
    ParticleInputs,
    charge_from_pdg_id,
    compute_features,
)

#: PF candidate types drawn (charged hadrons, neutral hadrons, photons, electrons, muons).
_PDG_IDS = np.array([211, -211, 130, 22, 11, -11, 13, -13])
_PDG_WEIGHTS = np.array([0.3, 0.3, 0.1, 0.26, 0.01, 0.01, 0.01, 0.01])


def random_jets(
    feature_set: FeatureSet,
    n_jets: int,
    max_particles: int,
    seed: int = 0,
    min_particles: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw features float32 [N, P, F] and mask float32 [N, P] (1 = particle) of random jets.

    ``P = max_particles``; the first jet fills all P slots, the others hold ``min_particles``
    to P particles (uniformly).
    """
    rng = np.random.default_rng(seed)
    counts = rng.integers(min(min_particles, max_particles), max_particles + 1, size=n_jets)
    counts[0] = max_particles
    total = int(counts.sum())
    jet = np.repeat(np.arange(n_jets), counts)

    jet_pt = rng.uniform(300.0, 1000.0, n_jets)
    jet_eta = rng.uniform(-2.0, 2.0, n_jets)
    jet_phi = rng.uniform(-np.pi, np.pi, n_jets)
    jet_mass = rng.uniform(10.0, 250.0, n_jets)

    # pT fractions: exponential shares of the jet pT, hardest first within each jet
    share = rng.exponential(1.0, total)
    share_sum = np.bincount(jet, weights=share, minlength=n_jets)
    pt = np.maximum(jet_pt[jet] * share / share_sum[jet], 0.5)
    order = np.lexsort((-pt, jet))
    pt = pt[order]
    pdg = rng.choice(_PDG_IDS, size=total, p=_PDG_WEIGHTS)
    charge = charge_from_pdg_id(pdg).astype(np.float64)
    charged = charge != 0
    d0_err = np.where(charged, rng.uniform(0.001, 0.05, total), 0.0)
    dz_err = np.where(charged, rng.uniform(0.001, 0.05, total), 0.0)
    particles = ParticleInputs(
        pt=pt,
        eta=jet_eta[jet] + rng.normal(0.0, 0.2, total),
        phi=jet_phi[jet] + rng.normal(0.0, 0.2, total),
        mass=np.where(np.abs(pdg) == 211, 0.1396, 0.0),
        pdg_id=pdg,
        charge=charge,
        d0=np.where(charged, rng.normal(0.0, 0.02, total), 0.0),
        d0_err=d0_err,
        dz=np.where(charged, rng.normal(0.0, 0.05, total), 0.0),
        dz_err=dz_err,
    )
    jets = JetKinematics(pt=jet_pt, eta=jet_eta, phi=jet_phi, mass=jet_mass)
    flat = compute_features(feature_set, particles, jets, counts)
    features, mask = pad_particles(flat, np.cumsum(counts) - counts, counts, max_particles)
    return features, mask.astype(np.float32)
