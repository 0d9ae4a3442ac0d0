"""Which Pythia 8 process makes each JetClass class, and how a resonance decay is classified.

Each class is made by a hard process that gives boosted resonances in the pT-hat window of the
preset. Decays are forced where that costs no generality (H->bb in ZH with Z->nunu; W->qq' in
tt). For the semi-leptonic classes the W decays are restricted to quarks, e and mu, and the class
is read off the actual decay, so both lepton charges appear. A jet is labelled by
:func:`classify_decay` from the partons and leptons the resonance decayed into.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hepmpm.jetclass import CLASS_INDEX

# PDG ids
TOP, Z_BOSON, W_BOSON, HIGGS = 6, 23, 24, 25
QUARKS = frozenset({1, 2, 3, 4, 5})
GLUON = 21
CHARGED_LEPTONS = frozenset({11, 13})  # e, mu; tau decays are switched off where it matters
NEUTRINOS = frozenset({12, 14, 16})
RESONANCES = frozenset({TOP, Z_BOSON, W_BOSON, HIGGS})

_W_TO_QUARKS = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")
_W_TO_QUARKS_OR_LIGHT_LEPTONS = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5 11 13")
_ZH_Z_TO_NUNU = ("HiggsSM:ffbar2HZ = on", "23:onMode = off", "23:onIfAny = 12 14 16")
_TTBAR = ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on")


@dataclass(frozen=True)
class JetProcess:
    """Pythia settings that produce jets of one class.

    ``resonance`` is the |PDG id| whose decay defines the label; ``None`` for QCD, where the
    leading jet of each event is taken.
    """

    settings: tuple[str, ...]
    resonance: int | None


PROCESSES: dict[str, JetProcess] = {
    "QCD": JetProcess(("HardQCD:all = on",), None),
    "Hbb": JetProcess((*_ZH_Z_TO_NUNU, "25:onMode = off", "25:onIfMatch = 5 -5"), HIGGS),
    "Hcc": JetProcess((*_ZH_Z_TO_NUNU, "25:onMode = off", "25:onIfMatch = 4 -4"), HIGGS),
    "Hgg": JetProcess((*_ZH_Z_TO_NUNU, "25:onMode = off", "25:onIfMatch = 21 21"), HIGGS),
    "H4q": JetProcess(
        (*_ZH_Z_TO_NUNU, "25:onMode = off", "25:onIfMatch = 24 -24", *_W_TO_QUARKS), HIGGS
    ),
    "Hqql": JetProcess(
        (
            *_ZH_Z_TO_NUNU,
            "25:onMode = off",
            "25:onIfMatch = 24 -24",
            *_W_TO_QUARKS_OR_LIGHT_LEPTONS,
        ),
        HIGGS,
    ),
    "Zqq": JetProcess(
        (
            "WeakBosonAndParton:qqbar2gmZg = on",
            "WeakBosonAndParton:qg2gmZq = on",
            "WeakZ0:gmZmode = 2",  # pure Z, no gamma*
            "23:onMode = off",
            "23:onIfAny = 1 2 3 4 5",
        ),
        Z_BOSON,
    ),
    "Wqq": JetProcess(
        (
            "WeakBosonAndParton:qqbar2Wg = on",
            "WeakBosonAndParton:qg2Wq = on",
            *_W_TO_QUARKS,
        ),
        W_BOSON,
    ),
    "Tbqq": JetProcess((*_TTBAR, *_W_TO_QUARKS), TOP),
    "Tbl": JetProcess((*_TTBAR, *_W_TO_QUARKS_OR_LIGHT_LEPTONS), TOP),
}


def is_visible_product(pdg_id: int) -> bool:
    """Decay products that must lie inside the jet: quarks, gluons, charged e/mu."""
    a = abs(pdg_id)
    return a in QUARKS or a == GLUON or a in CHARGED_LEPTONS


def classify_decay(resonance: int, products: Sequence[int]) -> int | None:
    """Class index of a resonance decay, or ``None`` if it is no JetClass class.

    ``products`` are the PDG ids of the final decay partons/leptons (after following W's in
    top and H decays), e.g. ``classify_decay(6, [5, 2, -1]) == CLASS_INDEX["Tbqq"]``.
    """
    ids = sorted(abs(p) for p in products)
    n_quarks = sum(i in QUARKS for i in ids)
    n_leptons = sum(i in CHARGED_LEPTONS for i in ids)
    n_neutrinos = sum(i in NEUTRINOS for i in ids)
    n_gluons = ids.count(GLUON)
    if resonance == HIGGS:
        if ids == [5, 5]:
            return CLASS_INDEX["Hbb"]
        if ids == [4, 4]:
            return CLASS_INDEX["Hcc"]
        if ids == [GLUON, GLUON]:
            return CLASS_INDEX["Hgg"]
        if len(ids) == 4 and n_quarks == 4:
            return CLASS_INDEX["H4q"]
        if len(ids) == 4 and n_quarks == 2 and n_leptons == 1 and n_neutrinos == 1:
            return CLASS_INDEX["Hqql"]
    elif resonance in (Z_BOSON, W_BOSON) and len(ids) == 2 and n_quarks == 2:
        return CLASS_INDEX["Zqq" if resonance == Z_BOSON else "Wqq"]
    elif resonance == TOP and len(ids) == 3 and 5 in ids and n_gluons == 0:
        if n_quarks == 3:
            return CLASS_INDEX["Tbqq"]
        if n_quarks == 1 and n_leptons == 1 and n_neutrinos == 1:
            return CLASS_INDEX["Tbl"]
    return None
