"""Jet clustering of whole batches with FastJet's awkward interface (one C++ call per batch).

Large-radius jets are anti-kT on the PF candidates; the soft-drop mass comes from reclustering
each jet's constituents with Cambridge/Aachen and mMDT grooming (beta = 0, z_cut = 0.1 by
default), as CMS's ``FatJet_msoftdrop``.
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import fastjet
import numpy as np
import vector

from hepmpm.generate.detector import Candidates
from hepmpm.generate.preset import JetConfig

vector.register_awkward()

# C/A reclustering radius for soft drop: large, so every constituent ends up in one tree.
_RECLUSTER_RADIUS = 10.0


@dataclass(frozen=True)
class Jets:
    """Jets of a batch, one row per jet; ``constituents`` index the batch's candidates."""

    event: np.ndarray  # [n_jets] event index within the batch
    momentum: vector.MomentumNumpy4D  # [n_jets] GeV
    constituents: ak.Array  # [n_jets, var] int64, global candidate indices, hardest first

    def __len__(self) -> int:
        return len(self.event)


def _as_events(momentum: vector.MomentumNumpy4D, counts: np.ndarray) -> ak.Array:
    flat = ak.zip(
        {
            "px": np.asarray(momentum.px),
            "py": np.asarray(momentum.py),
            "pz": np.asarray(momentum.pz),
            "E": np.asarray(momentum.E),
        },
        with_name="Momentum4D",
    )
    return ak.unflatten(flat, counts)


def cluster_jets(candidates: Candidates, n_events: int, config: JetConfig) -> Jets:
    """Anti-kT jets with pT > ``config.pt_min`` in every event of the batch."""
    counts = np.bincount(candidates.event, minlength=n_events)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    events = _as_events(candidates.momentum(), counts)
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.radius)
    sequence = fastjet.ClusterSequence(events, definition)
    jets = sequence.inclusive_jets(config.pt_min)
    local_index = sequence.constituent_index(config.pt_min)

    jet_event = np.repeat(np.arange(n_events), ak.to_numpy(ak.num(jets, axis=1)))
    flat_jets = ak.flatten(jets, axis=1)
    momentum = vector.array(
        {name: ak.to_numpy(flat_jets[name]).astype(np.float64) for name in ("px", "py", "pz", "E")}
    )
    # Global candidate indices; candidates are pT-ordered within an event, so sorting the
    # indices orders each jet's constituents hardest first.
    constituents = ak.sort(ak.flatten(local_index, axis=1) + offsets[jet_event], axis=1)
    return Jets(
        event=jet_event, momentum=momentum, constituents=ak.values_astype(constituents, np.int64)
    )


def softdrop_mass(candidates: Candidates, constituents: ak.Array, config: JetConfig) -> np.ndarray:
    """[n_jets] soft-drop (mMDT) mass in GeV of the jets given by their constituent indices."""
    if len(constituents) == 0:
        return np.zeros(0)
    flat = ak.to_numpy(ak.flatten(constituents))
    momentum = candidates.momentum()[flat]
    jets = _as_events(momentum, ak.to_numpy(ak.num(constituents)))
    definition = fastjet.JetDefinition(fastjet.cambridge_algorithm, _RECLUSTER_RADIUS)
    sequence = fastjet.ClusterSequence(jets, definition)
    groomed = sequence.exclusive_jets_softdrop_grooming(
        njets=1,
        beta=config.softdrop_beta,
        symmetry_cut=config.softdrop_zcut,
        R0=config.radius,
    )
    return ak.to_numpy(groomed["msoftdrop"]).astype(np.float64)
