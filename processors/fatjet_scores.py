"""Tagger scores as a column of an analysis's own events: one call inside any coffea processor.

:func:`tag_fatjets` selects FatJets and builds their model inputs with the code of the training
skim and of :class:`~hepmpm.processors.tagger.TaggerProcessor` (:func:`read_jet_constituents`,
:func:`select_jets`, the model's feature set), tags them with :class:`OnnxTagger` (batched by
multiplicity) and returns the scores aligned with ``events.FatJet``::

    scores = tag_fatjets(events, tagger)                  # [events, var, C] float32
    i = tagger.class_names.index("Tbqq")
    events["FatJet", "hepmpm_Tbqq"] = scores[..., i]      # NaN where the jet was not tagged
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
from hepmpm.export.onnx_tagger import OnnxTagger
from hepmpm.processors.jet_constituents import read_jet_constituents
from hepmpm.processors.jet_selection import JetSelection, select_jets


def tag_fatjets(
    events: ak.Array, tagger: OnnxTagger | str | Path, selection: JetSelection | None = None
) -> ak.Array:
    """Class probabilities of every FatJet of ``events`` (eager NanoEvents, PFNano or NanoAOD
    v15 constituents): ``[n_events, var (FatJets), C]`` float32 in the order of
    ``tagger.class_names``, NaN for jets failing ``selection`` (default: the skim's, with the
    model's ``max_particles``) or the model's inputs (e.g. no stored constituents).

    ``tagger``: an :class:`OnnxTagger` (build it once, outside ``process``) or a model path.
    """
    if not isinstance(tagger, OnnxTagger):
        tagger = OnnxTagger(tagger)
    metadata = getattr(events, "metadata", None) or {}
    source = str(metadata.get("filename", "events"))
    constituents = read_jet_constituents(events, source)
    selected = select_jets(
        constituents,
        selection or JetSelection(max_particles=tagger.max_particles),
        tagger.feature_set,
    )
    probs = np.full((constituents.n_jets, len(tagger.class_names)), np.nan, dtype=np.float32)
    probs[selected.index] = tagger.tag_flat(selected.features, selected.counts)
    return ak.unflatten(probs, ak.to_numpy(ak.num(events.FatJet)))
