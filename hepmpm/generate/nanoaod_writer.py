"""Write generated jets as NanoAOD-style ROOT files (an ``Events`` TTree, not an RNTuple).

Branches: ``run``, ``luminosityBlock``, ``event``; ``FatJet_{pt,eta,phi,mass,msoftdrop,
nConstituents,truthLabel}``; the jet constituents in PFNano naming (``PFCands_*``,
``FatJetPFCands_{jetIdx,pFCandsIdx}``) or central NanoAOD v15 naming (``PFCand_*``,
``FatJetPFCand_{jetIdx,pfCandIdx}``). As in PFNano's jets-only mode, only the constituents of
the written jets are stored. Readable with coffea's ``NanoEventsFactory`` + ``PFNanoAODSchema``.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from hepmpm.atomic import atomic_path
from hepmpm.generate.detector import Candidates
from hepmpm.nanoaod import NAMINGS, NANOAOD_COMPRESSION, parse_compression


def _candidate_columns(candidates: Candidates, index: np.ndarray) -> dict[str, np.ndarray]:
    """All PFNano candidate branches for the candidates at ``index`` (float32/int32)."""
    f32 = np.float32
    return {
        "pt": candidates.pt[index].astype(f32),
        "eta": candidates.eta[index].astype(f32),
        "phi": candidates.phi[index].astype(f32),
        "mass": candidates.mass[index].astype(f32),
        "charge": candidates.charge[index].astype(np.int32),
        "pdgId": candidates.pdg_id[index].astype(np.int32),
        "d0": candidates.d0[index].astype(f32),
        "d0Err": candidates.d0_err[index].astype(f32),
        "dz": candidates.dz[index].astype(f32),
        "dzErr": candidates.dz_err[index].astype(f32),
        "puppiWeight": np.ones(len(index), dtype=f32),
    }


class NanoAODBuilder:
    """Collects written jets batch by batch and writes one ROOT file at the end."""

    def __init__(self, naming: str, run: int, luminosity_block: int) -> None:
        self.naming = NAMINGS[naming]
        self.run = run
        self.luminosity_block = luminosity_block
        self._event_numbers: list[np.ndarray] = []
        self._jets: list[dict[str, np.ndarray]] = []
        self._jets_per_event: list[np.ndarray] = []
        self._candidates: list[dict[str, np.ndarray]] = []
        self._links: list[dict[str, np.ndarray]] = []
        self._candidates_per_event: list[np.ndarray] = []

    @property
    def n_jets(self) -> int:
        return sum(len(j["pt"]) for j in self._jets)

    @property
    def n_events(self) -> int:
        return sum(len(e) for e in self._event_numbers)

    def add(
        self,
        event_numbers: np.ndarray,
        jets: dict[str, np.ndarray],
        jet_event: np.ndarray,
        constituents: ak.Array,
        candidates: Candidates,
    ) -> None:
        """Add jets of one batch.

        ``jets`` holds FatJet columns [n_jets]; ``jet_event`` the batch event of each jet;
        ``constituents`` [n_jets, var] global candidate indices; ``event_numbers`` [n_events]
        the ``event`` branch value of every event of the batch.
        """
        order = np.lexsort((-jets["pt"], jet_event))  # by event, hardest jet first
        jet_event = jet_event[order]
        events, jets_per_event = np.unique(jet_event, return_counts=True)
        constituents = constituents[order]
        n_constituents = ak.to_numpy(ak.num(constituents)).astype(np.int32)

        # Rank of each jet within its event -> FatJetPFCands_jetIdx of its constituents.
        first_jet = np.repeat(np.cumsum(jets_per_event) - jets_per_event, jets_per_event)
        jet_rank = np.arange(len(order)) - first_jet
        candidates_per_event = np.bincount(
            np.repeat(np.searchsorted(events, jet_event), n_constituents),
            minlength=len(events),
        )
        first_candidate = np.repeat(
            np.cumsum(candidates_per_event) - candidates_per_event, candidates_per_event
        )

        self._event_numbers.append(event_numbers[events])
        self._jets_per_event.append(jets_per_event)
        self._jets.append(
            {**{k: v[order] for k, v in jets.items()}, "nConstituents": n_constituents}
        )
        self._candidates.append(
            _candidate_columns(candidates, ak.to_numpy(ak.flatten(constituents)))
        )
        self._candidates_per_event.append(candidates_per_event)
        self._links.append(
            {
                "jetIdx": np.repeat(jet_rank, n_constituents).astype(np.int32),
                self.naming.candidate_index: (
                    np.arange(len(first_candidate)) - first_candidate
                ).astype(np.int32),
            }
        )

    def _columns(self) -> dict[str, np.ndarray | ak.Array]:
        def joined(parts: list[dict[str, np.ndarray]], names: tuple[str, ...] | None = None):
            names = names or tuple(parts[0])
            return {name: np.concatenate([p[name] for p in parts]) for name in names}

        jets_per_event = np.concatenate(self._jets_per_event)
        candidates_per_event = np.concatenate(self._candidates_per_event)
        event = np.concatenate(self._event_numbers).astype(np.uint64)
        return {
            "run": np.full(len(event), self.run, dtype=np.uint32),
            "luminosityBlock": np.full(len(event), self.luminosity_block, dtype=np.uint32),
            "event": event,
            "FatJet": ak.unflatten(ak.zip(joined(self._jets)), jets_per_event),
            self.naming.candidates: ak.unflatten(
                ak.zip(joined(self._candidates, self.naming.candidate_fields)),
                candidates_per_event,
            ),
            self.naming.link: ak.unflatten(ak.zip(joined(self._links)), candidates_per_event),
        }

    def write(self, path: Path, compression: str = NANOAOD_COMPRESSION) -> None:
        """Write the file atomically: to a temporary name in the same folder, then rename.

        ``compression``: ``ALGORITHM:LEVEL`` (:func:`hepmpm.nanoaod.parse_compression`).
        """
        if not self._jets:
            raise ValueError("no jets to write")
        columns = self._columns()
        with (
            atomic_path(path) as tmp,
            uproot.recreate(tmp, compression=parse_compression(compression)) as file,
        ):
            types = {
                name: (col.dtype if isinstance(col, np.ndarray) else col.type)
                for name, col in columns.items()
            }
            file.mktree("Events", types, title="Events").extend(columns)
