"""THE particle-feature definitions, shared by the skim (shards) and the tagger (ONNX inputs).

A :class:`FeatureSet` is an ordered list of :class:`Feature`. Each feature says how its **raw**
value is computed from a jet's particles (units: GeV for momenta and energies, cm for impact
parameters, radians for angles) and how the model normalises it (:class:`Transform`). Shards and
ONNX inputs carry raw values; the normalisation is applied inside the model, so one shard serves
any model and the exported graph takes what an analysis computes.

Two sets:

- ``part17``: the Particle Transformer / JetClass features, names and order as in weaver-core's
  ``JetClass_full.yaml``, with weaver's ``clip((x - sub) * mul, -5, 5)`` normalisations.
- ``mpm7id``: MPMv2's seven continuous features (pT, Δη, Δφ, d0, d0err, dz, dzerr) plus an
  8-class particle id (γ, h−, h0, h+, e−, e+, μ−, μ+) stored as a float category index.

Kinematics go through ``vector`` (E from pt/eta/phi/mass, Δφ wrapped into [−π, π), ΔR).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import vector

from hepmpm.errors import HepmpmError

#: Particle-id classes of ``mpm7id`` (MPMv2 order); the stored value is the index.
PARTICLE_ID_CLASSES: tuple[str, ...] = ("photon", "h-", "h0", "h+", "e-", "e+", "mu-", "mu+")

#: Inputs read from NanoAOD that a file may lack; a missing one is replaced by zeros (the value
#: ParT/JetClass uses for neutral particles) and the replacement is recorded in the manifest.
IMPACT_PARAMETER_INPUTS: tuple[str, ...] = ("d0", "d0_err", "dz", "dz_err")


@dataclass(frozen=True)
class Transform:
    """Normalisation applied by the model to a raw feature value ``x``.

    ``y = clip((f(x * pre) - sub) * mul, lower, upper)`` where ``f`` is ``function`` (``None``,
    ``"log"`` or ``"asinh"``). With ``mul=None`` the feature is passed through unchanged (weaver's
    ``null``: flags, charges, categories).
    """

    sub: float = 0.0
    mul: float | None = 1.0
    lower: float = -5.0
    upper: float = 5.0
    function: str | None = None
    pre: float = 1.0

    @property
    def is_identity(self) -> bool:
        return self.mul is None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalise raw values (numpy; the model carries a torch twin built from these fields)."""
        if self.is_identity:
            return x
        x = x * self.pre
        if self.function == "log":
            x = np.log(x)
        elif self.function == "asinh":
            x = np.arcsinh(x)
        return np.clip((x - self.sub) * self.mul, self.lower, self.upper)


IDENTITY = Transform(mul=None)


@dataclass(frozen=True)
class Feature:
    """One per-particle feature: its name, what it is (with units), and its normalisation."""

    name: str
    description: str
    compute: Callable[[ParticleKinematics], np.ndarray] = field(repr=False, compare=False)
    transform: Transform = IDENTITY
    #: Number of classes for a categorical feature (stored as a float index), else ``None``.
    categories: int | None = None


@dataclass(frozen=True)
class FeatureSet:
    """An ordered, named list of features; the order is the column order of shards and ONNX."""

    name: str
    features: tuple[Feature, ...]
    description: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def n_features(self) -> int:
        return len(self.features)

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Apply every feature's transform to ``raw`` [..., F] (numpy reference implementation)."""
        if raw.shape[-1] != self.n_features:
            raise HepmpmError(
                f"feature set {self.name!r} has {self.n_features} features, "
                f"got arrays with {raw.shape[-1]}"
            )
        columns = [f.transform.apply(raw[..., i]) for i, f in enumerate(self.features)]
        return np.stack(columns, axis=-1).astype(np.float32)


@dataclass(frozen=True)
class ParticleInputs:
    """Flat columns of the particles of many jets, jet after jet [n_particles].

    Momenta in GeV, angles in radians, impact parameters in cm. ``charge`` in units of e.
    """

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray
    pdg_id: np.ndarray
    charge: np.ndarray
    d0: np.ndarray
    d0_err: np.ndarray
    dz: np.ndarray
    dz_err: np.ndarray


@dataclass(frozen=True)
class JetKinematics:
    """Jet four-momenta [n_jets]: pt, mass in GeV; eta; phi in radians."""

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray


