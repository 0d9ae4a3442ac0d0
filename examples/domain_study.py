"""A sim-to-real domain study: does pre-training on (pseudo-)data shrink the sim → data drop?

    python examples/domain_study.py --out studies/sim-to-real            # CPU scale, ~10 min
    python examples/domain_study.py --out studies/sim-to-real --tiny     # seconds (tests)
    python examples/domain_study.py --out work --set 'classes=[QCD,Tbqq]' --set 'labels=[500]'

Generates the same classes with the ``sim`` preset and with the ``data`` preset (shifted
fragmentation, tracking and calorimeter response, extra soft particles: a stand-in for collision
data whose truth is kept only to score the taggers), then compares three arms: pre-training on
``data`` without labels, pre-training on ``sim``, and no pre-training. Each is fine-tuned on
labelled ``sim`` and scored on the test split of both domains. This prints the drop per arm and
points at the study's plots (feature comparison, accuracy vs labels per domain, ROC curves) and
summary; the work is ``hepmpm.studies.sim_to_real`` (``hepmpm study sim-to-real``).
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

    summary = run_study("sim-to-real", args.out, overrides=args.overrides, tiny=args.tiny)

    with (args.out / "aggregated.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    print(f"\n{'arm':20s} {'labels':>6s} {'sim acc':>8s} {'data acc':>9s} {'drop':>7s}")
    for row in rows:
        print(
            f"{row['arm']:20s} {row['labels']:>6s} {float(row['sim_accuracy_mean']):8.3f} "
            f"{float(row['data_accuracy_mean']):9.3f} {float(row['accuracy_drop_mean']):+7.3f}"
        )
    print(f"\nsummary: {summary}; plots: {sorted(p.name for p in args.out.glob('*.png'))}")


if __name__ == "__main__":
    main()
