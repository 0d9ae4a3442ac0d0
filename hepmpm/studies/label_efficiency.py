"""``hepmpm study label-efficiency``: does pre-training pay, at a realistic unlabelled/labelled
ratio, and which lever moves it?

Two generated samples: a large **corpus** pre-trained on without labels, and a separate
**labelled** sample whose train split gives the N class-balanced labelled jets of each point,
whose val split selects every arm's best checkpoint (and scores the online probe), and whose
test split (the same jets for every arm and seed) is where the arms are compared. The
pre-training never sees a labelled jet. The two usually hold the same classes; when the
labelled sample has classes the corpus lacks, the study measures transfer to **new classes**
(configs/studies/label_efficiency_new_classes.yaml), and a variant may then add the corpus's own
labels as a ``class`` target (joint MPM + supervised pre-training: labels of other classes,
which such a downstream task legitimately has). ``test_samples`` name further labelled samples
(e.g. the ``data`` preset, the pseudo-data of a sim-to-real study) that every arm is also tested
on, all of their jets (they serve nothing else): the columns ``accuracy_NAME``, ... beside the
labelled sample's own.

Every arm has its own fine-tuning stage (so its own learning rate), the same step budget, and
is tested at its best validation point (:mod:`hepmpm.training.finetune`). Arms name a
pre-training: ``pretrain`` (the study's main recipe), one of ``variants`` (the main recipe
with overrides: one lever each), so that an ablation pulls one lever at a time, ``random``:
the same backbone at random initialisation, never trained (the control that separates what
pre-training learned from what a frozen random transformer already gives), or
``pretrained:NAME``, a backbone shipped with hepmpm (pre-trained elsewhere: on simulation,
against the study's own pre-training on data).

Results: ``results.csv`` (arm × labels × seed), ``aggregated.csv`` (mean ± std),
``accuracy_vs_labels.png`` / ``mean_rejection_50_vs_labels.png``, ``label_efficiency.csv``
(for each N, the labels the reference arm needs to match each arm's accuracy, interpolated in
log N on the reference curve; ``> max`` when it never does; with ``reference_envelope``, also
on the best from-scratch curve), ``paired.csv`` (each arm minus the
reference seed by seed, with a 95% interval and whether it excludes 0), ``ablation.csv``
(every arm at ``ablation_labels`` against the reference arm), and ``probe.png`` (each
pre-training's online probe against its random-init twin).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from hepmpm.atomic import write_json_atomic
from hepmpm.calibration.truth_scale_factors import ScaleFactorConfig, nan_values
from hepmpm.config import StrictModel
from hepmpm.evaluation.pages import Section, write_page
from hepmpm.evaluation.plots import probe_curves, read_lightning_metrics
from hepmpm.pipeline import FinetuneRun, Pipeline
from hepmpm.studies.common import (
    LABEL_CURVES,
    SampleConfig,
    StudyConfig,
    StudyFolder,
    aggregated_section,
    curves,
    label_curves,
    paired_rows,
    pm,
    sample_paths,
    tagger_row,
    write_table,
)
from hepmpm.studies.domain_metrics import run_domain_metrics, shifted_scores
from hepmpm.studies.shifted import sf_column, shift_rows
from hepmpm.training.stages import Stage

VALUES = ("accuracy", "macro_auc", "mean_rejection_50")
MAIN = "pretrain"  #: the name of the main pre-training (variants: their own names)
RANDOM = "random"  #: the main recipe's backbone at random initialisation (no pre-training)
SHIPPED = "pretrained:"  #: prefix of a backbone shipped with hepmpm (hepmpm pretrained)


class Arm(StrictModel):
    """One arm: a fine-tuning mode, the pre-training it starts from, its own stage."""

    name: str = Field(description="e.g. scratch, frozen, finetune, finetune-order")
    mode: Literal["scratch", "frozen", "finetune"]
    pretraining: str | None = Field(
        None,
        description="'pretrain', a variant's name, 'random' or 'pretrained:NAME' (a shipped "
        "backbone); None for scratch",
    )
    finetune: Stage | None = Field(None, description="None: the study's finetune stage")
    overrides: list[str] = Field(
        default_factory=list, description="extra overrides of the stage (e.g. optimizer.lr=...)"
    )
    labels: list[int] | None = Field(None, description="its points (None: the study's labels)")
    seeds: list[int] | None = Field(None, description="its seeds (None: the study's seeds)")
    lrs: list[float] | None = Field(
        None,
        description="candidate learning rates: each is run at lr_selection_labels with the "
        "first seed, and the one of lowest validation loss is the arm's for every point",
    )
    lr_from: str | None = Field(
        None, description="use the learning rate another arm chose (a lever against it)"
    )
    base: str | None = Field(
        None,
        description="the arm the shifted table pairs this one with besides the reference "
        "(None: lr_from's); e.g. a backbone's continued pre-training against the backbone",
    )
    target: str | None = Field(
        None,
        description="a key of the study's targets: its skim is the arm's adaptation.target "
        "(the unlabelled jets its domain-adaptation levers read)",
    )


class LabelEfficiencyConfig(StudyConfig):
    """configs/studies/label_efficiency.yaml."""

    corpus: SampleConfig = Field(description="unlabelled pre-training sample")
    labelled: SampleConfig = Field(description="labelled sample: train (N), val, test splits")
    test_samples: dict[str, SampleConfig] = Field(
        default_factory=dict,
        description="name -> further labelled samples of the labelled sample's classes, every "
        "jet of which every arm is also tested on (e.g. data: the data preset)",
    )
    targets: dict[str, SampleConfig] = Field(
        default_factory=dict,
        description="name -> unlabelled target-domain samples (their labels never read) that "
        "arms name as target: adaptation.target of their fine-tuning",
    )
    domain_auc_jets: int = Field(
        0,
        ge=0,
        description="per run and test sample: the AUC of a linear classifier telling the "
        "labelled test split from the test sample on the tagger's embedding, on up to this "
        "many jets of each (0: not measured); columns domain_auc_NAME",
    )
    scale_factors: ScaleFactorConfig | None = Field(
        None,
        description="per run and test sample: data/simulation scale factors at mistag working "
        "points from the test sample's truth (None: not measured); columns sf_*_NAME",
    )
    labels: list[int] = Field(min_length=1, description="class-balanced labelled jets per point")
    variants: dict[str, list[str]] = Field(
        default_factory=dict, description="name -> overrides of the main pre-training (a lever)"
    )
    pretrain_on_labelled: list[str] = Field(
        default_factory=list,
        description="variants pre-trained on the corpus and the labelled sample together, "
        "whose class target counts the labelled sample's jets only (mpm.class_domains: its "
        "preset): MPM on data with the class on simulation. The pre-training then reads the "
        "labels of the labelled train split, a superset of every point's N",
    )
    pretrain_on_labelled_jets: list[str] = Field(
        default_factory=list,
        description="variants pre-trained on the labelled sample's own jets instead of the "
        "corpus, labels unused (its train split; its val split validates; its test split is "
        "never read): e.g. a backbone continued on simulation, the control of one continued "
        "on data",
    )
    continue_from: dict[str, str] = Field(
        default_factory=dict,
        description="variant -> the backbone (pretrained:NAME or a pre-training folder) whose "
        "pre-training it continues on the corpus instead of starting afresh, keeping its "
        "architecture, input statistics and masked-particle recipe (domain-adaptive "
        "pre-training: a shipped backbone continued on one's own data)",
    )
    arms: list[Arm] = Field(min_length=1)
    reference: str = Field("scratch", description="the arm the others are compared with")
    reference_envelope: list[str] = Field(
        default_factory=list,
        description="further from-scratch arms (e.g. scratch-stdin): the label-efficiency "
        "factor is also read off the best of them and the reference at each N",
    )
    ablation_labels: int | None = Field(None, description="N of the ablation table")
    lr_selection_labels: int | None = Field(
        None, description="N at which arms choose their learning rate (None: ablation_labels)"
    )

    def stages(self) -> dict[str, tuple[str, Stage]]:
        """The main stages, each variant's pre-training and each arm's fine-tuning."""
        found = super().stages()
        for name, overrides in self.variants.items():
            stage = Stage(
                config=self.pretrain.config, overrides=[*self.pretrain.overrides, *overrides]
            )
            found[f"variants.{name}"] = ("pretrain", stage)
        for i, arm in enumerate(self.arms):
            # A placeholder for the target's skim folder, made when the arm runs.
            target = None if arm.target is None else f"targets/{arm.target}"
            found[f"arms[{i}] ({arm.name})"] = ("finetune", arm_stage(arm, self.finetune, target))
        return found

    def model_post_init(self, _context: object) -> None:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique; got {names}")
        if self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not an arm ({', '.join(names)})")
        for name in self.reference_envelope:
            if name not in names:
                raise ValueError(f"reference_envelope: {name!r} is not an arm ({', '.join(names)})")
        known = {MAIN, RANDOM, *self.variants}
        for arm in self.arms:
            if arm.mode == "scratch" and arm.pretraining is not None:
                raise ValueError(f"arm {arm.name!r}: scratch takes no pretraining")
            shipped = (arm.pretraining or "").startswith(SHIPPED)
            if arm.mode != "scratch" and arm.pretraining not in known and not shipped:
                raise ValueError(
                    f"arm {arm.name!r}: pretraining must be one of {sorted(known)}, "
                    f"got {arm.pretraining!r}"
                )
        for name in self.pretrain_on_labelled:
            if name not in self.variants:
                raise ValueError(f"pretrain_on_labelled: {name!r} is not a variant")
            if self.corpus.preset == self.labelled.preset:
                raise ValueError(
                    "pretrain_on_labelled needs a corpus of another preset than the labelled "
                    "sample: the class target tells their jets apart by domain"
                )
        for key in ("continue_from", "pretrain_on_labelled_jets"):
            for name in getattr(self, key):
                if name not in self.variants:
                    raise ValueError(f"{key}: {name!r} is not a variant")
        if both := sorted(set(self.pretrain_on_labelled_jets) & set(self.pretrain_on_labelled)):
            raise ValueError(
                f"pretrain_on_labelled_jets: {both[0]!r} is also in pretrain_on_labelled"
            )
        if self.ablation_labels is not None and self.ablation_labels not in self.labels:
            raise ValueError(f"ablation_labels {self.ablation_labels} is not in labels")
        select = self.lr_selection_labels or self.ablation_labels
        if any(arm.lrs for arm in self.arms) and select not in self.labels:
            raise ValueError(
                "arms with lrs need lr_selection_labels (or ablation_labels) in labels"
            )
        for arm in self.arms:
            for key in ("lr_from", "base"):
                if getattr(arm, key) not in (None, *names):
                    raise ValueError(f"arm {arm.name!r}: {key} {getattr(arm, key)!r} is not an arm")
            if not set(arm.labels or []) <= set(self.labels):
                raise ValueError(f"arm {arm.name!r}: its labels must be among {self.labels}")
            if not set(arm.seeds or []) <= set(self.seeds):
                raise ValueError(f"arm {arm.name!r}: its seeds must be among {self.seeds}")
        for arm in self.arms:
            if arm.target is not None and arm.target not in self.targets:
                raise ValueError(
                    f"arm {arm.name!r}: target {arm.target!r} is not one of targets "
                    f"({', '.join(self.targets) or 'none'})"
                )
        samples = {"corpus": self.corpus, "labelled": self.labelled, **self.test_samples}
        samples |= {f"target {name}": sample for name, sample in self.targets.items()}
        seen: dict[tuple[str, int], str] = {}
        for name, sample in samples.items():
            other = seen.setdefault((sample.preset, sample.seed), name)
            if other != name:
                raise ValueError(f"{other} and {name} samples need different seeds (disjoint jets)")
        for name, sample in self.test_samples.items():
            if set(sample.classes) != set(self.labelled.classes):
                raise ValueError(f"test sample {name!r} must hold the labelled sample's classes")
        if self.scale_factors is not None:
            wanted = {*self.scale_factors.signals, self.scale_factors.background}
            missing = sorted(wanted - set(self.labelled.classes))
            if missing or not self.test_samples:
                raise ValueError(
                    f"scale_factors need test_samples and the labelled classes to hold "
                    f"{sorted(wanted)} (missing: {missing or 'none'})"
                )


def run(
    config: LabelEfficiencyConfig, out: Path, pipeline: Pipeline, report_only: bool = False
) -> Path:
    """Run (or complete) the study; returns ``summary.md``. ``report_only``: train nothing,
    write the tables of the runs complete so far and list the missing ones (a long study
    checked while it runs, or stopped before its end)."""
    folder = StudyFolder(out, config, "label-efficiency", pipeline, report_only)
    study = LabelEfficiencyRun(config, folder)
    rows = study.rows()
    return report(config, folder, rows, study.trained_backbones(), study.lr_rows)


class LabelEfficiencyRun:
    """One sitting of the study in its folder: the skims, pre-trainings and learning rates it
    has made so far (each made the first time a run needs it), and its runs.

    The fine-tunings run in two batches, each of independent runs (on Dask when the pipeline
    is distributed): every learning-rate candidate, then every run of the schedule; each run
    is tested once trained.
    """

    def __init__(self, config: LabelEfficiencyConfig, folder: StudyFolder) -> None:
        self.config = config
        self.folder = folder
        self.echo = folder.pipeline.echo
        self.labelled_files = sample_paths(folder.sample(config.labelled))
        self.labelled = folder.skim("labelled", self.labelled_files, config.labelled.preset)
        self.echo(f"skims: {self.labelled} (labels, val, test)")
        self.tests = {
            name: folder.skim(f"test-{name}", sample_paths(folder.sample(sample)), sample.preset)
            for name, sample in config.test_samples.items()
        }
        self.backbones: dict[str, Path] = {}
        self.targets: dict[str, Path] = {}
        self.chosen: dict[str, float] = {}  #: arm -> its learning rate
        self.lr_rows: list[dict[str, Any]] = []  #: every learning-rate candidate's run
        self._corpus: tuple[Path, list[Path]] | None = None

    def target(self, name: str) -> Path:
        """The skim of the target sample ``name``, made when the first arm needs it."""
        if name not in self.targets:
            sample = self.config.targets[name]
            files = sample_paths(self.folder.sample(sample))
            self.targets[name] = self.folder.skim(f"target-{name}", files, sample.preset)
        return self.targets[name]

    def corpus(self) -> tuple[Path, list[Path]]:
        """The corpus's skim and files, made when the first pre-training needs them (a study
        that only fine-tunes shipped backbones generates no corpus)."""
        if self._corpus is None:
            files = sample_paths(self.folder.sample(self.config.corpus))
            skim = self.folder.skim("corpus", files, self.config.corpus.preset)
            self.echo(f"skims: {skim} (pre-training)")
            self._corpus = skim, files
        return self._corpus

    def backbone(self, name: str | None) -> Path | None:
        """The pre-training ``name`` (run the first time an arm needs it)."""
        config, folder = self.config, self.folder
        if name is None:
            return None
        if name.startswith(SHIPPED):
            from hepmpm.pretrained import resolve_backbone

            return resolve_backbone(name)
        if name not in self.backbones and name == RANDOM:
            self.backbones[name] = folder.random_backbone(name, self.corpus()[0])
        elif name not in self.backbones:
            extra = [f"probe.skim={self.labelled}", *config.variants.get(name, [])]
            if name in config.pretrain_on_labelled_jets:
                skim = self.labelled  # the pre-training reads its train split, never its test
            elif name in config.pretrain_on_labelled:
                # Each file's domain is its sample's preset; last, so that nothing lets the
                # class target read the corpus's truth.
                files = self.corpus()[1] + self.labelled_files
                skim = folder.skim("corpus+labelled", files, None)
                extra.append(f"mpm.class_domains=[{config.labelled.preset}]")
            else:
                skim = self.corpus()[0]
            init = config.continue_from.get(name)
            self.backbones[name] = folder.pretrain(name, skim, extra, init)
            self.echo(f"pre-trained {name}: {self.backbones[name]}")
        return self.backbones[name]

    def trained_backbones(self) -> dict[str, Path]:
        """The study's own pre-trainings that are complete (for the online-probe table)."""
        return {
            n: p
            for n, p in self.backbones.items()
            if n != RANDOM and (p / "backbone.json").is_file()
        }

    def finetune_run(self, arm: Arm, n: int, seed: int, lr: float | None) -> FinetuneRun:
        """The run of ``arm`` on ``n`` labels with ``seed`` (and learning rate ``lr``), its
        pre-training and target skim made first."""
        config = self.config
        target = None if arm.target is None else str(self.target(arm.target))
        stage = arm_stage(arm, config.finetune, target)
        if lr is not None:
            stage = Stage(config=stage.config, overrides=[*stage.overrides, f"optimizer.lr={lr}"])
        return self.folder.run(
            run_name(arm.name, n, seed, lr), self.labelled, self.backbone(arm.pretraining),
            arm.mode, n, config.labelled.classes, seed, stage,
        )  # fmt: skip

    def finetune(self, runs: Sequence[FinetuneRun]) -> list[dict[str, Any] | None]:
        """The metrics of ``runs`` (None: not run, report-only), with the test samples'. Run
        here, each run is tested as soon as it is trained (a study stopped part-way has the
        figures of every run it trained); on Dask, the batch is trained first."""
        if self.folder.pipeline.distributed:
            found = self.folder.finetune(runs)
            return [self.tested(run, m) for run, m in zip(runs, found, strict=True)]
        return [self.tested(run, self.folder.finetune([run])[0]) for run in runs]

    def tested(self, run: FinetuneRun, metrics: dict[str, Any] | None) -> dict[str, Any] | None:
        """``metrics`` of the trained ``run`` with its tests on the test samples (None: not run,
        report-only)."""
        config, report_only = self.config, self.folder.report_only
        if metrics is None or not self.tests:
            return metrics
        metrics = {**metrics, "other_tests": other_tests(run.out, self.tests, report_only)}
        if config.domain_auc_jets or config.scale_factors:
            metrics["domain_tests"] = run_domain_metrics(
                run.out, self.labelled, self.tests, config.domain_auc_jets,
                config.scale_factors, report_only,
            )  # fmt: skip
        return metrics

    def choose_learning_rates(self) -> None:
        """Run every arm's learning-rate candidates at ``lr_selection_labels`` with the first
        seed; each arm's is the candidate of lowest best validation loss."""
        config = self.config
        n, seed = config.lr_selection_labels or config.ablation_labels, config.seeds[0]
        # The arms in the order the schedule first needs their rate (that of the learning-rate
        # table), an arm with lr_from the rate of the arm it names.
        by_name = {arm.name: arm for arm in config.arms}
        needed = dict.fromkeys(self.rate_arm(arm).name for arm, _, _ in schedule(config))
        candidates = [(by_name[name], lr) for name in needed for lr in by_name[name].lrs or []]
        found = self.finetune([self.finetune_run(arm, n, seed, lr) for arm, lr in candidates])
        scores: dict[str, dict[float, float]] = {}
        for (arm, lr), metrics in zip(candidates, found, strict=True):
            if metrics is None:  # report_only: not run yet
                continue
            scores.setdefault(arm.name, {})[lr] = metrics.get("best_val_loss") or math.inf
            self.lr_rows.append(
                {"arm": arm.name, "lr": lr, "labels": n, "seed": seed,
                 "best_val_loss": scores[arm.name][lr],
                 "test_accuracy": metrics["test"]["accuracy"]}
            )  # fmt: skip
        for arm, by_lr in scores.items():
            self.chosen[arm] = min(by_lr, key=by_lr.get)
            self.echo(f"  {arm}: learning rate {self.chosen[arm]:g} (lowest validation loss)")
        for row in self.lr_rows:
            row["chosen"] = row["lr"] == self.chosen[row["arm"]]

    def rate_arm(self, arm: Arm) -> Arm:
        """The arm whose learning rate ``arm`` uses: itself, or the one its ``lr_from`` names
        (in turn)."""
        while arm.lr_from is not None:
            arm = next(a for a in self.config.arms if a.name == arm.lr_from)
        return arm

    def learning_rate(self, arm: Arm) -> float | None:
        """The arm's learning rate (None: its stage's; or not chosen yet, report-only)."""
        return self.chosen.get(self.rate_arm(arm).name)

    def rows(self) -> list[dict[str, Any]]:
        """The results table: one row per complete run of the schedule."""
        config = self.config
        self.choose_learning_rates()
        schedule_runs, missing = [], []
        for arm, n, seed in schedule(config):
            lr = self.learning_rate(arm)
            if lr is None and (arm.lrs or arm.lr_from):
                missing.append(f"{arm.name} N={n} seed {seed}")  # its rate is not chosen yet
            else:
                schedule_runs.append((arm, n, seed, lr))
        found = self.finetune([self.finetune_run(*run) for run in schedule_runs])
        rows = []
        for (arm, n, seed, lr), metrics in zip(schedule_runs, found, strict=True):
            if metrics is None:
                missing.append(f"{arm.name} N={n} seed {seed}")
                continue
            row = {
                "arm": arm.name, "labels": n, "seed": seed, "lr": lr,
                "best_step": metrics.get("best_step"), **tagger_row(metrics["test"]),
            }  # fmt: skip
            for name, test in metrics.get("other_tests", {}).items():
                row |= {f"{key}_{name}": value for key, value in tagger_row(test).items()}
            row |= domain_columns(config, metrics)
            self.echo(f"  {arm.name:22s} N={n:<6d} seed {seed}: accuracy {row['accuracy']:.3f}")
            rows.append(row)
        if missing:
            self.echo(f"not run yet ({len(missing)}): {', '.join(missing)}")
        return rows