class ParticleKinematics:
    """Per-particle quantities the features are made of, each computed once ([n_particles])."""

    def __init__(self, particles: ParticleInputs, jets: JetKinematics, counts: np.ndarray):
        self.particles = particles
        self.jet_of_particle = np.repeat(np.arange(len(counts)), counts)
        self._jets = jets

    @cached_property
    def momentum(self) -> vector.MomentumNumpy4D:
        p = self.particles
        return vector.array({"pt": p.pt, "eta": p.eta, "phi": p.phi, "mass": p.mass})

    @cached_property
    def jet_momentum(self) -> vector.MomentumNumpy4D:
        """The particle's jet, repeated for each of its particles."""
        j, i = self._jets, self.jet_of_particle
        return vector.array({"pt": j.pt[i], "eta": j.eta[i], "phi": j.phi[i], "mass": j.mass[i]})

    @cached_property
    def energy(self) -> np.ndarray:
        return np.asarray(self.momentum.E)

    @cached_property
    def delta_eta(self) -> np.ndarray:
        """η(particle) − η(jet)."""
        return np.asarray(self.momentum.deltaeta(self.jet_momentum))

    @cached_property
    def delta_phi(self) -> np.ndarray:
        """φ(particle) − φ(jet) wrapped into [−π, π)."""
        return np.asarray(self.momentum.deltaphi(self.jet_momentum))

    @cached_property
    def delta_r(self) -> np.ndarray:
        """sqrt(Δη² + Δφ²), from the Δη and Δφ above (vector's deltaR would compute both again)."""
        return np.hypot(self.delta_eta, self.delta_phi)

    @cached_property
    def abs_pdg_id(self) -> np.ndarray:
        return np.abs(self.particles.pdg_id)

    def is_pdg(self, *codes: int) -> np.ndarray:
        # a comparison per code: several times faster than np.isin for one or two codes
        found = self.abs_pdg_id == codes[0]
        for code in codes[1:]:
            found |= self.abs_pdg_id == code
        return found.astype(np.float32)

    @cached_property
    def particle_id(self) -> np.ndarray:
        """MPMv2's 8 classes (:data:`PARTICLE_ID_CLASSES`) from |pdgId| and charge."""
        pid, charge = self.abs_pdg_id, self.particles.charge
        negative = charge < 0
        return np.select(
            [pid == 11, pid == 13, charge != 0],
            [4 + ~negative, 6 + ~negative, 1 + 2 * ~negative],
            default=np.where((pid == 22) | (pid == 2), 0, 2),  # γ (incl. HF EM) else h0
        ).astype(np.float32)


# PF candidate codes: 211 charged hadron, 130 neutral hadron, 22 photon, 11 electron, 13 muon;
# 1 and 2 are HF hadronic and HF electromagnetic deposits.
CHARGED_HADRON, NEUTRAL_HADRON, PHOTON = (211,), (130, 1), (22, 2)

PART17 = FeatureSet(
    name="part17",
    description="Particle Transformer / JetClass: 17 features (weaver-core JetClass_full.yaml)",
    features=(
        Feature("part_pt_log", "log(pT / GeV)", lambda k: np.log(k.particles.pt),
                Transform(sub=1.7, mul=0.7)),
        Feature("part_e_log", "log(E / GeV)", lambda k: np.log(k.energy),
                Transform(sub=2.0, mul=0.7)),
        Feature("part_logptrel", "log(pT / pT_jet)",
                lambda k: np.log(k.particles.pt / k.jet_momentum.pt),
                Transform(sub=-4.7, mul=0.7)),
        Feature("part_logerel", "log(E / E_jet)",
                lambda k: np.log(k.energy / np.asarray(k.jet_momentum.E)),
                Transform(sub=-4.7, mul=0.7)),
        Feature("part_deltaR", "ΔR(particle, jet axis)", lambda k: k.delta_r,
                Transform(sub=0.2, mul=4.0)),
        Feature("part_charge", "electric charge / e", lambda k: k.particles.charge),
        Feature("part_isChargedHadron", "|pdgId| = 211", lambda k: k.is_pdg(*CHARGED_HADRON)),
        Feature("part_isNeutralHadron", "|pdgId| = 130 (or HF hadronic, 1)",
                lambda k: k.is_pdg(*NEUTRAL_HADRON)),
        Feature("part_isPhoton", "pdgId = 22 (or HF EM, 2)", lambda k: k.is_pdg(*PHOTON)),
        Feature("part_isElectron", "|pdgId| = 11", lambda k: k.is_pdg(11)),
        Feature("part_isMuon", "|pdgId| = 13", lambda k: k.is_pdg(13)),
        Feature("part_d0", "tanh(d0 / cm)", lambda k: np.tanh(k.particles.d0)),
        Feature("part_d0err", "σ(d0) / cm", lambda k: k.particles.d0_err,
                Transform(sub=0.0, mul=1.0, lower=0.0, upper=1.0)),
        Feature("part_dz", "tanh(dz / cm)", lambda k: np.tanh(k.particles.dz)),
        Feature("part_dzerr", "σ(dz) / cm", lambda k: k.particles.dz_err,
                Transform(sub=0.0, mul=1.0, lower=0.0, upper=1.0)),
        Feature("part_deta", "η − η_jet", lambda k: k.delta_eta),
        Feature("part_dphi", "φ − φ_jet wrapped into [−π, π)", lambda k: k.delta_phi),
    ),
)  # fmt: skip

