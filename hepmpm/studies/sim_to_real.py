"""``hepmpm study sim-to-real``: the domain study.

Two samples of the same classes: the ``sim`` preset and the ``data`` preset (a shifted detector
and physics model standing in for collision data; its truth labels are kept in the files but
never used for training). Arms: pre-train (no labels) on ``data``, pre-train on ``sim``, or no
pre-training (``scratch``); each is fine-tuned on N labelled ``sim`` jets and evaluated on the
test split of ``sim`` and of ``data`` (the ``data`` test split is disjoint from the jets the
``data`` pre-training trained on). Reported per arm: the performance on each domain and the
sim→data drop; plus a feature-level comparison of the two domains.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import Field

from hepmpm.data.manifest import load_manifest
from hepmpm.data.shards import read_skim_particles
from hepmpm.evaluation.pages import Section, write_page
from hepmpm.evaluation.plots import feature_comparison, mean_std_curves, roc_curves
from hepmpm.jetclass import CLASS_INDEX
from hepmpm.studies.common import (
    SampleConfig,
    StudyConfig,
    StudyFolder,
    aggregate,
    aggregated_section,
    curves,
    pm,
    sample_paths,
    tagger_row,
    write_table,
)

DOMAINS = ("sim", "data")
VALUES = (
    "sim_accuracy", "data_accuracy", "accuracy_drop",
    "sim_macro_auc", "data_macro_auc", "sim_mean_rejection_50", "data_mean_rejection_50",
)  # fmt: skip


class SimToRealConfig(StudyConfig):
    """configs/studies/sim_to_real.yaml."""

    classes: list[str] = Field(min_length=2)
    jets_per_class: int = Field(ge=10, description="per class, in each domain's sample")
    sample_seed: int = Field(1, ge=0, description="the data sample uses sample_seed + 1000")
    labels: list[int] = Field(min_length=1, description="labelled sim jets per point")
    mode: str = Field("finetune", description="mode of the pre-trained arms: finetune | frozen")


def run(config: SimToRealConfig, out: Path, progress: bool, echo: Callable[[str], None]) -> Path:
    """Run (or complete) the study; returns ``summary.md``."""
    from hepmpm.models.store import load_tagger
    from hepmpm.training.finetune import evaluate_tagger

    folder = StudyFolder(out, config, "sim-to-real")
    skims = {}
    for offset, domain in enumerate(DOMAINS):
        spec = SampleConfig(
            preset=domain, classes=config.classes, jets_per_class=config.jets_per_class,
            seed=config.sample_seed + 1000 * offset,
        )  # fmt: skip
        files = folder.sample(spec, progress)
        skims[domain] = folder.skim(domain, sample_paths(files), domain, progress)
    backbones = {f"pre-train on {d}": folder.pretrain(d, skims[d], progress) for d in DOMAINS}
    arms: dict[str, Path | None] = {**backbones, "scratch": None}
    labels = sorted(CLASS_INDEX[c] for c in config.classes)
    rows, last_runs = [], {}
    for seed in config.seeds:
        for n in config.labels:
            for arm, backbone in arms.items():
                mode = "scratch" if backbone is None else config.mode
                tag = arm.replace("pre-train on ", "pretrain-")
                run_dir, metrics = folder.finetune(
                    f"{tag}/n{n}/seed{seed}", skims["sim"], backbone, mode, n,
                    config.classes, seed, progress,
                )  # fmt: skip
                tagger, _ = load_tagger(run_dir)
                on_data = evaluate_tagger(tagger, skims["data"], labels, "test")
                sim_row, data_row = tagger_row(metrics["test"]), tagger_row(on_data)
                row = {"arm": arm, "labels": n, "seed": seed}
                row |= {f"sim_{k}": v for k, v in sim_row.items()}
                row |= {f"data_{k}": v for k, v in data_row.items()}
                row["accuracy_drop"] = row["sim_accuracy"] - row["data_accuracy"]
                echo(
                    f"  {arm:18s} N={n:<6d} seed {seed}: accuracy sim {row['sim_accuracy']:.3f}"
                    f" data {row['data_accuracy']:.3f}"
                )
                rows.append(row)
                last_runs[arm] = run_dir
    return _report(config, folder, rows, skims, last_runs)


def _report(
    config: SimToRealConfig,
    folder: StudyFolder,
    rows: list[dict],
    skims: dict[str, Path],
    runs: dict[str, Path],
) -> Path:
    from hepmpm.data.index import JetIndex
    from hepmpm.data.loader import JetDataset
    from hepmpm.models.store import load_tagger
    from hepmpm.training.finetune import predict

    out = folder.root
    write_table(out / "results", rows)
    summary = aggregate(rows, ("arm", "labels"), VALUES)
    write_table(out / "aggregated", summary)
    # Curves per arm and domain: arm (sim), arm (data).
    long = [
        {"curve": f"{r['arm']} ({d})", "labels": r["labels"], **{
            k: r[f"{d}_{k}"] for k in ("accuracy", "mean_rejection_50")
        }}
        for r in rows for d in DOMAINS
    ]  # fmt: skip
    per_domain = aggregate(long, ("curve", "labels"), ("accuracy", "mean_rejection_50"))
    figures = []
    for value, label in (
        ("accuracy", "test accuracy"),
        ("mean_rejection_50", "mean QCD rejection at 50% sig. eff."),
    ):
        x, ys = curves(per_domain, "curve", "labels", value)
        path = out / f"{value}_sim_vs_data.png"
        figures.append(mean_std_curves(x, ys, path, "labelled sim jets", label))
    manifests = {d: load_manifest(skims[d]) for d in DOMAINS}
    particles = {d: read_skim_particles([s.path for s in m.shards]) for d, m in manifests.items()}
    names = list(manifests["sim"].feature_set.names)
    feature_figure = feature_comparison(particles, names, out / "features_sim_vs_data.png")
    # ROC of one tagger (the first pre-trained arm's last run) on both domains.
    arm = next(iter(runs))
    tagger, record = load_tagger(runs[arm])
    labels = list(record["labels"])
    position = np.full(max(labels) + 1, -1, dtype=np.int64)
    position[labels] = np.arange(len(labels))
    scores = {}
    for d in DOMAINS:
        dataset = JetDataset(JetIndex.from_skim(skims[d]), "test", 256, labels=labels)
        probs, truth = predict(tagger, dataset)
        scores[d] = (probs, position[truth])
    roc = roc_curves(scores, record["class_names"], out / "roc_sim_vs_data.png")
    table_rows = [
        [
            a["arm"], a["labels"], a["seeds"],
            pm(a["sim_accuracy_mean"], a["sim_accuracy_std"]),
            pm(a["data_accuracy_mean"], a["data_accuracy_std"]),
            pm(a["accuracy_drop_mean"], a["accuracy_drop_std"]),
            pm(a["sim_macro_auc_mean"], a["sim_macro_auc_std"]),
            pm(a["data_macro_auc_mean"], a["data_macro_auc_std"]),
        ]
        for a in summary
    ]  # fmt: skip
    header = [
        "arm", "labels", "seeds", "sim accuracy", "data accuracy", "sim→data drop",
        "sim macro AUC", "data macro AUC",
    ]  # fmt: skip
    drops = {a["arm"]: a for a in summary if a["labels"] == max(config.labels)}
    findings = [
        f"At N={max(config.labels)}: "
        + "; ".join(
            f"{arm}: drop {pm(a['accuracy_drop_mean'], a['accuracy_drop_std'])}"
            for arm, a in drops.items()
        )
        + "."
    ]
    sections = [
        Section(
            "Setup",
            text=[
                f"Classes {', '.join(config.classes)}; {config.jets_per_class} jets per class "
                f"in each of the sim and data samples. Pre-training uses no labels; "
                f"fine-tuning ({config.mode} for the pre-trained arms) uses N labelled sim "
                f"jets. Mean ± std over {len(config.seeds)} seeds."
            ],
        ),
        Section("Per arm and domain (test splits)", text=findings, table=(header, table_rows)),
        aggregated_section("Every number", summary, ("arm", "labels"), VALUES, figures=figures),
        Section(
            "The two domains",
            text=[
                "Raw particle features of the sim and data skims, and the QCD rejection of "
                f"one tagger ({arm}, N={config.labels[-1]}, seed {config.seeds[-1]}) on each."
            ],
            figures=[feature_figure, roc],
        ),
    ]
    markdown, _ = write_page(out, "summary", "Sim-to-real: simulation vs data", sections)
    return markdown