def run_name(arm: str, labels: int, seed: int, lr: float | None) -> str:
    """The folder of one run under ``work/runs/``: ``ARM[/lrLR]/nN/seedS`` (the learning rate
    when the arm picks one, so that each candidate keeps its own run)."""
    rate = "" if lr is None else f"lr{lr:g}/"
    return f"{arm}/{rate}n{labels}/seed{seed}"


def other_tests(run_dir: Path, skims: dict[str, Path], report_only: bool) -> dict[str, Any]:
    """The metrics of the tagger in ``run_dir`` on every jet of each of ``skims`` (name -> skim
    folder of a test sample), kept in ``run_dir/test_NAME.json`` (the scores too, for the scale
    factors: :func:`~hepmpm.studies.domain_metrics.shifted_scores`); ``report_only``: only
    those."""
    from hepmpm.evaluation.metrics import classification_metrics
    from hepmpm.models.store import load_run_tagger

    found, loaded = {}, None
    for name, skim in skims.items():
        path = run_dir / f"test_{name}.json"
        if not path.is_file() and not report_only:
            loaded = loaded or load_run_tagger(run_dir)  # once per run, not once per sample
            tagger, record = loaded
            scored = shifted_scores(run_dir, name, skim, tagger, record["labels"])
            write_json_atomic(path, classification_metrics(*scored))
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def arm_stage(arm: Arm, default: Stage, target: str | None = None) -> Stage:
    """The fine-tuning stage of ``arm``: its own (or ``default``) with its overrides last, and
    ``adaptation.target`` the skim folder ``target`` of its unlabelled target jets (if any)."""
    stage = arm.finetune or default
    adaptation = [] if target is None else [f"adaptation.target={target}"]
    return Stage(config=stage.config, overrides=[*stage.overrides, *arm.overrides, *adaptation])


