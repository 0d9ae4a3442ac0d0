"""What a sim-to-real study measures of each fine-tuned tagger besides its accuracy: how much of
the domain its embedding carries (:func:`domain_auc`) and the data/simulation scale factors an
analysis would apply (:func:`scale_factor_values`, through :mod:`hepmpm.calibration`'s working
points, Clopper-Pearson efficiencies and SF propagation).

Both compare the labelled sample's test split (simulation) with every jet of a shifted test
sample (pseudo-data, whose truth is used here and nowhere in training). A tagger whose input
statistics were re-fitted on a target domain (``adaptation.target_statistics``) is applied as an
analysis would: with its training-domain statistics to simulation, its target ones to data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from hepmpm.atomic import write_json_atomic
from hepmpm.calibration.efficiency import efficiency_from_counts
from hepmpm.calibration.scale_factors import scale_factors
from hepmpm.calibration.working_points import WorkingPointSpec, find_threshold
from hepmpm.config import StrictModel
from hepmpm.data.loader import JetDataset
from hepmpm.errors import HepmpmError
from hepmpm.evaluation.metrics import versus_background_score

#: One bin holds every jet: the samples' generator window (500 < pT < 1000 GeV, |eta| < 2).
ONE_BIN = np.array([0.0, 1.0])


class ScaleFactorConfig(StrictModel):
    """``scale_factors:`` of a study: data/simulation SFs per arm at mistag working points."""

    signals: list[str] = Field(
        default_factory=lambda: ["Tbqq", "Hbb"],
        description="signal classes; each is scored with p_s / (p_s + p_background)",
    )
    background: str = Field("QCD", description="the background class (its mistag SF too)")
    mistag: list[float] = Field(
        default_factory=lambda: [0.05, 0.01],
        description="background efficiencies of the working points, fixed on simulation",
    )

    def model_post_init(self, _context: object) -> None:
        if not all(0 < m < 1 for m in self.mistag):
            raise ValueError("scale_factors.mistag: rates must lie in (0, 1)")
        if self.background in self.signals:
            raise ValueError("scale_factors: the background cannot be a signal")

    def columns(self) -> list[str]:
        """The value names :func:`scale_factor_values` returns, in order."""
        names = []
        for signal in self.signals:
            for target in self.mistag:
                wp = WorkingPointSpec("mistag", target).name
                for panel in ("eff", "mistag"):
                    base = f"{signal}_{panel}_{wp}"
                    names += [f"sf_{base}", f"sf_err_{base}", f"abs_sf_m1_{base}"]
        return names


def scale_factor_values(
    sim: tuple[np.ndarray, np.ndarray],
    data: tuple[np.ndarray, np.ndarray],
    class_names: list[str],
    config: ScaleFactorConfig,
) -> dict[str, float]:
    """Scale factors of one tagger: ``sim`` and ``data`` are (scores [N, C], true output
    position [N]) of simulated and pseudo-data jets. For every signal and mistag working point
    (threshold on simulation), the signal-efficiency SF (``eff``) and the background mistag SF
    (``mistag``) in one bin: ``sf_*`` (nominal), ``sf_err_*`` (half the up-down interval) and
    ``abs_sf_m1_*`` = |SF - 1|; NaN at a working point the simulation cannot reach."""
    b = class_names.index(config.background)
    values: dict[str, float] = {}
    for signal in config.signals:
        s = class_names.index(signal)
        d_sim = versus_background_score(sim[0], s, b)
        d_data = versus_background_score(data[0], s, b)
        for target in config.mistag:
            spec = WorkingPointSpec("mistag", target)
            try:
                wp = find_threshold(spec, d_sim[sim[1] == s], d_sim[sim[1] == b])
            except HepmpmError:  # too few or tied QCD scores: NaN, not a stopped study
                for panel in ("eff", "mistag"):
                    base = f"{signal}_{panel}_{spec.name}"
                    values |= nan_values([f"sf_{base}", f"sf_err_{base}", f"abs_sf_m1_{base}"])
                continue
            for panel, index in (("eff", s), ("mistag", b)):
                rates = []
                for d, truth in ((d_data, data[1]), (d_sim, sim[1])):
                    chosen = truth == index
                    passed = int((d[chosen] >= wp.threshold).sum())
                    rates.append(efficiency_from_counts([[passed]], [[int(chosen.sum())]]))
                sf = scale_factors(rates[0], rates[1], ONE_BIN, ONE_BIN)
                nominal = float(sf.nominal[0, 0])
                base = f"{signal}_{panel}_{spec.name}"
                values[f"sf_{base}"] = nominal
                values[f"sf_err_{base}"] = float(sf.up[0, 0] - sf.down[0, 0]) / 2
                values[f"abs_sf_m1_{base}"] = abs(nominal - 1.0)
    return values


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
    from hepmpm.evaluation.scoring import test_scores

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
                scores, truth, names = test_scores(target_tagger, skim, labels, None)
                values |= scale_factor_values(sim_scores[:2], (scores, truth), names, sf)
            write_json_atomic(path, values)
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


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


def nan_values(names: list[str]) -> dict[str, float]:
    """``names`` -> NaN: the columns of a run that did not measure them."""
    return dict.fromkeys(names, math.nan)
