"""The sim-to-real table of a study with shifted test samples: per arm, label count and shifted
sample, what an analysis asks of a tagger trained on simulation, over the seeds.

- accuracy on the ``sim`` test split and on every jet of the shifted sample, and the drop
  (sim − shifted, seed by seed);
- |SF − 1| of the first signal's efficiency at the first mistag working point (the study's
  ``scale_factors``), the systematic an analysis pays for the mismodelling;
- the shifted accuracy minus that of the reference arm (scratch) and of the arm a lever arm
  takes its learning rate from (``lr_from``: the same backbone without the lever), paired seed by
  seed with :func:`~hepmpm.studies.common.paired_rows`'s interval and verdict;
- the drop and |SF − 1| as fractions of the reference arm's (the issue's bar: at most one half).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hepmpm.calibration.working_points import WorkingPointSpec
from hepmpm.studies.common import paired_rows, pm, spread


def shift_rows(
    rows: Sequence[dict[str, Any]],
    samples: Sequence[str],
    reference: str,
    bases: dict[str, str],
    sf_column: str | None,
) -> list[dict[str, Any]]:
    """One row per arm, label count and shifted sample of ``samples`` (runs' ``rows``: one per
    arm, labels and seed, with ``accuracy``, ``accuracy_<sample>`` and ``<sf_column>_<sample>``);
    ``bases``: arm -> the arm it is compared with besides ``reference``."""
    out = []
    for sample in samples:
        column = f"accuracy_{sample}"
        tested = [r for r in rows if np.isfinite(r.get(column, np.nan))]
        versus = {
            (ref, p["arm"], p["labels"]): p
            for ref in {reference, *bases.values()}
            for p in paired_rows(tested, ref, column)
        }
        drops, errors, sample_rows = {}, {}, []
        for arm, n in dict.fromkeys((r["arm"], r["labels"]) for r in tested):
            runs = [r for r in tested if (r["arm"], r["labels"]) == (arm, n)]
            drop = [r["accuracy"] - r[column] for r in runs]
            sf = [r.get(f"{sf_column}_{sample}", np.nan) for r in runs] if sf_column else []
            measured = [v for v in sf if np.isfinite(v)]  # none: the report says nan, not a warning
            drops[arm, n] = float(np.mean(drop))
            errors[arm, n] = float(np.mean(measured)) if measured else math.nan
            row = {
                "arm": arm,
                "labels": n,
                "sample": sample,
                "seeds": len(runs),
                "accuracy_sim": _pm([r["accuracy"] for r in runs]),
                "accuracy_shifted": _pm([r[column] for r in runs]),
                "drop": _pm(drop),
                "abs_sf_m1": _pm(sf) if sf else "-",
            }
            for name, ref in (("reference", reference), ("base", bases.get(arm))):
                p = versus.get((ref, arm, n))
                row[f"minus_{name}"] = (
                    "-" if p is None
                    else f"{ref}: {p[f'minus_{ref}_mean']:+.3f} ± {p[f'minus_{ref}_std']:.3f} "
                    f"({p['verdict']})"
                )  # fmt: skip
            sample_rows.append(row)
        for row in sample_rows:  # scratch's drop and |SF - 1| are known once all arms are read
            key, ref = (row["arm"], row["labels"]), (reference, row["labels"])
            row["drop_vs_reference"] = _ratio(drops.get(key), drops.get(ref))
            row["abs_sf_m1_vs_reference"] = _ratio(errors.get(key), errors.get(ref))
        out += sample_rows
    return out


def sf_column(signals: Sequence[str], mistag: Sequence[float]) -> str | None:
    """The |SF − 1| column (without its sample) of the first signal's efficiency at the first
    mistag working point; None when the study measures no scale factor."""
    if not signals or not mistag:
        return None
    return f"abs_sf_m1_{signals[0]}_eff_{WorkingPointSpec('mistag', mistag[0]).name}"


def _pm(values: Sequence[float]) -> str:
    finite = [v for v in values if np.isfinite(v)]
    return pm(float(np.mean(finite)), spread(finite)) if finite else "-"


def _ratio(value: float | None, reference: float | None) -> str:
    """``value / reference`` as text; "-" where either is missing or the reference is not
    positive (a drop of 0 or below cannot be halved)."""
    if value is None or reference is None or not np.isfinite(value * reference) or reference <= 0:
        return "-"
    return f"{value / reference:.2f}"