#: What metrics.json says of an arm's levers (hepmpm.training.adapted): study columns.
LEVER_COLUMNS = ("dctr_ess", "dctr_ess_fraction", "dctr_classifier_auc", "dann_domain_auc")
#: Columns of :func:`domain_columns` (aggregated over seeds like the accuracies).
DOMAIN_PREFIXES = (*LEVER_COLUMNS, "domain_auc_", "abs_sf_m1_", "sf_")


def domain_columns(config: LabelEfficiencyConfig, metrics: dict[str, Any]) -> dict[str, float]:
    """A run's columns of the domain measures: its levers' (NaN for an arm without them), and
    per test sample the embedding's domain AUC and the scale factors, when the study asks."""
    row: dict[str, float] = {}
    if any(arm.target is not None for arm in config.arms):
        levers = metrics.get("adaptation", {})
        row |= {key: float(levers.get(key, math.nan)) for key in LEVER_COLUMNS}
    measured = metrics.get("domain_tests", {})
    names = (["domain_auc"] if config.domain_auc_jets else []) + (
        config.scale_factors.columns() if config.scale_factors else []
    )
    for sample in config.test_samples if names else ():
        values = nan_values(names) | measured.get(sample, {})
        row |= {f"{key}_{sample}": value for key, value in values.items()}
    return row