MPM7ID = FeatureSet(
    name="mpm7id",
    description="MPMv2: pT, Δη, Δφ, d0, d0err, dz, dzerr + 8-class particle id",
    features=(
        Feature("pt", "pT / GeV (normalised as log pT)", lambda k: k.particles.pt,
                Transform(function="log", sub=1.0, mul=0.8)),
        Feature("deta", "η − η_jet", lambda k: k.delta_eta, Transform(mul=5.0)),
        Feature("dphi", "φ − φ_jet wrapped into [−π, π)", lambda k: k.delta_phi,
                Transform(mul=5.0)),
        # Impact parameters of tens of µm to cm: asinh in units of 100 µm keeps both ends.
        Feature("d0", "d0 / cm", lambda k: k.particles.d0, Transform(function="asinh", pre=100.0)),
        Feature("d0err", "σ(d0) / cm", lambda k: k.particles.d0_err,
                Transform(function="asinh", pre=100.0)),
        Feature("dz", "dz / cm", lambda k: k.particles.dz, Transform(function="asinh", pre=100.0)),
        Feature("dzerr", "σ(dz) / cm", lambda k: k.particles.dz_err,
                Transform(function="asinh", pre=100.0)),
        Feature("id", "particle class: " + ", ".join(PARTICLE_ID_CLASSES),
                lambda k: k.particle_id, categories=len(PARTICLE_ID_CLASSES)),
    ),
)  # fmt: skip

FEATURE_SETS: dict[str, FeatureSet] = {fs.name: fs for fs in (PART17, MPM7ID)}


def get_feature_set(name: str) -> FeatureSet:
    """The feature set called ``name``; a clear error listing the known ones otherwise."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise HepmpmError(
            f"unknown feature set {name!r}; known: {', '.join(FEATURE_SETS)}"
        ) from None


def charge_from_pdg_id(pdg_id: np.ndarray) -> np.ndarray:
    """Electric charge of PF candidates from their pdgId (central NanoAOD stores no charge).

    PDG convention: π+ is +211, e− is +11, μ− is +13; neutral codes give 0.
    """
    sign = np.sign(pdg_id)
    absolute = np.abs(pdg_id)
    return np.select([absolute == 211, np.isin(absolute, (11, 13))], [sign, -sign], 0).astype(
        np.float32
    )


def compute_features(
    feature_set: FeatureSet,
    particles: ParticleInputs,
    jets: JetKinematics,
    counts: np.ndarray,
) -> np.ndarray:
    """Raw features [n_particles, F] float32 of jets whose particles lie jet after jet.

    ``counts`` [n_jets] is the number of particles of each jet, in the order of ``particles``.
    The array is feature-major in memory (the transpose of a C-contiguous [F, n_particles]):
    building it is one copy per feature, and per-feature reductions (statistics) run over
    contiguous memory; ``np.ascontiguousarray`` gives particle-major rows where needed.
    """
    kinematics = ParticleKinematics(particles, jets, np.asarray(counts))
    columns = [np.asarray(f.compute(kinematics), dtype=np.float32) for f in feature_set.features]
    return np.stack(columns).T


def feature_set_record(feature_set: FeatureSet) -> dict[str, Any]:
    """The feature set as JSON: name, ordered feature names, each feature's normalisation.

    Saved beside every tokenizer, backbone and tagger, so that loading one with other data (or
    after the definition changed) is an error instead of silently wrong inputs.
    """
    return {
        "name": feature_set.name,
        "features": list(feature_set.names),
        "normalisation": {
            f.name: {
                "function": f.transform.function,
                "pre": f.transform.pre,
                "sub": f.transform.sub,
                "mul": f.transform.mul,
                "lower": f.transform.lower,
                "upper": f.transform.upper,
                "categories": f.categories,
            }
            for f in feature_set.features
        },
    }


def feature_set_difference(recorded: dict[str, Any], actual: dict[str, Any]) -> str | None:
    """What differs between two :func:`feature_set_record` s (``None``: nothing)."""
    if recorded["features"] != actual["features"]:
        return f"features {recorded['features']} vs {actual['features']}"
    for name in recorded["features"]:
        if recorded["normalisation"].get(name) != actual["normalisation"].get(name):
            return (
                f"normalisation of {name!r}: {recorded['normalisation'].get(name)} vs "
                f"{actual['normalisation'].get(name)}"
            )
    return None


def check_recorded_feature_set(
    recorded: dict[str, Any], what: str, feature_set: FeatureSet | None = None
) -> FeatureSet:
    """The feature set a saved model ``recorded`` (a :func:`feature_set_record`), checked.

    It must match this hepmpm version's definition of that name and, when given, the
    ``feature_set`` of the data it is about to see. ``what`` starts the error message, e.g.
    ``"tokenizer DIR was fitted on"``.
    """
    if feature_set is not None and feature_set.name != recorded["name"]:
        raise HepmpmError(
            f"{what} feature set {recorded['name']!r}, the data is {feature_set.name!r}; "
            f"use one made from a {feature_set.name} skim"
        )
    known = get_feature_set(recorded["name"])
    difference = feature_set_difference(recorded, feature_set_record(known))
    if difference:
        raise HepmpmError(
            f"{what} feature set {recorded['name']!r} as defined then, which differs from this "
            f"hepmpm version's: {difference}"
        )
    if feature_set is not None:
        difference = feature_set_difference(recorded, feature_set_record(feature_set))
        if difference:
            raise HepmpmError(
                f"{what} feature set {recorded['name']!r}; the data's {feature_set.name!r} "
                f"differs: {difference}"
            )
    return known
