"""Per-class QCD rejection of every run of a label-efficiency study, with what it rests on.

    hepmpm study rejection-table --study results/label-efficiency [--sample big]

A study's tables quote the *mean* over signal classes of the QCD rejection at 50 % signal
efficiency, which the largest class dominates, and which on a test split of ~1000 QCD jets rests
on a handful of jets at a rejection of a few hundred. This reads each completed run of
``results.json`` (at the learning rate its arm chose) and its test on ``--sample`` (the
labelled sample's test split, ``test``, or a ``test_samples`` name, whose evaluation each run
keeps as ``test_NAME.json``), and gives per (arm, labels) each signal class's rejection
``1 / eps_B`` (mean ± std over seeds) and the number of QCD jets passing the cut (summed over
seeds): the rejection's test-set error is about ``1 / sqrt(passing)`` of it. Writes
``rejection_SAMPLE.csv`` / ``.json`` (one row per run and class) in ``--out`` and prints the
markdown table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hepmpm.errors import HepmpmError
from hepmpm.evaluation.metrics import BACKGROUND
from hepmpm.studies.common import pm, spread
from hepmpm.studies.label_efficiency import run_name


def test_metrics(run: Path, sample: str) -> dict[str, Any] | None:
    """The run's metrics on ``sample`` (``test``: its own test split), None when not there."""
    if sample == "test":
        path = run / "metrics.json"
        return json.loads(path.read_text())["test"] if path.is_file() else None
    path = run / f"test_{sample}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def rejection_rows(study: Path, sample: str) -> list[dict[str, Any]]:
    """One row per (run, signal class): arm, labels, seed, class, rejection_50, QCD jets in
    the sample and QCD jets passing the cut (``qcd_jets / rejection_50``; 0 when none pass)."""
    results = Path(study) / "results.json"
    if not results.is_file():
        raise HepmpmError(f"{study}: no results.json (run the study, or --report-only, first)")
    rows = []
    for row in json.loads(results.read_text()):
        run = run_name(row["arm"], row["labels"], row["seed"], row.get("lr"))
        test = test_metrics(Path(study) / "work" / "runs" / run, sample)
        if test is None:
            continue
        qcd = test["per_class"][BACKGROUND]["n_jets"]
        for name, metrics in test["per_class"].items():
            rejection = metrics.get("rejection_50")
            if name == BACKGROUND or rejection is None:
                continue
            passing = 0 if math.isinf(rejection) else round(qcd / rejection)
            rows.append({"arm": row["arm"], "labels": row["labels"], "seed": row["seed"],
                         "class": name, "rejection_50": rejection, "qcd_jets": qcd,
                         "qcd_passing": passing})  # fmt: skip
    if not rows:
        raise HepmpmError(f"{study}: no run has a test on {sample!r}")
    return rows


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """A markdown table: per (arm, labels) each class's rejection, mean ± std over seeds (the
    QCD jets passing, summed over seeds, in brackets)."""
    classes = list(dict.fromkeys(r["class"] for r in rows))
    points = list(dict.fromkeys((r["arm"], r["labels"]) for r in rows))
    lines = [
        "| arm | labels | seeds | " + " | ".join(classes) + " |",
        "|---" * (len(classes) + 3) + "|",
    ]
    for arm, n in sorted(points, key=lambda p: (p[1], p[0])):
        cells, seeds = [], 0
        for name in classes:
            found = [r for r in rows if (r["arm"], r["labels"], r["class"]) == (arm, n, name)]
            values = [r["rejection_50"] for r in found]
            seeds = max(seeds, len(found))
            passing = sum(r["qcd_passing"] for r in found)
            cells.append(f"{pm(float(np.mean(values)), spread(values), 1)} ({passing})")
        lines.append(f"| {arm} | {n} | {seeds} | " + " | ".join(cells) + " |")
    return lines