def schedule(config: LabelEfficiencyConfig) -> list[tuple[Arm, int, int]]:
    """Every (arm, labels, seed) run in the order that lands the headline first: the arms of
    every point and seed (scratch, finetune), seed by seed, then the arms of a few points (the
    references and levers); each pre-training runs when the first arm needs it."""
    runs = [
        (arm, n, seed)
        for arm in config.arms
        for seed in arm.seeds or config.seeds
        for n in arm.labels or config.labels
    ]
    position = {id(arm): i for i, arm in enumerate(config.arms)}

    def key(run: tuple[Arm, int, int]) -> tuple[bool, int, int, int]:
        arm, n, seed = run
        restricted = arm.seeds is not None or arm.labels is not None
        return restricted, seed, n, position[id(arm)]

    return sorted(runs, key=key)


def labels_to_match(
    points: Sequence[float], reference: Sequence[float], value: float
) -> float | None:
    """Labels the reference arm needs to reach ``value``: linear interpolation of its accuracy
    ``reference`` [K] in log(labels) over ``points`` [K] (ascending); ``None`` when it never
    does within the points, the first point when it already does there."""
    if value <= reference[0]:
        return float(points[0])
    for (n0, a0), (n1, a1) in zip(
        zip(points, reference, strict=True), zip(points[1:], reference[1:], strict=True),
        strict=False,
    ):  # fmt: skip
        if a0 < value <= a1:
            t = (value - a0) / (a1 - a0)
            return float(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))))
    return None


