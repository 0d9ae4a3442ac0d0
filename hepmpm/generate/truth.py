"""Truth labels: find a resonance's decay products in the Pythia event record.

The record is a graph of mother/daughter indices; walking it is inherently per event, but each
walk touches only the few resonance entries (numpy finds them), never every particle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hepmpm.generate.processes import (
    CHARGED_LEPTONS,
    GLUON,
    NEUTRINOS,
    QUARKS,
    RESONANCES,
    classify_decay,
    is_visible_product,
)
from hepmpm.generate.pythia_events import EventBatch

_DECAY_PRODUCTS = QUARKS | CHARGED_LEPTONS | NEUTRINOS | {GLUON}


@dataclass(frozen=True)
class LabelledResonance:
    """A resonance whose decay is a JetClass class: global indices into the batch."""

    event: int
    label: int
    resonance: int  # global index of the resonance (its last copy, just before decaying)
    visible_products: tuple[int, ...]  # quarks, gluons, e/mu that must lie in the jet


def daughters(batch: EventBatch, i: int) -> list[int]:
    """Global indices of particle ``i``'s daughters (Pythia's daughter1/daughter2 conventions)."""
    start = batch.offsets[np.searchsorted(batch.offsets, i, side="right") - 1]
    d1, d2 = int(batch.daughter1[i]), int(batch.daughter2[i])
    if d1 <= 0:
        return []
    if d2 == 0 or d2 == d1:
        local = [d1]
    elif d2 > d1:
        local = list(range(d1, d2 + 1))
    else:
        local = [d1, d2]
    return [start + d for d in local]


def last_copy(batch: EventBatch, i: int) -> int:
    """Follow particle ``i`` through recoil copies and its own shower branchings."""
    while True:
        same = [d for d in daughters(batch, i) if batch.pdg_id[d] == batch.pdg_id[i]]
        if len(same) != 1:
            return i
        i = same[0]


def decay_products(batch: EventBatch, i: int) -> list[int]:
    """Partons and leptons a resonance decayed into, following W's in t and H decays."""
    products = []
    for d in daughters(batch, last_copy(batch, i)):
        pdg = abs(int(batch.pdg_id[d]))
        if pdg in RESONANCES:
            products.extend(decay_products(batch, d))
        elif pdg in _DECAY_PRODUCTS:
            products.append(d)
    return products


def labelled_resonances(batch: EventBatch, event: int, resonance: int) -> list[LabelledResonance]:
    """Every decay of |PDG id| ``resonance`` in ``event`` that is a JetClass class."""
    start, stop = batch.offsets[event], batch.offsets[event + 1]
    candidates = start + np.flatnonzero(np.abs(batch.pdg_id[start:stop]) == resonance)
    decaying = sorted({last_copy(batch, int(i)) for i in candidates})
    found = []
    for res in decaying:
        products = decay_products(batch, res)
        label = classify_decay(resonance, [int(batch.pdg_id[p]) for p in products])
        if label is None:
            continue
        visible = tuple(p for p in products if is_visible_product(int(batch.pdg_id[p])))
        found.append(LabelledResonance(event, label, res, visible))
    return found
