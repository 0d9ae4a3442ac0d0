"""Ship a pre-training of a label-efficiency study as a packaged backbone (maintainers' tool).

    hepmpm pretrained ship --study results/label-efficiency \\
        --pretraining pretrain --name compact-sim4

copies ``backbone.pt``, ``backbone.json`` and ``mpm.pt`` of the study's pre-training into
``hepmpm/pretrained/NAME/`` and writes ``card.json``: the corpus it saw (preset, classes, jets,
seed, from the study's record), the feature set, the resolved pre-training config, the steps,
its last online-probe accuracy beside its random-init twin's, the hepmpm version and the
sha256 of every file. The study itself is the one command that makes the weights. A
pre-training made elsewhere (the GPU lease, benchmarks/gpu_lease.sh) ships with its corpus and
command named::

    hepmpm pretrained ship --pretrain DIR --name NAME \\
        --corpus preset=sim,classes=QCD+Hbb+Wqq+Tbqq,jets_per_class=25000,seed=51 \\
        --made-by "benchmarks/gpu_lease.sh (...)"
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from hepmpm import __version__
from hepmpm.atomic import write_json_atomic
from hepmpm.errors import HepmpmError
from hepmpm.evaluation.plots import read_lightning_metrics
from hepmpm.pretrained import CARD, ROOT, sha256

FILES = ("backbone.pt", "backbone.json", "mpm.pt")


def make_card(
    folder: Path, corpus: dict[str, Any], probe_classes: list[str], probe_skim: str, made_by: str
) -> dict[str, Any]:
    """The model card of the pre-training in ``folder``: ``corpus`` (preset, classes,
    jets_per_class, seed) is what it was pre-trained on, ``probe_classes`` and ``probe_skim``
    the labelled jets its online probe was fitted and scored on, ``made_by`` the command."""
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise HepmpmError(f"{folder} lacks {', '.join(missing)}: is the pre-training finished?")
    record = json.loads((folder / "backbone.json").read_text())
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
            "classes": probe_classes,
            "skim": probe_skim,
        },
        "made_by": made_by,
        "hepmpm_version": __version__,
    }


def study_card(study: Path, pretraining: str) -> tuple[Path, dict[str, Any]]:
    """The folder and card of the pre-training ``pretraining`` of the study folder ``study``."""
    folder = Path(study) / "work" / "pretrain" / pretraining
    config = json.loads((Path(study) / "study.json").read_text())["settings"]
    card = make_card(
        folder, config["corpus"], config["labelled"]["classes"],
        "the study's labelled sample (train split to fit, val split to score)",
        f"hepmpm study label-efficiency (pre-training {pretraining!r})",
    )  # fmt: skip
    return folder, card


def parse_corpus(text: str) -> dict[str, Any]:
    """``preset=sim,classes=QCD+Hbb,jets_per_class=25000,seed=51`` as a corpus mapping."""
    try:
        pairs = dict(item.split("=", 1) for item in text.split(","))
        return {
            "preset": pairs["preset"],
            "classes": pairs["classes"].split("+"),
            "jets_per_class": int(pairs["jets_per_class"]),
            "seed": int(pairs["seed"]),
        }
    except (KeyError, ValueError) as err:
        raise HepmpmError(
            f"--corpus {text!r}: expected preset=P,classes=A+B,jets_per_class=N,seed=S ({err})"
        ) from None


def ship(source: Path, card: dict[str, Any], name: str, root: Path = ROOT) -> Path:
    """Copy the pre-training in ``source`` (checked by :func:`make_card`) into ``root/name``
    with ``card``; returns the folder."""
    target = Path(root) / name
    target.mkdir(parents=True, exist_ok=True)
    for file in FILES:
        shutil.copyfile(source / file, target / file)
    card["sha256"] = {file: sha256(target / file) for file in FILES}
    write_json_atomic(target / CARD, card)
    return target
