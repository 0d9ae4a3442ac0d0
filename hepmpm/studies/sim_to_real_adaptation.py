"""``hepmpm study sim-to-real-adaptation``: do the domain-adaptation levers of fine-tuning
(:mod:`hepmpm.training.adaptation`) bring a tagger trained on labelled simulation closer to
itself on pseudo-data?

The label-efficiency study (:mod:`hepmpm.studies.label_efficiency`: its arms, learning-rate
choice, seeds, tables and report) on a labelled ``sim`` sample, tested on its test split and on
every jet of shifted samples (``test_samples``: the ``data`` and ``shift2`` presets), with
``targets`` (unlabelled jets of the shifted presets, disjoint from the test samples) that the
lever arms read, and per run the embedding's domain AUC and the data/simulation scale factors
(:mod:`hepmpm.studies.domain_metrics`). Its config must name both.
"""

from __future__ import annotations

from pathlib import Path

from hepmpm.pipeline import Pipeline
from hepmpm.studies.label_efficiency import LabelEfficiencyConfig
from hepmpm.studies.label_efficiency import run as run_label_efficiency


class SimToRealAdaptationConfig(LabelEfficiencyConfig):
    """configs/studies/sim_to_real_adaptation.yaml: a label-efficiency config with shifted
    test samples and target samples."""

    def model_post_init(self, _context: object) -> None:
        super().model_post_init(_context)
        if not self.test_samples or not self.targets:
            raise ValueError("a sim-to-real adaptation study needs test_samples and targets")


def run(
    config: SimToRealAdaptationConfig, out: Path, pipeline: Pipeline, report_only: bool = False
) -> Path:
    """Run (or complete) the study; returns ``summary.md`` (see the label-efficiency study)."""
    return run_label_efficiency(config, out, pipeline, report_only)
