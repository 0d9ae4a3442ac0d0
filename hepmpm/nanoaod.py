"""Branch names of the NanoAOD flavours hepmpm reads and writes (PFNano, central NanoAOD v15).

One place for the conventions, used by the generator's writer and by the coffea processors.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Naming:
    """Collection and branch names of one NanoAOD flavour."""

    candidates: str
    link: str
    candidate_index: str
    candidate_fields: tuple[str, ...]


NAMINGS: dict[str, Naming] = {
    "pfnano": Naming(
        candidates="PFCands",
        link="FatJetPFCands",
        candidate_index="pFCandsIdx",
        candidate_fields=(
            "pt",
            "eta",
            "phi",
            "mass",
            "charge",
            "pdgId",
            "d0",
            "d0Err",
            "dz",
            "dzErr",
            "puppiWeight",
        ),
    ),
    # Central NanoAOD v15: Puppi-weighted pt/mass (weight 1 here), no impact parameters.
    "nanoaod-v15": Naming(
        candidates="PFCand",
        link="FatJetPFCand",
        candidate_index="pfCandIdx",
        candidate_fields=("pt", "eta", "phi", "mass", "pdgId"),
    ),
}