def _match_text(
    points: Sequence[float], ref: Sequence[float], n: int, value: float
) -> tuple[str, str]:
    """The labels the curve ``ref`` [K] over ``points`` needs to reach ``value``, and that over
    ``n``, as table text (``> max`` when it never does, ``<=`` its first point when that does)."""
    match = labels_to_match(points, list(ref), value)
    if match is None:
        return f"> {points[-1]}", f"> {points[-1] / n:.3g}"
    if value <= ref[0]:  # the curve's first point already matches: an upper bound
        return f"<= {points[0]}", f"<= {points[0] / n:.3g}"
    return f"{match:.0f}", f"{match / n:.2f}"


def efficiency_rows(
    summary: Sequence[dict[str, Any]], reference: str, envelope: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """For every arm and N: the reference arm's labels to match its mean accuracy, and the
    factor over N (``> max`` when the reference never gets there). With ``envelope`` (further
    from-scratch arms), also the labels the best of the reference and those arms at each N
    needs (columns ``best_scratch_*``): the factor against the strongest baseline."""
    points, ys = curves(summary, "arm", "labels", "accuracy")
    if reference not in ys:
        return []
    references = [reference, *(a for a in envelope if a in ys)]

    def best_curve(arms: Sequence[str]) -> np.ndarray:
        """The best mean accuracy of ``arms`` at each N; more labels never hurt, and a point
        an arm did not run (NaN) is skipped (fmax)."""
        return np.fmax.accumulate(np.fmax.reduce([np.asarray(ys[a][0], float) for a in arms]))

    ref, best = best_curve([reference]), best_curve(references)
    rows = []
    for arm, (means, _) in ys.items():
        if arm in references:
            continue
        for n, value in zip(points, means, strict=True):
            if math.isnan(value):
                continue
            needed, factor = _match_text(points, ref, n, value)
            row = {"arm": arm, "labels": n, "accuracy": value,
                   f"{reference}_labels_to_match": needed, "factor": factor}  # fmt: skip
            if envelope:
                needed, factor = _match_text(points, best, n, value)
                row |= {"best_scratch_labels_to_match": needed, "best_scratch_factor": factor}
            rows.append(row)
    return rows


def ablation_rows(
    summary: Sequence[dict[str, Any]], config: LabelEfficiencyConfig
) -> list[dict[str, Any]]:
    """Every arm at ``ablation_labels``: its pre-training's overrides and the accuracy
    difference to the reference arm (mean ± combined std when there are several seeds)."""
    n = config.ablation_labels
    if n is None:
        return []
    table = {(a["arm"], a["labels"]): a for a in summary}
    ref = table.get((config.reference, n))
    if ref is None:
        return []
    rows = []
    for arm in config.arms:
        entry = table.get((arm.name, n))
        if entry is None:
            continue
        lever = (
            "random init, not pre-trained"
            if arm.pretraining == RANDOM
            else (" ".join(config.variants.get(arm.pretraining or "", [])) or "-")
        )
        diff = entry["accuracy_mean"] - ref["accuracy_mean"]
        spread = math.hypot(entry["accuracy_std"], ref["accuracy_std"])
        rows.append(
            {
                "arm": arm.name,
                "mode": arm.mode,
                "pretraining": arm.pretraining or "-",
                "lever": lever,
                "finetune_overrides": " ".join(arm.overrides) or "-",
                "seeds": entry["seeds"],
                "accuracy": pm(entry["accuracy_mean"], entry["accuracy_std"]),
                f"minus_{config.reference}": f"{diff:+.3f}",
                "spread": f"{spread:.3f}",
            }
        )
    return rows


def probe_rows(backbones: dict[str, Path]) -> list[dict[str, Any]]:
    """Each pre-training's last online-probe accuracy, its random twin's, and the best."""
    rows = []
    for name, folder in backbones.items():
        metrics = read_lightning_metrics(sorted(folder.glob("logs/version_*/metrics.csv")))
        if "probe/acc" not in metrics:
            continue
        steps, acc = metrics["probe/acc"]
        random = metrics["probe/acc_random"][1][-1]
        best = int(np.argmax(acc))
        rows.append(
            {
                "pretraining": name,
                "steps": int(steps[-1]),
                "probe_acc_last": float(acc[-1]),
                "probe_acc_best": float(acc[best]),
                "best_step": int(steps[best]),
                "probe_acc_random": float(random),
                "probe_acc_random_std": float(metrics["probe/acc_random_std"][1][-1])
                if "probe/acc_random_std" in metrics
                else None,
                "gain_last": float(acc[-1] - random),
            }
        )
    return rows


def report(
    config: LabelEfficiencyConfig,
    folder: StudyFolder,
    rows: list[dict[str, Any]],
    backbones: dict[str, Path],
    lr_rows: list[dict[str, Any]],
) -> Path:
    """Tables, plots and the summary page (``lr_rows``: each learning-rate candidate's run)."""
    out = folder.root
    others = [f"{v}_{name}" for name in config.test_samples for v in VALUES]
    values = [*VALUES, *(v for v in others if rows and all(v in row for row in rows))]
    domains = [n for n in config.test_samples if f"accuracy_{n}" in values]
    plotted = [*LABEL_CURVES, *((f"accuracy_{n}", f"test accuracy on {n}") for n in domains)]
    measures = [c for c in (rows[0] if rows else {}) if c.startswith(DOMAIN_PREFIXES)]
    summary, figures = label_curves(out, rows, [*values, *measures], plotted)
    efficiency = efficiency_rows(summary, config.reference, config.reference_envelope)
    paired = paired_rows(rows, config.reference)
    ablation = ablation_rows(summary, config)
    probes = probe_rows(backbones)
    tables = (("label_efficiency", efficiency), ("paired", paired), ("ablation", ablation))
    for name, table in tables:
        if table:
            write_table(out / name, table)
    sections = [Section("Setup", text=[_setup_text(config)])]
    if lr_rows:
        write_table(out / "learning_rates", lr_rows)
        sections.append(
            _table_section("Learning rate of each arm (lowest validation loss)", lr_rows)
        )
    sections.append(
        aggregated_section("Results (test split)", summary, ("arm", "labels"), values, [], figures)
    )
    shown = [c for c in measures if not c.startswith(("sf_", "dctr_ess_fraction"))]
    if shown:
        title = "Domain measures (embedding AUC, levers, |SF - 1| from the pseudo-data's truth)"
        sections.append(aggregated_section(title, summary, ("arm", "labels"), shown))
    shifted = _shifted_rows(config, rows)
    if shifted:
        write_table(out / "shifted", shifted)
        title = (
            "Simulation to the shifted samples (mean ± std over seeds; differences paired "
            f"seed by seed; |SF - 1|: {shifted_sf_text(config)}; ratios: to {config.reference}'s)"
        )
        sections.append(_table_section(title, shifted))
    if efficiency:
        sections.append(_table_section("Label-efficiency factor", efficiency))
    if paired:
        title = f"Paired differences to {config.reference} (same seed: same labelled jets)"
        sections.append(_table_section(title, paired))
    if ablation:
        sections.append(_table_section(f"Ablation at N = {config.ablation_labels}", ablation))
    if probes:
        write_table(out / "probe", probes)
        runs = {n: sorted(p.glob("logs/version_*/metrics.csv")) for n, p in backbones.items()}
        figure = probe_curves(runs, out / "probe.png")
        sections.append(_table_section("Online probe of each pre-training", probes, [figure]))
    markdown, _ = write_page(out, "summary", "Label efficiency of pre-training", sections)
    return markdown


def _shifted_rows(config: LabelEfficiencyConfig, rows: list[dict[str, Any]]) -> list[dict]:
    """:func:`~hepmpm.studies.shifted.shift_rows` of the study's shifted test samples, each
    lever arm also against its ``base`` (default: the arm it takes its learning rate from)."""
    if not config.test_samples:
        return []
    bases = {arm.name: base for arm in config.arms if (base := arm.base or arm.lr_from)}
    sf = config.scale_factors
    column = sf_column(sf.signals, sf.mistag) if sf else None
    return shift_rows(rows, list(config.test_samples), config.reference, bases, column)


def shifted_sf_text(config: LabelEfficiencyConfig) -> str:
    """Which scale factor the shifted table's |SF - 1| is."""
    sf = config.scale_factors
    if sf is None or not sf.signals or not sf.mistag:
        return "none measured"
    return f"{sf.signals[0]} efficiency at {sf.mistag[0]:.0%} {sf.background} mistag"


def _table_section(
    title: str, rows: Sequence[dict[str, Any]], figures: Sequence[Path] = ()
) -> Section:
    header = list(rows[0])
    return Section(title, table=(header, [list(row.values()) for row in rows]), figures=figures)


def _setup_text(config: LabelEfficiencyConfig) -> str:
    c, lab = config.corpus, config.labelled
    n_corpus = c.jets_per_class * len(c.classes)
    new = [name for name in lab.classes if name not in c.classes]
    transfer = f" (new to the pre-training: {', '.join(new)})" if new else ""
    tested = "".join(
        f"Also tested on every jet of {name}: {t.jets_per_class} {t.preset} jets per class "
        f"(seed {t.seed}), columns *_{name}. "
        for name, t in config.test_samples.items()
    )
    if config.pretrain_on_labelled:
        joint = (
            f"{', '.join(config.pretrain_on_labelled)}: pre-trained on the corpus and the "
            f"labelled sample together, the class target on the labelled ({lab.preset}) jets "
            f"only (all of its train split: more labels than N). "
        )
    else:
        joint = ""
    if config.pretrain_on_labelled_jets:
        joint += (
            f"{', '.join(config.pretrain_on_labelled_jets)}: pre-trained on the labelled "
            f"sample's train jets instead of the corpus, labels unused. "
        )
    continued = "".join(
        f"{name}: continues the pre-training of {init}. "
        for name, init in config.continue_from.items()
    )
    targets = "".join(
        f"Unlabelled target jets of the levers, {name}: {t.jets_per_class} {t.preset} jets per "
        f"class (seed {t.seed}; labels never read). "
        for name, t in config.targets.items()
    )
    return (
        f"{targets}Pre-training corpus: {n_corpus} {c.preset} jets of {', '.join(c.classes)} "
        f"(seed {c.seed}), no labels (a class target uses theirs); {config.pretrain.config} "
        f"{' '.join(config.pretrain.overrides)}. Labelled sample: {lab.jets_per_class} "
        f"{lab.preset} jets per class of {', '.join(lab.classes)}{transfer} (seed {lab.seed}): "
        f"N class-balanced train jets per point, "
        f"its val split picks each arm's best step, its test split is shared by every arm. "
        f"{joint}{continued}{tested}Fine-tuning {config.finetune.config} "
        f"{' '.join(config.finetune.overrides)}; "
        f"mean ± std over {len(config.seeds)} seeds."
    )
