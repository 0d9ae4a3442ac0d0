"""Generator presets: collision energy, Pythia settings, detector response and jet selection.

A preset is a YAML file under ``configs/generate/`` (``sim``, ``data``) or any path. Every number
the generator uses is in the YAML (none hides in code defaults), with its unit, so a domain
shift is a readable diff of two files.
Units: GeV for energies and momenta, cm for impact parameters, radians for angles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from hepmpm.config import StrictModel, load_config, packaged_config_path
from hepmpm.errors import HepmpmError

PRESET_NAMES = ("sim", "data", "shift2")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


class PythiaConfig(StrictModel):
    """Pythia 8 beam, phase space and tune; ``settings`` are extra ``readString`` lines."""

    sqrt_s: Positive  # GeV
    pt_hat_min: Positive  # GeV, hard-process pT window
    pt_hat_max: Positive  # GeV
    # Particles with c*tau above this (mm) are stable, as in CMS generator settings; b and c
    # hadrons (c*tau ~ 0.1-0.5 mm) fly and decay, so their tracks are displaced.
    tau0_max_mm: Positive
    settings: list[str] = Field(default_factory=list)


class ResolutionConfig(StrictModel):
    """sigma = sqrt(a**2 + (b / pT)**2) for impact parameters (a, b in cm, cm*GeV)."""

    a: NonNegative
    b: NonNegative


class TrackerConfig(StrictModel):
    """Charged-particle tracking. pT resolution sigma(pT)/pT = sqrt(c**2 + (s*pT)**2)."""

    eta_max: Positive
    pt_min: NonNegative  # GeV
    efficiency: Fraction  # charged hadrons and electrons
    muon_efficiency: Fraction
    pt_resolution_constant: NonNegative
    pt_resolution_slope: NonNegative  # 1/GeV
    d0_resolution: ResolutionConfig  # cm, cm*GeV
    dz_resolution: ResolutionConfig  # cm, cm*GeV


class CalorimeterConfig(StrictModel):
    """A calorimeter: square eta-phi cells, sigma(E)/E = sqrt((s/sqrt(E))**2 + c**2)."""

    eta_max: Positive
    cell_size: Positive  # cell width in eta and in phi (rad)
    stochastic: NonNegative  # sqrt(GeV)
    constant: NonNegative
    energy_scale: Positive  # multiplies every measured energy
    energy_min: NonNegative  # GeV, clusters below are not reconstructed


class LeptonIdConfig(StrictModel):
    """Identification of a tracked electron or muon; failures are charged hadrons."""

    pt_min: NonNegative  # GeV
    efficiency: Fraction


class SoftParticlesConfig(StrictModel):
    """Extra soft particles per event (noise, pile-up-like), uniform in eta and phi."""

    mean_count: NonNegative  # Poisson mean per event
    mean_pt: Positive  # GeV, exponential spectrum
    eta_max: Positive
    charged_fraction: Fraction  # the rest split evenly into photons and neutral hadrons


class DetectorConfig(StrictModel):
    """A parametric CMS-like detector turning generator particles into PF candidates."""

    tracker: TrackerConfig
    ecal: CalorimeterConfig
    hcal: CalorimeterConfig
    electron_id: LeptonIdConfig
    muon_id: LeptonIdConfig
    soft_particles: SoftParticlesConfig


class JetConfig(StrictModel):
    """Large-radius jets: anti-kT, kinematic window, truth matching and soft drop."""

    radius: Positive
    pt_min: Positive  # GeV
    pt_max: Positive  # GeV
    eta_max: Positive
    match_delta_r: Positive  # every decay product of a signal jet lies this close
    softdrop_beta: NonNegative
    softdrop_zcut: Fraction


class GeneratorPreset(StrictModel):
    """Everything that defines a generated domain (``sim`` or ``data``)."""

    name: str
    description: str = ""
    run_number: Annotated[int, Field(ge=1)]  # written as `run`
    pythia: PythiaConfig
    detector: DetectorConfig
    jets: JetConfig


def load_preset(name_or_path: str, overrides: list[str] | None = None) -> GeneratorPreset:
    """Load a packaged preset by name (``sim``, ``data``) or a preset YAML by path."""
    if name_or_path in PRESET_NAMES:
        path = packaged_config_path("generate", f"{name_or_path}.yaml")
    elif name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.exists():
            raise HepmpmError(f"preset file {path} does not exist")
    else:
        raise HepmpmError(
            f"unknown preset {name_or_path!r}; use one of {', '.join(PRESET_NAMES)} "
            "or the path of a preset .yaml"
        )
    return load_config(GeneratorPreset, path, overrides)
