"""``hepmpm study new-classes``: does pre-training transfer to classes it never saw?

Pre-train (no labels) on the jets of ``pretrain_classes`` only (a skim of just those classes'
generated files), then fine-tune on ``finetune_classes`` (held out of pre-training, QCD aside)
with N labelled jets, pre-trained backbone vs the same tagger from scratch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from hepmpm.evaluation.pages import Section, write_page
from hepmpm.evaluation.plots import mean_std_curves
from hepmpm.studies.common import (
    SampleConfig,
    StudyConfig,
    StudyFolder,
    aggregate,
    aggregated_section,
    comparison_lines,
    curves,
    sample_paths,
    tagger_row,
    write_table,
)

VALUES = ("accuracy", "macro_auc", "mean_rejection_50")


class NewClassesConfig(StudyConfig):
    """configs/studies/new_classes.yaml."""

    sample: SampleConfig = Field(description="its classes: every class either stage uses")
    pretrain_classes: list[str] = Field(min_length=1)
    finetune_classes: list[str] = Field(min_length=2)
    labels: list[int] = Field(min_length=1)
    modes: list[str] = Field(default_factory=lambda: ["scratch", "finetune"])

    def model_post_init(self, _context: object) -> None:
        used = set(self.pretrain_classes + self.finetune_classes)
        missing = sorted(used - set(self.sample.classes))
        if missing:
            raise ValueError(f"sample.classes lacks {missing}, used by pretrain/finetune_classes")


def run(config: NewClassesConfig, out: Path, progress: bool, echo: Callable[[str], None]) -> Path:
    """Run (or complete) the study; returns ``summary.md``."""
    folder = StudyFolder(out, config, "new-classes")
    files = folder.sample(config.sample, progress)
    domain = config.sample.preset
    pre_skim = folder.skim(
        "pretrain-classes", sample_paths(files, config.pretrain_classes), domain, progress
    )
    ft_skim = folder.skim(
        "finetune-classes", sample_paths(files, config.finetune_classes), domain, progress
    )
    backbone = folder.pretrain("pretrain-classes", pre_skim, progress)
    echo(f"pre-trained on {', '.join(config.pretrain_classes)}: {backbone}")
    rows = []
    for seed in config.seeds:
        for n in config.labels:
            for mode in config.modes:
                _, metrics = folder.finetune(
                    f"{mode}/n{n}/seed{seed}", ft_skim, backbone, mode, n,
                    config.finetune_classes, seed, progress,
                )  # fmt: skip
                arm = "scratch" if mode == "scratch" else f"pre-trained ({mode})"
                row = {"arm": arm, "labels": n, "seed": seed, **tagger_row(metrics["test"])}
                echo(f"  {arm:22s} N={n:<6d} seed {seed}: accuracy {row['accuracy']:.3f}")
                rows.append(row)
    write_table(folder.root / "results", rows)
    summary = aggregate(rows, ("arm", "labels"), VALUES)
    write_table(folder.root / "aggregated", summary)
    figures = []
    for value, label in (
        ("accuracy", "test accuracy"),
        ("mean_rejection_50", "mean QCD rejection at 50% sig. eff."),
    ):
        x, ys = curves(summary, "arm", "labels", value)
        path = folder.root / f"{value}_vs_labels.png"
        figures.append(mean_std_curves(x, ys, path, "labelled jets (new classes)", label))
    intro = [
        f"Pre-training (no labels) on {', '.join(config.pretrain_classes)} only; fine-tuning on "
        f"{', '.join(config.finetune_classes)} with N class-balanced labelled jets; "
        f"{config.sample.jets_per_class} generated jets per class. Mean ± std over "
        f"{len(config.seeds)} seeds.",
    ]
    findings = comparison_lines(summary, "labels", "arm", "accuracy", "scratch", lambda n: f"N={n}")
    sections = [
        Section("Setup", text=intro),
        aggregated_section(
            "Results on the new classes (test split)",
            summary,
            ("arm", "labels"),
            VALUES,
            findings,
            figures,
        ),
    ]
    markdown, _ = write_page(
        folder.root, "summary", "New classes: transfer of pre-training", sections
    )
    return markdown
