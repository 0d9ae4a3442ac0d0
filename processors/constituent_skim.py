"""``ConstituentSkim``: a coffea processor turning NanoAOD FatJets into parquet training shards.

Per chunk it reads the FatJets and their constituents (PFNano or central v15 naming), applies
the jet selection, computes the raw features of the chosen feature set and writes one parquet
shard (atomically) with one row per jet. Its output accumulates over chunks: counts, the shard
records, and ``hist.Hist`` of jet pT, mass and multiplicity per dataset.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
import uproot
from coffea import processor
from hepmpm.processors.jet_constituents import read_jet_constituents
from hepmpm.processors.jet_selection import SKIP_REASONS, JetSelection, select_jets

from hepmpm import __version__
from hepmpm.data.shards import JetRows, write_shard
from hepmpm.data.split import jet_hash
from hepmpm.data.statistics import FeatureStatistics, particle_keys
from hepmpm.errors import HepmpmError
from hepmpm.features import get_feature_set

UNKNOWN_DOMAIN = "unknown"


def jet_histograms() -> dict[str, hist.Hist]:
    """Empty per-dataset histograms of the written jets (GeV)."""

    def per_dataset(axis: hist.axis.Regular) -> hist.Hist:
        return hist.Hist(hist.axis.StrCategory([], growth=True, name="dataset"), axis)

    return {
        "jet_pt": per_dataset(hist.axis.Regular(60, 0, 3000, name="pt", label="Jet $p_T$ [GeV]")),
        "jet_mass": per_dataset(hist.axis.Regular(50, 0, 300, name="mass", label="Jet mass [GeV]")),
        "n_particles": per_dataset(hist.axis.Regular(64, 0, 256, name="n", label="Particles")),
    }


def shard_name(metadata: dict[str, Any]) -> str:
    """Deterministic shard path for a chunk: same input chunk, same name, whatever the executor."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(metadata["filename"]).stem)
    file_id = metadata.get("fileuuid") or hashlib.sha1(metadata["filename"].encode()).hexdigest()
    dataset = re.sub(r"[^A-Za-z0-9_.-]", "_", metadata["dataset"])
    return (
        f"shards/{dataset}/{stem}-{file_id[:8]}-"
        f"{metadata['entrystart']}-{metadata['entrystop']}.parquet"
    )


class ConstituentSkim(processor.ProcessorABC):
    """NanoAOD events → parquet shards of jets with ragged particle features.

    Parameters
    ----------
    out:
        Folder the shards are written under (``out/shards/<dataset>/...``); must be reachable by
        every worker (a shared file system for a remote Dask cluster).
    feature_set:
        ``part17`` or ``mpm7id`` (see :mod:`hepmpm.features`).
    selection:
        Jet requirements and the particle cap.
    require_impact_parameters:
        Fail on files without d0/dz (central NanoAOD) instead of filling zeros.
    """

    def __init__(
        self,
        out: Path,
        feature_set: str = "part17",
        selection: JetSelection | None = None,
        require_impact_parameters: bool = False,
    ) -> None:
        self.out = Path(out)
        self.feature_set = get_feature_set(feature_set)
        self.selection = selection or JetSelection()
        self.require_impact_parameters = require_impact_parameters

    def process(self, events: ak.Array) -> dict[str, Any]:
        meta = events.metadata
        dataset, source = meta["dataset"], meta["filename"]
        domain = meta.get("domain", UNKNOWN_DOMAIN)
        try:
            constituents = read_jet_constituents(events, source)
        except (OSError, uproot.DeserializationError) as err:  # damaged baskets, truncated file
            reason = str(err).splitlines()[0]
            raise HepmpmError(
                f"{source}: cannot be read as a ROOT file (entries {meta['entrystart']}-"
                f"{meta['entrystop']}: {type(err).__name__}: {reason})"
            ) from None
        missing_impact = [m for m in constituents.missing if m != "charge"]
        if missing_impact and self.require_impact_parameters:
            raise HepmpmError(f"{source}: no impact parameters ({', '.join(missing_impact)})")
        selected = select_jets(constituents, self.selection, self.feature_set)

        rows = len(selected)
        chunk = {"file": source, "entrystart": meta["entrystart"], "entrystop": meta["entrystop"]}
        jet = selected.index
        event_row = constituents.event_row[jet]
        identity = {
            "run": ak.to_numpy(events.run)[event_row],
            "luminosityBlock": ak.to_numpy(events.luminosityBlock)[event_row],
            "event": ak.to_numpy(events.event)[event_row],
            "jet_index": constituents.jet_index[jet],
        }
        # Statistics of the features in hand, so the manifest never reads the shards back.
        statistics = FeatureStatistics.from_particles(
            selected.features, particle_keys(jet_hash(*identity.values()), selected.counts)
        )
        if rows:
            name = shard_name(meta)
            columns = {
                **identity,
                "dataset": np.full(rows, dataset, dtype=object),
                "domain": np.full(rows, domain, dtype=object),
                "label": constituents.label[jet],
                "jet_pt": constituents.jets.pt[jet],
                "jet_eta": constituents.jets.eta[jet],
                "jet_phi": constituents.jets.phi[jet],
                "jet_mass": constituents.jets.mass[jet],
                "n_particles": selected.counts,
            }
            write_shard(
                self.out / name,
                JetRows(columns, selected.features, selected.counts),
                metadata={"feature_set": self.feature_set.name, "hepmpm_version": __version__},
            )
            chunk["shard"] = name
        chunk.update(dataset=dataset, domain=domain, jets=rows)

        hists = jet_histograms()
        hists["jet_pt"].fill(dataset=dataset, pt=constituents.jets.pt[selected.index])
        hists["jet_mass"].fill(dataset=dataset, mass=constituents.jets.mass[selected.index])
        hists["n_particles"].fill(dataset=dataset, n=constituents.counts[selected.index])
        counts = {
            "events": len(events),
            "jets_seen": constituents.n_jets,
            "jets_written": rows,
            "jets_truncated": selected.truncated,
            "orphan_links": constituents.orphan_links,
            **{f"skipped_{reason}": selected.skipped[reason] for reason in SKIP_REASONS},
        }
        return {
            "counts": {dataset: counts},
            "hists": hists,
            "chunks": [chunk],
            "statistics": statistics,
            "missing_inputs": {source: set(constituents.missing)} if constituents.missing else {},
        }

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator
