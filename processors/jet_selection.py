"""Which jets become model inputs, and their raw features: one code path for skim and tagger.

Jets failing a requirement are skipped and counted under the first reason they fail, in the
order of :data:`SKIP_REASONS`; jets with more than ``max_particles`` constituents keep their
hardest ``max_particles`` and are counted as truncated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hepmpm.processors.jet_constituents import JetConstituents
from pydantic import Field

from hepmpm.config import StrictModel
from hepmpm.features import FeatureSet, JetKinematics, ParticleInputs, compute_features

#: Why a jet is not used, in the order the requirements are checked.
SKIP_REASONS: tuple[str, ...] = (
    "pt",  # jet pT below min_pt
    "eta",  # |eta| above max_eta
    "no_constituents",  # no stored constituent (e.g. forward jets in real PFNano)
    "constituent_mismatch",  # stored constituents differ from FatJet_nConstituents
    "few_constituents",  # fewer than min_constituents
    "non_finite",  # NaN/inf in the jet's kinematics or in a feature of its particles
)


class JetSelection(StrictModel):
    """Jet requirements; momenta in GeV."""

    min_pt: float = Field(200.0, ge=0, description="minimum FatJet pT / GeV")
    max_eta: float = Field(2.4, gt=0, description="maximum FatJet |eta|")
    min_constituents: int = Field(2, ge=1, description="minimum stored constituents")
    max_particles: int = Field(128, ge=1, description="keep at most this many hardest particles")


@dataclass(frozen=True)
class SelectedJets:
    """The selected jets' positions in :class:`JetConstituents` [n_selected] and features.

    ``features`` [n_particles, F] float32 lie jet after jet, ``counts`` [n_selected] per jet.
    """

    index: np.ndarray
    counts: np.ndarray
    features: np.ndarray
    skipped: dict[str, int]
    truncated: int

    def __len__(self) -> int:
        return len(self.index)


def _take_jets(constituents: JetConstituents, jet: np.ndarray, kept_particles: np.ndarray):
    """Particles and jet kinematics of the jets ``jet``, restricted to ``kept_particles``."""
    p = constituents.particles
    # Copy only when particles are dropped: when every jet passes whole, use the arrays as they are.
    if not kept_particles.all():
        p = ParticleInputs(**{k: getattr(p, k)[kept_particles] for k in p.__dataclass_fields__})
    j = constituents.jets
    jets = JetKinematics(pt=j.pt[jet], eta=j.eta[jet], phi=j.phi[jet], mass=j.mass[jet])
    return p, jets


def _particle_mask(counts: np.ndarray, keep_jet: np.ndarray, max_particles: int) -> np.ndarray:
    """[n_particles] True for the first ``max_particles`` particles of each kept jet."""
    first = np.repeat(np.cumsum(counts) - counts, counts)
    position = np.arange(counts.sum()) - first
    return np.repeat(keep_jet, counts) & (position < max_particles)


def select_jets(
    constituents: JetConstituents, selection: JetSelection, feature_set: FeatureSet
) -> SelectedJets:
    """Apply ``selection`` and compute the raw features of the kept jets' particles."""
    c = constituents
    failed = [
        c.jets.pt < selection.min_pt,
        np.abs(c.jets.eta) > selection.max_eta,
        c.counts == 0,
        (c.counts != c.n_constituents)
        if c.n_constituents is not None
        else np.zeros_like(c.counts, bool),
        c.counts < selection.min_constituents,
    ]
    # NaN compares False everywhere above; the feature check below catches it.
    keep = np.ones(c.n_jets, dtype=bool)
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    for reason, fails in zip(SKIP_REASONS, failed, strict=False):
        skipped[reason] = int((keep & fails).sum())
        keep &= ~fails

    kept_particles = _particle_mask(c.counts, keep, selection.max_particles)
    index = np.flatnonzero(keep)
    counts = np.minimum(c.counts[index], selection.max_particles)
    particles, jets = _take_jets(c, index, kept_particles)
    features = compute_features(feature_set, particles, jets, counts)

    # Drop jets with any non-finite feature (NaN pT, pT <= 0 under a log, inf, ...).
    finite_particle = np.isfinite(features).all(axis=1)
    bad_particles = np.zeros(len(counts), dtype=np.int64)
    if len(counts):  # counts >= min_constituents >= 1, so no segment is empty
        bad_particles = np.add.reduceat(
            (~finite_particle).astype(np.int64), np.cumsum(counts) - counts
        )
    finite_jet = np.isfinite([jets.pt, jets.eta, jets.phi, jets.mass]).all(axis=0)
    good = finite_jet & (bad_particles == 0)
    skipped["non_finite"] = int((~good).sum())
    if not good.all():
        features = features[np.repeat(good, counts)]
        index, counts = index[good], counts[good]
    return SelectedJets(
        index=index,
        counts=counts,
        features=features,
        skipped=skipped,
        truncated=int((c.counts[index] > selection.max_particles).sum()),
    )
