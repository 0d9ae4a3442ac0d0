"""The linear probe of a label-efficiency study's backbones against the number of probe labels.

    hepmpm study probe-scan --study results/label-efficiency \\
        [--labels 100,300,1000,3000] [--draws 3] [--score-jets 2000] [--out DIR]

For every backbone in ``work/pretrain/`` (each pre-training, and ``random``: the same
architecture at random initialisation, never trained), a logistic regression on the frozen jet
embedding (:mod:`hepmpm.training.probe`) fitted on N class-balanced train-split jets of the
study's labelled sample and scored on ``--score-jets`` of its val-split jets, for each N and
``--draws`` draws of the N jets (a draw also picks the scored jets). The online probe of a
pre-training compares with one random twin at one N; this says how the gain over random
features changes with the labels a downstream tagger has, with the spread over draws. Writes
``probe_vs_labels.csv`` / ``.json`` (one row per N and draw, one column per backbone) and
prints the mean ± std table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepmpm.errors import HepmpmError
from hepmpm.studies.common import pm, spread


def probe_scan(
    study: Path, labels: Sequence[int], draws: int, score_jets: int = 2000
) -> list[dict[str, Any]]:
    """One row per (labels, draw): ``labels``, ``draw`` and each backbone's probe accuracy."""
    from hepmpm.data.manifest import load_manifest
    from hepmpm.models.store import load_backbone
    from hepmpm.training.probe import ProbeConfig, ProbeSets

    skim = Path(study) / "work" / "skims" / "labelled"
    folders = sorted(p.parent for p in (Path(study) / "work" / "pretrain").glob("*/backbone.json"))
    if not folders or not (skim / "manifest.json").is_file():
        raise HepmpmError(f"{study}: no pre-trained backbones or labelled skim under work/")
    feature_set = load_manifest(skim).feature_set
    backbones = {folder.name: load_backbone(folder, feature_set) for folder in folders}
    rows = []
    for n in labels:
        for draw in range(draws):
            config = ProbeConfig(skim=str(skim), labels=n, score_jets=score_jets, seed=draw)
            sets = ProbeSets(config, feature_set.names)
            rows.append({"labels": n, "draw": draw,
                         **{name: sets.accuracy(b) for name, b in backbones.items()}})  # fmt: skip
    return rows


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """A markdown table: each backbone's mean ± std over draws at each N."""
    names = [k for k in rows[0] if k not in ("labels", "draw")]
    lines = ["| probe labels | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for n in sorted({r["labels"] for r in rows}):
        values = {k: [r[k] for r in rows if r["labels"] == n] for k in names}
        cells = [pm(float(np.mean(v)), spread(v)) for v in values.values()]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines
