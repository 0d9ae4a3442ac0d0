"""Ship a pre-training of a label-efficiency study as a packaged backbone (maintainers' tool).

    python -m hepmpm.studies.ship_backbone --study results/label-efficiency \\
        --pretraining pretrain --name compact-sim4

copies ``backbone.pt``, ``backbone.json`` and ``mpm.pt`` of the study's pre-training into
``hepmpm/pretrained/NAME/`` and writes ``card.json``: the corpus it saw (preset, classes, jets,
seed, from the study's record), the feature set, the resolved pre-training config, the steps,
its last online-probe accuracy beside its random-init twin's, the hepmpm version and the
sha256 of every file. The study itself is the one command that makes the weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hepmpm import __version__
from hepmpm.atomic import write_json_atomic
from hepmpm.errors import HepmpmError
from hepmpm.evaluation.plots import read_lightning_metrics
from hepmpm.pretrained import CARD, ROOT, sha256
from hepmpm.studies.common import run_tool

FILES = ("backbone.pt", "backbone.json", "mpm.pt")


def make_card(study: Path, pretraining: str) -> dict[str, Any]:
    """The model card of the pre-training ``pretraining`` of the study folder ``study``."""
    folder = Path(study) / "work" / "pretrain" / pretraining
    record = json.loads((folder / "backbone.json").read_text())
    config = json.loads((Path(study) / "study.json").read_text())["settings"]
    corpus = config["corpus"]
    metrics = read_lightning_metrics(sorted(folder.glob("logs/version_*/metrics.csv")))
    if "probe/acc" not in metrics:
        raise HepmpmError(f"{folder} has no online probe in its logs; pre-train with probe.skim")
    resolved = yaml.safe_load((folder / "config.yaml").read_text())
    return {
        "format": "hepmpm-pretrained",
        "backbone_size": "x".join(str(record["backbone"][k]) for k in ("depth", "dim")),
        "feature_set": record["feature_set"]["name"],
        "data": {
            "preset": corpus["preset"],
            "classes": corpus["classes"],
            "jets": corpus["jets_per_class"] * len(corpus["classes"]),
            "seed": corpus["seed"],
            "split": "train (80% of the corpus, by jet hash)",
        },
        "config": resolved,
        "steps": record["steps"],
        "probe": {
            "accuracy": float(metrics["probe/acc"][1][-1]),
            "random_init_accuracy": float(metrics["probe/acc_random"][1][-1]),
            "fit_jets": resolved["probe"]["labels"],
            "score_jets": resolved["probe"]["score_jets"],
            "classes": config["labelled"]["classes"],
            "skim": "the study's labelled sample (train split to fit, val split to score)",
        },
        "made_by": f"hepmpm study label-efficiency (pre-training {pretraining!r})",
        "hepmpm_version": __version__,
    }


def ship(study: Path, pretraining: str, name: str, root: Path = ROOT) -> Path:
    """Copy the pre-training into ``root/name`` with its card; returns the folder."""
    source = Path(study) / "work" / "pretrain" / pretraining
    missing = [f for f in FILES if not (source / f).is_file()]
    if missing:
        raise HepmpmError(f"{source} lacks {', '.join(missing)}: is the pre-training finished?")
    card = make_card(study, pretraining)
    target = Path(root) / name
    target.mkdir(parents=True, exist_ok=True)
    for file in FILES:
        shutil.copyfile(source / file, target / file)
    card["sha256"] = {file: sha256(target / file) for file in FILES}
    write_json_atomic(target / CARD, card)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True, help="label-efficiency study folder")
    parser.add_argument("--pretraining", default="pretrain", help="its pre-training to ship")
    parser.add_argument("--name", required=True, help="the shipped name (pretrained:NAME)")
    args = parser.parse_args(argv)
    return run_tool("ship_backbone", lambda: print(ship(args.study, args.pretraining, args.name)))


if __name__ == "__main__":
    raise SystemExit(main())
