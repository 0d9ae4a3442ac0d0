"""The quickstart's report: what pre-training and the adaptation buy, with scale factors
(:mod:`hepmpm.quickstart.gain`), the exported tagger on sim and on data, feature shifts, training
curves.

The tagger's performance per domain is measured on what the TaggerProcessor wrote (per-jet
scores with the truth label the generated files keep), restricted to the jets of the ``test``
split (the same hash of (run, luminosityBlock, event, jet index) the training used), so no jet
the tagger was fitted on is scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from hepmpm.atomic import write_json_atomic
from hepmpm.data.manifest import load_manifest
from hepmpm.data.shards import read_skim_particles
from hepmpm.data.split import DEFAULT_FRACTIONS, assign_splits, jet_hash, split_code
from hepmpm.evaluation import plots
from hepmpm.evaluation.metrics import classification_metrics
from hepmpm.evaluation.pages import Section, write_page
from hepmpm.models.store import read_tagger_record
from hepmpm.quickstart.config import QuickstartConfig
from hepmpm.quickstart.gain import (
    arm_scores,
    curves_vs_labels,
    gain_lines,
    gain_rows,
    gain_table,
    scale_factor_rows,
    scale_factor_table,
)
from hepmpm.quickstart.layout import Layout

DOMAINS = ("sim", "data")


@dataclass(frozen=True)
class QuickstartReport:
    """The report's files and the per-domain metrics it shows."""

    markdown: Path
    html: Path
    metrics: dict[str, dict[str, Any]]


def tagged_jets(
    scores_dir: Path, class_names: list[str], labels: list[int], split: str = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """Scores [N, C] and class positions [N] of the tagged jets of one dataset in ``split``.

    ``labels`` are the JetClass labels of the outputs; jets of other classes are left out.
    """
    table = pq.read_table(sorted(Path(scores_dir).glob("*.parquet")))
    columns = {name: table.column(name).to_numpy() for name in table.column_names}
    hashes = jet_hash(
        columns["run"], columns["luminosityBlock"], columns["event"], columns["jet_index"]
    )
    position = {label: i for i, label in enumerate(labels)}
    truth = np.array([position.get(int(t), -1) for t in columns["label"]])
    keep = (assign_splits(hashes, DEFAULT_FRACTIONS) == split_code(split)) & (truth >= 0)
    scores = np.stack([columns[f"score_{name}"] for name in class_names], axis=1)
    return scores[keep], truth[keep]


def _logs(folder: Path) -> list[Path]:
    return sorted(folder.glob("logs/**/metrics.csv"))


def _performance_table(
    metrics: dict[str, dict[str, Any]], class_names: list[str]
) -> tuple[list[str], list[list[object]]]:
    header = ["metric", *DOMAINS, "data − sim"]
    rows: list[list[object]] = []

    def row(name: str, values: list[Any], shown: list[object] | None = None) -> None:
        finite = all(v is not None and np.isfinite(v) for v in values)
        rows.append([name, *(shown or values), values[1] - values[0] if finite else None])

    rows.append(["jets (test split)", *(metrics[d]["n_jets"] for d in DOMAINS), None])
    row("accuracy", [metrics[d]["accuracy"] for d in DOMAINS])
    row("macro AUC", [metrics[d]["macro_auc"] for d in DOMAINS])
    for name in class_names[1:]:
        per_class = [metrics[d]["per_class"] for d in DOMAINS]
        row(f"{name} vs QCD: AUC", [c[name].get("auc_vs_qcd") for c in per_class])
        rejection = [c[name].get("rejection_50") for c in per_class]
        # No QCD test jet passes: the rejection is only bounded by the QCD jets there are.
        shown = [
            f"> {c['QCD']['n_jets']}" if r is not None and np.isinf(r) else r
            for r, c in zip(rejection, per_class, strict=True)
        ]
        row(f"{name} vs QCD: rejection at 50% eff.", rejection, shown)
    return header, rows


def write_quickstart_report(layout: Layout, config: QuickstartConfig) -> QuickstartReport:
    """Evaluate, plot and write ``report/report.{md,html}`` plus ``report/metrics.json`` (the
    exported tagger per domain, and ``pretraining_gain``: every arm's rows, the differences and
    the scale factors)."""
    out = layout.report
    figures = out / "figures"
    exported = layout.tagger(*config.exported)
    record = read_tagger_record(exported)
    class_names, labels = record["class_names"], record["labels"]

    scored = {d: tagged_jets(layout.tag / "scores" / d, class_names, labels) for d in DOMAINS}
    metrics: dict[str, Any] = {
        d: classification_metrics(s, t, class_names) for d, (s, t) in scored.items()
    }
    arm_scored = arm_scores(layout, config)
    arms, differences = gain_rows(arm_scored)
    factors = scale_factor_rows(arm_scored, config.scale_factors)
    metrics["pretraining_gain"] = {
        "arms": arms, "differences": differences, "scale_factors": factors,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", metrics)

    gain = [
        curves_vs_labels(arms, "accuracy", "test accuracy", figures / "accuracy_vs_labels.png"),
        curves_vs_labels(
            arms, "mean_rejection_50", "mean QCD rejection at 50% signal eff.",
            figures / "rejection_vs_labels.png",
        ),
    ]  # fmt: skip
    curves = plots.training_curves(
        {f"{arm}, {n} labels (sim)": _logs(layout.tagger(arm, n)) for arm, n in config.arms()},
        figures / "training_curves.png",
        keys=("train/loss", "val/loss", "train/loss_step"),
    )
    roc = plots.roc_curves(scored, class_names, figures / "roc.png")
    scores = plots.score_distributions(
        {d: s for d, (s, _) in scored.items()}, class_names, figures / "scores.png"
    )
    manifests = {d: load_manifest(layout.skim(d)) for d in DOMAINS}
    features = plots.feature_comparison(
        {d: read_skim_particles([s.path for s in m.shards]) for d, m in manifests.items()},
        manifests["sim"].feature_set.names,
        figures / "features.png",
    )
    sim, data = metrics["sim"], metrics["data"]
    arm, n = config.exported
    sections = [
        Section(
            "What pre-training buys",
            gain_lines(
                differences, config.backbone, config.adapted is not None, config.scale_factors
            ),
            table=gain_table(arms, differences),
            figures=gain,
        ),
        Section(
            "Data/simulation scale factors",
            table=scale_factor_table(factors, config.scale_factors),
        ),
        Section(
            "What ran",
            [
                f"Classes {', '.join(class_names)}. The backbone `{config.backbone}` was "
                f"fine-tuned on labelled `sim` (the {arm} tagger of {n} labels is the one "
                "exported to ONNX), and the TaggerProcessor tagged both samples inside a coffea "
                "Runner; the `data` sample (shifted generator and detector) stands in for "
                "collisions.",
                f"Accuracy of the exported tagger on the test split: sim {sim['accuracy']:.3f}, "
                f"data {data['accuracy']:.3f} (a change of "
                f"{data['accuracy'] - sim['accuracy']:+.3f} from simulation to data).",
            ],
        ),
        Section(
            "Exported tagger, sim vs data",
            ["Background rejection is 1/ε(QCD) at 50% signal efficiency (JetClass convention)."],
            table=_performance_table(metrics, class_names),
            figures=[roc],
        ),
        Section("Score distributions per domain", figures=[scores]),
        Section("Particle features, sim vs data", figures=[features]),
        Section("Training curves", figures=[curves]),
    ]
    markdown, page = write_page(out, "report", "hepmpm quickstart", sections)
    return QuickstartReport(markdown, page, metrics)
