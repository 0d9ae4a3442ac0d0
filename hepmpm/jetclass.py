"""The ten JetClass jet classes, in JetClass order.

The position in :data:`CLASS_NAMES` is the class index written as ``FatJet_truthLabel`` and
used as the label everywhere in hepmpm.
"""

from __future__ import annotations

from hepmpm.errors import HepmpmError

#: QCD (q/g), H->bb, H->cc, H->gg, H->4q, H->lvqq', Z->qq, W->qq', t->bqq', t->blv.
CLASS_NAMES: tuple[str, ...] = (
    "QCD",
    "Hbb",
    "Hcc",
    "Hgg",
    "H4q",
    "Hqql",
    "Zqq",
    "Wqq",
    "Tbqq",
    "Tbl",
)

CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}


def parse_classes(spec: str) -> list[str]:
    """Turn ``"QCD,Hbb"`` or ``"all"`` into a list of class names in JetClass order.

    Raises :class:`HepmpmError` naming any unknown class and listing the valid ones.
    """
    if spec.strip().lower() == "all":
        return list(CLASS_NAMES)
    requested = [name.strip() for name in spec.split(",") if name.strip()]
    if not requested:
        raise HepmpmError("no jet class given in classes; e.g. QCD,Hbb (--classes QCD,Hbb) or all")
    unknown = [name for name in requested if name not in CLASS_INDEX]
    if unknown:
        raise HepmpmError(
            f"unknown jet class {', '.join(repr(u) for u in unknown)}; "
            f"valid classes: {', '.join(CLASS_NAMES)} (or 'all')"
        )
    return sorted(set(requested), key=CLASS_INDEX.__getitem__)
