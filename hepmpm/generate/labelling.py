"""Which clustered jets are written, and with which truth label.

* QCD: the leading jet of each event, if it lies in the pT and |eta| window.
* Signal: a jet in the window is labelled by a resonance of the wanted class when every visible
  decay product (quarks, gluons, e/mu) lies within ``match_delta_r`` of the jet axis; among such
  jets the one closest to the resonance is taken. Unmatched jets are not written.
"""

from __future__ import annotations

import numpy as np

from hepmpm.generate.jets import Jets
from hepmpm.generate.preset import JetConfig
from hepmpm.generate.processes import JetProcess
from hepmpm.generate.pythia_events import EventBatch
from hepmpm.generate.truth import labelled_resonances


def in_window(jets: Jets, config: JetConfig) -> np.ndarray:
    """[n_jets] bool: pT and |eta| inside the JetClass-like window."""
    pt, eta = np.asarray(jets.momentum.pt), np.asarray(jets.momentum.eta)
    return (pt > config.pt_min) & (pt < config.pt_max) & (np.abs(eta) < config.eta_max)


def leading_jets(jets: Jets, config: JetConfig) -> np.ndarray:
    """Indices of each event's leading jet, kept only if it is inside the window."""
    if len(jets) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((-np.asarray(jets.momentum.pt), jets.event))
    first_of_event = np.ones(len(order), dtype=bool)
    first_of_event[1:] = jets.event[order][1:] != jets.event[order][:-1]
    leading = order[first_of_event]
    return leading[in_window(jets, config)[leading]]


def matched_jets(
    batch: EventBatch, jets: Jets, process: JetProcess, label: int, config: JetConfig
) -> np.ndarray:
    """Indices of jets that contain a whole decay of class ``label``."""
    assert process.resonance is not None
    window = in_window(jets, config)
    jet_starts = np.searchsorted(jets.event, np.arange(batch.n_events + 1))
    selected = []
    for event in np.unique(jets.event[window]):
        candidates = np.arange(jet_starts[event], jet_starts[event + 1])
        candidates = candidates[window[candidates]]
        jet_axes = jets.momentum[candidates]
        for res in labelled_resonances(batch, int(event), process.resonance):
            if res.label != label:
                continue
            products = np.array(res.visible_products)
            n_jets, n_products = len(candidates), len(products)
            # every (jet, product) pair: [n_jets * n_products] -> [n_jets, n_products]
            jet_of_pair = jet_axes[np.repeat(np.arange(n_jets), n_products)]
            product_of_pair = batch.momentum(np.tile(products, n_jets))
            distances = np.asarray(jet_of_pair.deltaR(product_of_pair)).reshape(n_jets, n_products)
            contains = np.all(distances < config.match_delta_r, axis=1)
            if not contains.any():
                continue
            to_resonance = np.asarray(jet_axes.deltaR(batch.momentum(np.array([res.resonance]))))
            best = candidates[np.argmin(np.where(contains, to_resonance, np.inf))]
            if best not in selected:
                selected.append(int(best))
    return np.array(sorted(selected), dtype=np.int64)


def label_jets(
    batch: EventBatch, jets: Jets, process: JetProcess, label: int, config: JetConfig
) -> np.ndarray:
    """Indices (into ``jets``) of the jets written, with truth label ``label``, in event order
    (the generator's choice; the skim's selection of model inputs is
    :func:`hepmpm.processors.jet_selection.select_jets`)."""
    if process.resonance is None:
        return leading_jets(jets, config)
    return matched_jets(batch, jets, process, label, config)
