"""``TaggerProcessor``: tag NanoAOD FatJets with an exported hepmpm model inside coffea.

Per chunk it reads the FatJets and their constituents and selects jets with exactly the code of
:class:`~hepmpm.processors.ConstituentSkim` (:func:`read_jet_constituents`,
:func:`select_jets`, :func:`hepmpm.features.compute_features`), so an analysis feeds the model
the features it was trained on: no train/inference skew. The raw features go, jagged, through
:class:`~hepmpm.export.OnnxTagger`: sorted by particle count and run in batches of
similar multiplicity, each padded only to its longest jet (at most ``max_particles``), the
scores restored to the jets' order. The output accumulates over chunks:

- ``hists``: ``score`` (dataset × class × score) and ``score_vs_mass`` (dataset × class ×
  score × jet mass / GeV), ``hist.Hist``;
- ``counts``: per dataset, events, jets seen, tagged, skipped per reason, truncated;
- ``chunks``: one record per chunk (file, entries, jets, the scores file if any);
- ``missing_inputs``: per file, the particle inputs it lacks (e.g. d0/dz in central NanoAOD).

With ``scores_dir`` each chunk also writes one parquet file (atomically) with a row per tagged
jet: ``run``, ``luminosityBlock``, ``event``, ``jet_index`` (position in the event's FatJet
collection), ``dataset``, ``label`` (truth label or −1), jet ``pt``/``eta``/``phi``/``mass``,
``n_particles`` and ``score_<class>`` per output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import uproot
from coffea import processor
from hepmpm.export.onnx_tagger import OnnxTagger, scores_of
from hepmpm.processors.constituent_skim import shard_name
from hepmpm.processors.jet_constituents import read_jet_constituents
from hepmpm.processors.jet_selection import SKIP_REASONS, JetSelection, select_jets

from hepmpm.atomic import atomic_path
from hepmpm.errors import HepmpmError

SCORES_SUBDIR = "scores"


def score_histograms(class_names: tuple[str, ...]) -> dict[str, hist.Hist]:
    """Empty per-dataset score histograms; jet mass in GeV."""
    dataset = hist.axis.StrCategory([], growth=True, name="dataset")
    classes = hist.axis.StrCategory(list(class_names), name="cls", label="Output")
    return {
        "score": hist.Hist(dataset, classes, hist.axis.Regular(50, 0, 1, name="score")),
        "score_vs_mass": hist.Hist(
            dataset,
            classes,
            hist.axis.Regular(20, 0, 1, name="score"),
            hist.axis.Regular(30, 0, 300, name="mass", label="Jet mass [GeV]"),
        ),
    }


def scores_file_name(metadata: dict[str, Any]) -> str:
    """Deterministic per-chunk scores path (same chunk, same name, whatever the executor)."""
    return str(Path(SCORES_SUBDIR) / Path(shard_name(metadata)).relative_to("shards"))


def _write_scores(path: Path, columns: dict[str, np.ndarray]) -> None:
    table = pa.table(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


class TaggerProcessor(processor.ProcessorABC):
    """NanoAOD events → tagger scores of the selected FatJets (histograms, optional parquet).

    Parameters
    ----------
    model:
        An exported model (path) or an :class:`OnnxTagger`.
    selection:
        Jet requirements; the default is the skim's, with the model's ``max_particles``.
    scores_dir:
        Folder for per-jet scores (``scores_dir/scores/<dataset>/...parquet``); ``None``: none.
        Must be reachable by every worker.
    feature_set:
        If given, the feature set the analysis expects the model to use (checked).
    threads:
        onnxruntime threads per worker (``None``: all cores).
    """

    def __init__(
        self,
        model: str | Path | OnnxTagger,
        selection: JetSelection | None = None,
        scores_dir: Path | None = None,
        feature_set: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.tagger = (
            model
            if isinstance(model, OnnxTagger)
            else OnnxTagger(model, feature_set=feature_set, threads=threads)
        )
        self.selection = selection or JetSelection(max_particles=self.tagger.max_particles)
        self.scores_dir = Path(scores_dir) if scores_dir is not None else None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.tagger.class_names

    def process(self, events: ak.Array) -> dict[str, Any]:
        meta = events.metadata
        dataset, source = meta["dataset"], meta["filename"]
        try:
            constituents = read_jet_constituents(events, source)
        except (OSError, uproot.DeserializationError) as err:  # damaged baskets, truncated file
            raise HepmpmError(
                f"{source}: cannot be read as a ROOT file (entries {meta['entrystart']}-"
                f"{meta['entrystop']}: {type(err).__name__}: {str(err).splitlines()[0]})"
            ) from None
        selected = select_jets(constituents, self.selection, self.tagger.feature_set)
        probs = scores_of(self.tagger, selected.features, selected.counts)  # [n_jets, C]

        jet = selected.index
        mass = constituents.jets.mass[jet]
        hists = score_histograms(self.class_names)
        for i, name in enumerate(self.class_names):
            hists["score"].fill(dataset=dataset, cls=name, score=probs[:, i])
            hists["score_vs_mass"].fill(dataset=dataset, cls=name, score=probs[:, i], mass=mass)

        chunk = {
            "dataset": dataset,
            "file": source,
            "entrystart": meta["entrystart"],
            "entrystop": meta["entrystop"],
            "jets": len(selected),
        }
        if self.scores_dir is not None and len(selected):
            event_row = constituents.event_row[jet]
            columns = {
                "run": ak.to_numpy(events.run)[event_row].astype(np.uint32),
                "luminosityBlock": ak.to_numpy(events.luminosityBlock)[event_row].astype(np.uint32),
                "event": ak.to_numpy(events.event)[event_row].astype(np.uint64),
                "jet_index": constituents.jet_index[jet].astype(np.int32),
                "dataset": np.full(len(jet), dataset, dtype=object),
                "label": constituents.label[jet].astype(np.int32),
                "jet_pt": constituents.jets.pt[jet].astype(np.float32),
                "jet_eta": constituents.jets.eta[jet].astype(np.float32),
                "jet_phi": constituents.jets.phi[jet].astype(np.float32),
                "jet_mass": mass.astype(np.float32),
                "n_particles": selected.counts.astype(np.int32),
                **{f"score_{name}": probs[:, i] for i, name in enumerate(self.class_names)},
            }
            chunk["scores"] = scores_file_name(meta)
            _write_scores(self.scores_dir / chunk["scores"], columns)

        counts = {
            "events": len(events),
            "jets_seen": constituents.n_jets,
            "jets_tagged": len(selected),
            "jets_truncated": selected.truncated,
            **{f"skipped_{reason}": selected.skipped[reason] for reason in SKIP_REASONS},
        }
        return {
            "counts": {dataset: counts},
            "hists": hists,
            "chunks": [chunk],
            "missing_inputs": {source: set(constituents.missing)} if constituents.missing else {},
        }

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator
