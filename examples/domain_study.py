"""A sim-to-real domain study: does pre-training on (pseudo-)data raise the accuracy on data?

    python examples/domain_study.py --out studies/sim-to-real            # CPU scale, ~1.5 h
    python examples/domain_study.py --out studies/sim-to-real --tiny     # about a minute (tests)
    python examples/domain_study.py --out work --set 'labels=[300]'

Pre-trains (no labels) on jets of the ``data`` preset (shifted fragmentation, tracking and
calorimeter response, extra soft particles: a stand-in for collision data whose truth is kept
only to score the taggers), fine-tunes on labelled ``sim`` jets, and scores every tagger on the
``sim`` test split and on a separate ``data`` sample; against it, the same tagger from scratch
and the shipped backbone pre-trained on ``sim``. This prints accuracy per domain and the
sim → data drop per arm and points at the study's plots and summary; the work is
``hepmpm study label-efficiency --config label_efficiency_sim_to_real``
(docs/results/label-efficiency-sim-to-real).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from hepmpm.studies.runner import run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="seconds-scale settings (tests)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args()

    summary = run_study(
        "label-efficiency", args.out, "label_efficiency_sim_to_real", args.overrides, args.tiny
    )

    with (args.out / "aggregated.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    print(f"\n{'arm':20s} {'labels':>6s} {'sim acc':>8s} {'data acc':>9s} {'drop':>7s}")
    for row in rows:
        sim, data = float(row["accuracy_mean"]), float(row["accuracy_data_mean"])
        print(f"{row['arm']:20s} {row['labels']:>6s} {sim:8.3f} {data:9.3f} {sim - data:+7.3f}")
    print(f"\nsummary: {summary}; plots: {sorted(p.name for p in args.out.glob('*.png'))}")


if __name__ == "__main__":
    main()
