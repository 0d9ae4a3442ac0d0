"""Branch names of the NanoAOD flavours hepmpm reads and writes (PFNano, central NanoAOD v15),
and the compression CMSSW writes them with.

One place for the conventions, used by the generator's writer and by the coffea processors.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hepmpm.errors import HepmpmError

if TYPE_CHECKING:  # uproot is imported on use: the CLI reads the default without it
    import uproot

#: How CMSSW compresses NanoAOD: ``NANOAODEventContent`` / ``NANOAODSIMEventContent`` in
#: PhysicsTools/NanoAOD/python/NanoAODEDMEventContent_cff.py set LZMA level 9, as the real
#: PFNano file in the tests has. Generated files use it too, so reading them costs what reading
#: CMS files costs.
NANOAOD_COMPRESSION = "lzma:9"
#: ROOT compression algorithms and the Python module uproot needs for each.
COMPRESSION_ALGORITHMS = {"zlib": "zlib", "lzma": "lzma", "lz4": "lz4", "zstd": "zstandard"}


def parse_compression(spec: str) -> uproot.compression.Compression | None:
    """``ALGORITHM:LEVEL`` (e.g. ``lzma:9``, ``zlib:1``) or ``none`` as an uproot compression."""
    if spec == "none":
        return None
    algorithm, _, level = spec.partition(":")
    if algorithm not in COMPRESSION_ALGORITHMS or not level.isdigit() or not 1 <= int(level) <= 9:
        raise HepmpmError(
            f"compression {spec!r}: use ALGORITHM:LEVEL with ALGORITHM one of "
            f"{', '.join(COMPRESSION_ALGORITHMS)} and LEVEL 1-9, or 'none'"
        )
    module = COMPRESSION_ALGORITHMS[algorithm]
    if importlib.util.find_spec(module) is None:
        raise HepmpmError(f"compression {spec!r} needs `pip install {module}`")
    import uproot

    return getattr(uproot, algorithm.upper())(int(level))


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
