"""A parametric CMS-like detector: generator particles -> particle-flow candidates.

Works on all particles of a batch of events at once (numpy, no per-particle Python):

* charged particles inside the tracker acceptance are tracked with an efficiency; tracks get a
  smeared pT and smeared impact parameters d0, dz computed from the particle's production vertex
  (b/c hadrons fly, so their decay products are displaced) with d0Err, dzErr;
* tracked electrons and muons are identified with an efficiency, else they are charged hadrons;
* photons, untracked electrons -> ECAL; neutral hadrons, untracked charged hadrons -> HCAL;
  particles sharing a calorimeter cell merge into one cluster whose energy is smeared, scaled and
  thresholded; untracked muons are lost;
* optionally, extra soft particles uniform in eta-phi (the pseudo-data's soft activity).

Candidates use CMS PF conventions: pdgId +-211 (charged hadron), 130 (neutral hadron), 22
(photon), +-11, +-13; charged hadrons carry the pion mass, clusters are massless.
Units: GeV, cm (impact parameters), radians.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import vector

from hepmpm.generate.preset import CalorimeterConfig, DetectorConfig, ResolutionConfig

PION_MASS = 0.13957  # GeV
ELECTRON_MASS = 0.000511
MUON_MASS = 0.105658
MM_PER_CM = 10.0


@dataclass(frozen=True)
class Candidates:
    """Reconstructed particle-flow candidates of a batch, all arrays [n_candidates]."""

    event: np.ndarray  # int64, event index within the batch
    pt: np.ndarray  # GeV
    eta: np.ndarray
    phi: np.ndarray  # in [-pi, pi)
    mass: np.ndarray  # GeV
    charge: np.ndarray  # int32
    pdg_id: np.ndarray  # int32, PF convention
    d0: np.ndarray  # cm, transverse impact parameter w.r.t. the primary vertex
    d0_err: np.ndarray  # cm
    dz: np.ndarray  # cm, longitudinal impact parameter
    dz_err: np.ndarray  # cm

    def __len__(self) -> int:
        return len(self.pt)

    @classmethod
    def concatenate(cls, parts: list[Candidates]) -> Candidates:
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    def take(self, index: np.ndarray) -> Candidates:
        return Candidates(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def sorted_by_event_and_pt(self) -> Candidates:
        """Group by event, hardest first within each event (as PF candidates are stored)."""
        return self.take(np.lexsort((-self.pt, self.event)))

    def momentum(self) -> vector.MomentumNumpy4D:
        return vector.array({"pt": self.pt, "eta": self.eta, "phi": self.phi, "mass": self.mass})


@dataclass(frozen=True)
class GenParticles:
    """Stable visible generator particles of a batch. GeV and mm."""

    event: np.ndarray
    pdg_id: np.ndarray
    charge: np.ndarray
    momentum: vector.MomentumNumpy4D
    vx: np.ndarray  # production vertex, mm
    vy: np.ndarray
    vz: np.ndarray


def _relative_gauss(rng: np.random.Generator, sigma_over_x: np.ndarray) -> np.ndarray:
    """Multiplicative smearing factor, kept positive."""
    return np.clip(1.0 + sigma_over_x * rng.standard_normal(len(sigma_over_x)), 1e-3, None)


def _impact_resolution(res: ResolutionConfig, pt: np.ndarray) -> np.ndarray:
    return np.hypot(res.a, res.b / pt)


def _empty_like_neutral(n: int) -> dict[str, np.ndarray]:
    zeros = np.zeros(n)
    return {"d0": zeros, "d0_err": zeros, "dz": zeros, "dz_err": zeros}


class Detector:
    """Applies one :class:`DetectorConfig` (a preset's detector) to batches of particles."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config

    def reconstruct(
        self, particles: GenParticles, n_events: int, rng: np.random.Generator
    ) -> Candidates:
        """PF candidates of all events, grouped by event and sorted by pT within each."""
        tracker = self.config.tracker
        p = particles.momentum
        abs_pdg = np.abs(particles.pdg_id)
        is_muon, is_electron, is_photon = abs_pdg == 13, abs_pdg == 11, abs_pdg == 22
        charged = particles.charge != 0
        efficiency = np.where(is_muon, tracker.muon_efficiency, tracker.efficiency)
        tracked = (
            charged
            & (np.abs(p.eta) < tracker.eta_max)
            & (p.pt > tracker.pt_min)
            & (rng.random(len(abs_pdg)) < efficiency)
        )
        to_ecal = ~tracked & (is_photon | is_electron)
        to_hcal = ~tracked & ~is_photon & ~is_electron & ~is_muon
        parts = [
            self._tracks(particles, tracked, rng),
            self._calorimeter(particles, to_ecal, self.config.ecal, 22, rng),
            self._calorimeter(particles, to_hcal, self.config.hcal, 130, rng),
        ]
        if self.config.soft_particles.mean_count > 0:
            parts.append(self._soft_particles(n_events, rng))
        return Candidates.concatenate(parts).sorted_by_event_and_pt()

    def _tracks(
        self, particles: GenParticles, tracked: np.ndarray, rng: np.random.Generator
    ) -> Candidates:
        cfg = self.config.tracker
        p = particles.momentum[tracked]
        charge = particles.charge[tracked]
        abs_pdg = np.abs(particles.pdg_id[tracked])
        n = len(charge)

        rel_sigma = np.hypot(cfg.pt_resolution_constant, cfg.pt_resolution_slope * p.pt)
        pt = p.pt * _relative_gauss(rng, rel_sigma)

        muon_id = self.config.muon_id
        electron_id = self.config.electron_id
        is_muon = (abs_pdg == 13) & (pt > muon_id.pt_min) & (rng.random(n) < muon_id.efficiency)
        is_electron = (
            (abs_pdg == 11) & (pt > electron_id.pt_min) & (rng.random(n) < electron_id.efficiency)
        )
        # PF sign convention: e-/mu- have positive pdgId, pi+ positive.
        pdg_id = np.where(is_muon, -13 * charge, np.where(is_electron, -11 * charge, 211 * charge))
        mass = np.where(is_muon, MUON_MASS, np.where(is_electron, ELECTRON_MASS, PION_MASS))

        # Straight-line impact parameters w.r.t. the primary vertex at the origin, in cm.
        vx, vy, vz = particles.vx[tracked], particles.vy[tracked], particles.vz[tracked]
        d0_true = (vy * p.px - vx * p.py) / p.pt / MM_PER_CM
        dz_true = (vz - (vx * p.px + vy * p.py) / p.pt * p.pz / p.pt) / MM_PER_CM
        d0_err = _impact_resolution(cfg.d0_resolution, pt)
        dz_err = _impact_resolution(cfg.dz_resolution, pt)
        return Candidates(
            event=particles.event[tracked],
            pt=pt,
            eta=np.asarray(p.eta),
            phi=np.asarray(p.phi),
            mass=mass,
            charge=charge.astype(np.int32),
            pdg_id=pdg_id.astype(np.int32),
            d0=d0_true + d0_err * rng.standard_normal(n),
            d0_err=d0_err,
            dz=dz_true + dz_err * rng.standard_normal(n),
            dz_err=dz_err,
        )

    @staticmethod
    def _calorimeter(
        particles: GenParticles,
        selected: np.ndarray,
        cfg: CalorimeterConfig,
        pdg_id: int,
        rng: np.random.Generator,
    ) -> Candidates:
        p = particles.momentum[selected]
        event = particles.event[selected]
        inside = np.abs(p.eta) < cfg.eta_max
        p, event = p[inside], event[inside]

        # Particles in one eta-phi cell merge into one cluster (momenta add up).
        n_phi_cells = round(2 * np.pi / cfg.cell_size)
        i_eta = np.floor(p.eta / cfg.cell_size).astype(np.int64)
        i_phi = np.floor((p.phi + np.pi) / (2 * np.pi) * n_phi_cells).astype(np.int64) % n_phi_cells
        n_eta_cells = int(np.ceil(cfg.eta_max / cfg.cell_size)) + 1
        cell = (event * (2 * n_eta_cells) + i_eta + n_eta_cells) * n_phi_cells + i_phi
        cells, cluster_of = np.unique(cell, return_inverse=True)

        def cell_sum(values: np.ndarray) -> np.ndarray:
            return np.bincount(cluster_of, weights=values, minlength=len(cells))

        summed = vector.array(
            {"px": cell_sum(p.px), "py": cell_sum(p.py), "pz": cell_sum(p.pz), "E": cell_sum(p.E)}
        )
        energy = np.asarray(summed.E)
        # A cell whose summed energy is 0 (rare) gets an infinite relative
        # resolution and a NaN or 0 energy, which the threshold below drops: no warning for it.
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_sigma = np.hypot(cfg.stochastic / np.sqrt(energy), cfg.constant)
            energy = energy * _relative_gauss(rng, rel_sigma) * cfg.energy_scale
        keep = energy > cfg.energy_min
        eta = np.asarray(summed.eta)[keep]
        cluster_event = cells // (2 * n_eta_cells * n_phi_cells)  # event is the key's major part
        n = int(keep.sum())
        return Candidates(
            event=cluster_event[keep],
            pt=energy[keep] / np.cosh(eta),
            eta=eta,
            phi=np.asarray(summed.phi)[keep],
            mass=np.zeros(n),
            charge=np.zeros(n, dtype=np.int32),
            pdg_id=np.full(n, pdg_id, dtype=np.int32),
            **_empty_like_neutral(n),
        )

    def _soft_particles(self, n_events: int, rng: np.random.Generator) -> Candidates:
        cfg = self.config.soft_particles
        counts = rng.poisson(cfg.mean_count, n_events)
        n = int(counts.sum())
        kind = rng.random(n)
        charged = kind < cfg.charged_fraction
        photon = ~charged & (kind < cfg.charged_fraction + (1 - cfg.charged_fraction) / 2)
        charge = np.where(charged, rng.choice([-1, 1], n), 0).astype(np.int32)
        pdg_id = np.where(charged, 211 * charge, np.where(photon, 22, 130)).astype(np.int32)
        pt = rng.exponential(cfg.mean_pt, n)
        tracker = self.config.tracker
        # Soft tracks are prompt: their impact parameters are pure resolution.
        d0_err = np.where(charged, _impact_resolution(tracker.d0_resolution, pt), 0.0)
        dz_err = np.where(charged, _impact_resolution(tracker.dz_resolution, pt), 0.0)
        return Candidates(
            event=np.repeat(np.arange(n_events), counts),
            pt=pt,
            eta=rng.uniform(-cfg.eta_max, cfg.eta_max, n),
            phi=rng.uniform(-np.pi, np.pi, n),
            mass=np.where(charged, PION_MASS, 0.0),
            charge=charge,
            pdg_id=pdg_id,
            d0=d0_err * rng.standard_normal(n),
            d0_err=d0_err,
            dz=dz_err * rng.standard_normal(n),
            dz_err=dz_err,
        )
