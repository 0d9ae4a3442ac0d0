"""What a sim-to-real study measures of each fine-tuned tagger besides its accuracy: how much of
the domain its embedding carries (:func:`domain_auc`) and the data/simulation scale factors an
analysis would apply (:func:`~hepmpm.calibration.truth_scale_factors.scale_factor_values`).

Both compare the labelled sample's test split (simulation) with every jet of a shifted test
sample (pseudo-data, whose truth is used here and nowhere in training). A tagger whose input
statistics were re-fitted on a target domain (``adaptation.target_statistics``) is applied as an
analysis would: with its training-domain statistics to simulation, its target ones to data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hepmpm.atomic import atomic_path, write_json_atomic
from hepmpm.calibration.truth_scale_factors import ScaleFactorConfig, scale_factor_values
from hepmpm.data.loader import JetDataset
from hepmpm.errors import HepmpmError


def domain_taggers(run_dir: Path) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any]]:
    """The tagger of a fine-tuning folder as applied to simulation and as applied to the
    target domain (the same model, unless its input statistics were re-fitted on the target:
    then the simulation one gets its training-domain statistics back), and its record."""
    from hepmpm.models.store import load_run_tagger

    target, record = load_run_tagger(run_dir)
    source = record.get("adaptation", {}).get("source_input_statistics")
    if source is None:
        return target, target, record
    sim, _ = load_run_tagger(run_dir)
    embed = sim.backbone.embed
    with torch.no_grad():
        embed.input_mean.copy_(torch.tensor(source["input_mean"]))
        embed.input_std.copy_(torch.tensor(source["input_std"]))
    return sim, target, record


def domain_auc(
    sim_tagger: torch.nn.Module,
    target_tagger: torch.nn.Module,
    sim_jets: JetDataset,
    target_jets: JetDataset,
) -> float:
    """:func:`~hepmpm.training.adaptation.separability_auc` of the taggers' embeddings of
    simulated and target jets (each by the tagger applied to its domain)."""
    from hepmpm.training.adaptation import separability_auc, tagger_embeddings

    return separability_auc(
        tagger_embeddings(sim_tagger, sim_jets), tagger_embeddings(target_tagger, target_jets)
    )


def run_domain_metrics(
    run_dir: Path,
    labelled: Path,
    tests: dict[str, Path],
    auc_jets: int,
    sf: ScaleFactorConfig | None,
    report_only: bool,
) -> dict[str, dict[str, float]]:
    """Per test sample name: ``domain_auc`` (on up to ``auc_jets`` jets of each side; 0: not
    measured) and the :func:`scale_factor_values` (``sf`` None: none) of the tagger in
    ``run_dir``, against the labelled skim's test split; kept in ``run_dir/domain_NAME.json``
    (``report_only``: only those already there)."""

    found: dict[str, dict[str, float]] = {}
    loaded = None
    for name, skim in tests.items():
        path = run_dir / f"domain_{name}.json"
        if not path.is_file() and not report_only:
            loaded = loaded or _load(run_dir, labelled)
            sim_tagger, target_tagger, record, sim_scores = loaded
            labels = record["labels"]
            values: dict[str, float] = {}
            if auc_jets:
                sim_jets = _jets(labelled, "test", labels, auc_jets)
                values["domain_auc"] = domain_auc(
                    sim_tagger, target_tagger, sim_jets, _jets(skim, None, labels, auc_jets)
                )
            if sf is not None:
                scores, truth, names = shifted_scores(run_dir, name, skim, target_tagger, labels)
                values |= scale_factor_values(sim_scores[:2], (scores, truth), names, sf)
            write_json_atomic(path, values)
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def shifted_scores(
    run_dir: Path, name: str, skim: Path, tagger: torch.nn.Module, labels: list[int]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scores [N, C], true output positions [N] and class names of the tagger of ``run_dir``
    (``tagger``, outputs ``labels``) on every jet of the test sample ``name`` (``skim``), kept in
    ``run_dir/scores_NAME.npz``: a study reads them for the accuracy and again for the scale
    factors, and scoring 10^4 jets takes minutes on a CPU."""
    from hepmpm.evaluation.scoring import test_scores

    path = run_dir / f"scores_{name}.npz"
    if path.is_file():
        with np.load(path) as kept:
            return kept["scores"], kept["truth"], [str(n) for n in kept["names"]]
    scores, truth, names = test_scores(tagger, skim, labels, None)
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(handle, scores=scores, truth=truth, names=np.array(names))
    return scores, truth, names


def _load(run_dir: Path, labelled: Path) -> tuple[Any, Any, dict[str, Any], tuple]:
    from hepmpm.evaluation.scoring import test_scores

    sim_tagger, target_tagger, record = domain_taggers(run_dir)
    sim_scores = test_scores(sim_tagger, labelled, record["labels"], "test")
    return sim_tagger, target_tagger, record, sim_scores


def _jets(skim: Path, split: str | None, labels: list[int], at_most: int) -> JetDataset:
    """Up to ``at_most`` jets (hash-chosen) of ``split`` of the tagger's classes."""
    from hepmpm.data.index import JetIndex

    index = JetIndex.from_skim(skim)
    available = len(index.select(split, labels))
    if available < 4:
        raise HepmpmError(f"{skim}: {available} jets of split {split!r}, too few for a domain AUC")
    return JetDataset(index, split, 256, labels=labels, limit=min(at_most, available))
