"""Scale factors as a ``correctionlib.schemav2`` file, validated and read back by correctionlib.

Each correction has the inputs ``pt`` (real, GeV), ``abseta`` (real, |η|) and ``systematic``
(string: ``nominal``, ``up``, ``down``) and the output ``weight``; its data is a category over
``systematic`` of ``MultiBinning`` nodes over (pt, abseta), content in row-major order (|η|
fastest), ``flow: clamp`` (a jet outside the binning gets its nearest bin).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import correctionlib
import correctionlib.schemav2 as cs
import numpy as np

from hepmpm.atomic import atomic_path
from hepmpm.calibration.scale_factors import VARIATIONS, ScaleFactors
from hepmpm.errors import HepmpmError


def build_correction(name: str, description: str, sf: ScaleFactors) -> cs.Correction:
    """One correction ``name`` holding ``sf`` (nominal, up, down)."""

    def binning(variation: str) -> cs.MultiBinning:
        return cs.MultiBinning(
            nodetype="multibinning",
            inputs=["pt", "abseta"],
            edges=[[float(e) for e in sf.pt_edges], [float(e) for e in sf.eta_edges]],
            content=[float(v) for v in sf.values(variation).ravel()],
            flow="clamp",
        )

    return cs.Correction(
        name=name,
        description=description,
        version=1,
        inputs=[
            cs.Variable(name="pt", type="real", description="jet pT / GeV"),
            cs.Variable(name="abseta", type="real", description="jet |eta|"),
            cs.Variable(name="systematic", type="string", description="nominal, up or down"),
        ],
        output=cs.Variable(name="weight", type="real", description="data/simulation SF"),
        data=cs.Category(
            nodetype="category",
            input="systematic",
            content=[cs.CategoryItem(key=v, value=binning(v)) for v in VARIATIONS],
        ),
    )


def write_correction_set(
    path: Path, corrections: Sequence[cs.Correction], description: str
) -> cs.CorrectionSet:
    """Write ``corrections`` to ``path`` atomically, after correctionlib has parsed the JSON and
    every correction evaluates, at each bin centre, to the values it was built from."""
    cset = cs.CorrectionSet(
        schema_version=2, description=description, corrections=list(corrections)
    )
    text = cset.model_dump_json(exclude_unset=True, indent=1)
    check_correction_set(text, cset)
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text + "\n")
    return cset


def check_correction_set(text: str, cset: cs.CorrectionSet) -> None:
    """correctionlib's evaluator on ``text`` gives each bin's content back (a bug otherwise)."""
    evaluator = correctionlib.CorrectionSet.from_string(text)
    for correction in cset.corrections:
        for item in correction.data.content:
            node = item.value
            pt_edges, eta_edges = (np.asarray(e, float) for e in node.edges)
            pt = np.repeat(0.5 * (pt_edges[1:] + pt_edges[:-1]), len(eta_edges) - 1)
            eta = np.tile(0.5 * (eta_edges[1:] + eta_edges[:-1]), len(pt_edges) - 1)
            got = evaluator[correction.name].evaluate(pt, eta, item.key)
            if not np.allclose(got, node.content, rtol=1e-12, atol=0):
                raise HepmpmError(
                    f"correction {correction.name} ({item.key}) does not evaluate to its "
                    "contents in correctionlib; not written"
                )
