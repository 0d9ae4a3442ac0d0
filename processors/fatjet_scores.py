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
from hepmpm.processors.jet_constituents import detect_naming, read_fields, read_jet_constituents
from hepmpm.processors.jet_selection import JetSelection, select_jets


def tag_fatjets(
    events: ak.Array, tagger: OnnxTagger | str | Path, selection: JetSelection | None = None
) -> ak.Array:
    """Class probabilities of every FatJet of ``events`` (NanoEvents, PFNano or NanoAOD v15
    constituents): ``[n_events, var (FatJets), C]`` float32 in the order of
    ``tagger.class_names``, NaN for jets failing ``selection`` (default: the skim's, with the
    model's ``max_particles``) or the model's inputs (e.g. no stored constituents).

    ``events`` may be eager or coffea's dask mode (``NanoEventsFactory.from_root(...,
    mode="dask")``, needs the ``dask`` extra): then the scores are a dask-awkward array, tagged
    partition by partition when computed (reading only the branches the model inputs need),
    equal to the eager ones.

    ``tagger``: an :class:`OnnxTagger` (build it once, outside ``process``) or a model path.
    """
    if not isinstance(tagger, OnnxTagger):
        tagger = OnnxTagger(tagger)
    selection = selection or JetSelection(max_particles=tagger.max_particles)
    if is_dask_awkward(events):
        return _tag_fatjets_dask(events, tagger, selection)
    metadata = getattr(events, "metadata", None) or {}
    return _tag_fatjets_eager(events, tagger, selection, str(metadata.get("filename", "events")))


def is_dask_awkward(array: object) -> bool:
    """Whether ``array`` is a dask-awkward array (without importing dask where it is not)."""
    return type(array).__module__.partition(".")[0] == "dask_awkward"


def _tag_fatjets_eager(
    events: ak.Array, tagger: OnnxTagger, selection: JetSelection, source: str
) -> ak.Array:
    constituents = read_jet_constituents(events, source)
    selected = select_jets(constituents, selection, tagger.feature_set)
    probs = np.full((constituents.n_jets, len(tagger.class_names)), np.nan, dtype=np.float32)
    probs[selected.index] = tagger.tag_flat(selected.features, selected.counts)
    return ak.unflatten(probs, ak.to_numpy(ak.num(events.FatJet)))


def _tag_fatjets_dask(events: ak.Array, tagger: OnnxTagger, selection: JetSelection) -> ak.Array:
    """The scores of dask-awkward ``events`` as a dask-awkward array: each partition is tagged
    eagerly (the model runs on numpy), given only the fields the inputs are built from."""
    import dask_awkward as dak

    source = "events (dask)"
    naming = detect_naming(events, source)
    collections = {name: events[name][names] for name, names in read_fields(events, naming).items()}
    return dak.map_partitions(
        _tag_partition,
        *collections.values(),
        names=tuple(collections),
        tagger=tagger,
        selection=selection,
        source=source,
        label="hepmpm-tag-fatjets",
    )


def _tag_partition(
    *collections: ak.Array,
    names: tuple[str, ...],
    tagger: OnnxTagger,
    selection: JetSelection,
    source: str,
) -> ak.Array:
    """:func:`tag_fatjets` of one partition, given its collections (``names``). On Dask's
    typetracers (no data: the graph is being planned) it marks the fields it reads as needed
    and returns the scores' type."""
    events = ak.zip(dict(zip(names, collections, strict=True)), depth_limit=1)
    if ak.backend(events) != "typetracer":
        return _tag_fatjets_eager(events, tagger, selection, source)
    # A partition of no events: every column read is touched, the output has the real type.
    empty = ak.typetracer.length_zero_if_typetracer(events)
    scores = _tag_fatjets_eager(empty, tagger, selection, source)
    return ak.Array(scores.layout.to_typetracer(forget_length=True))
