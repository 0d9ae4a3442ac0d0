"""Label-efficiency tables over the runs of several studies that share their labelled jets.

    hepmpm study combine --study docs/results/label-efficiency-mask60 \\
        --with docs/results/label-efficiency-budget:scratch-stdin,finetune-stdin,part \\
        --reference scratch --envelope scratch-stdin --out DIR

A fine-tuning run is a function of its labelled sample, seed, arm settings and stage: studies
with the same ``labelled`` sample and fine-tuning recipe draw the same N jets per seed and test
on the same jets (generation and training are seeded; a re-run reproduces an earlier study's
accuracies to the last digit), so an arm measured in one study compares with another study's
arms seed by seed. This reads ``results.json`` and ``study.json`` of the main study and of each
``--with STUDY:ARM,ARM`` (only those arms), refuses studies whose labelled sample or fine-tuning
stage differ (naming the key) or where a run both made differs (a run both studies made must
be the same run reproduced), and writes ``aggregated``, ``label_efficiency`` (with
``--envelope``, also against the best from-scratch arm at each N) and ``paired`` tables
(``.csv``/``.json``) into ``--out``, as the study itself writes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hepmpm.errors import HepmpmError
from hepmpm.studies.common import aggregate, paired_rows, write_table
from hepmpm.studies.label_efficiency import efficiency_rows

#: What must agree between the studies for their runs to compare seed by seed.
SHARED_KEYS = ("labelled", "finetune", "feature_set")


def read_study(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The resolved settings of a study folder and its per-run rows (``results.json``)."""
    record, table = Path(folder) / "study.json", Path(folder) / "results.json"
    for path in (record, table):
        if not path.is_file():
            raise HepmpmError(f"{folder} has no {path.name}: is it a label-efficiency study?")
    return json.loads(record.read_text())["settings"], json.loads(table.read_text())


def combined_rows(main: Path, others: Sequence[tuple[Path, Sequence[str]]]) -> list[dict]:
    """The main study's rows and, from each other study, those of the named arms."""
    settings, rows = read_study(main)
    for folder, arms in others:
        other, other_rows = read_study(folder)
        for key in SHARED_KEYS:
            if other.get(key) != settings.get(key):
                raise HepmpmError(
                    f"{folder} differs from {main} in {key!r}: its runs are not the same jets "
                    "or recipe"
                )
        missing = sorted(set(arms) - {r["arm"] for r in other_rows})
        if missing:
            raise HepmpmError(f"{folder} has no arm {', '.join(missing)}")
        # A run both studies made must be the same run reproduced; the union is kept.
        known = {(r["arm"], r["labels"], r["seed"]): r["accuracy"] for r in rows}
        for r in (r for r in other_rows if r["arm"] in arms):
            key = (r["arm"], r["labels"], r["seed"])
            if key not in known:
                rows.append(r)
            elif abs(known[key] - r["accuracy"]) > 1e-9:
                raise HepmpmError(
                    f"{r['arm']} N={r['labels']} seed {r['seed']}: accuracy {known[key]:.4f} in "
                    f"{main}, {r['accuracy']:.4f} in {folder}: not the same run"
                )
    return rows


def combine(
    main: Path,
    others: Sequence[tuple[Path, Sequence[str]]],
    reference: str,
    envelope: Sequence[str],
    out: Path,
) -> list[Path]:
    """Write the combined tables into ``out``; returns their CSV paths."""
    rows = combined_rows(main, others)
    summary = aggregate(rows, ("arm", "labels"), ("accuracy",))
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "aggregated": summary,
        "label_efficiency": efficiency_rows(summary, reference, envelope),
        "paired": paired_rows(rows, reference),
    }
    return [write_table(out / name, table)[0] for name, table in tables.items() if table]
