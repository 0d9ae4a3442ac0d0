"""What the studies share: typed configs, the study folder (where each step of
:mod:`hepmpm.pipeline` writes: samples, skims, pre-trainings, fine-tuning runs), result tables
(one row per arm × point × seed, then mean ± std) and the summary page.

A study folder ``OUT`` holds the results (``results.csv/json``, ``aggregated.csv/json``),
the plots, ``summary.md``/``summary.html`` and ``work/``: generated samples (unless
``samples_dir`` points elsewhere), skims, pre-training and one folder per fine-tuning run.
Every step is skipped on a re-run once its final file exists (a generated sample, a skim's
manifest, a backbone's ``backbone.json``, a run's ``metrics.json``), so an interrupted study
goes on where it stopped; ``OUT/study.json`` records the config. A config that only adds
seeds, label counts, arms, variants or test samples extends the folder (the finished runs are
kept, the record takes the new config: :func:`extension_conflict`); one that changes what a
finished run computed is refused.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import Field

from hepmpm.atomic import atomic_path, write_json_atomic
from hepmpm.config import (
    StrictModel,
    apply_overrides,
    deep_merge,
    load_yaml_with_inheritance,
    packaged_config_path,
    parse_config,
    resolve_config,
)
from hepmpm.errors import ConfigError, HepmpmError
from hepmpm.evaluation.metrics import mean_rejection
from hepmpm.evaluation.pages import Section
from hepmpm.generate.sample import GeneratedSample
from hepmpm.jetclass import CLASS_NAMES
from hepmpm.pipeline import FinetuneRun, Pipeline
from hepmpm.records import claim_folder
from hepmpm.training.stages import Stage, check_stage

StudyT = TypeVar("StudyT", bound="StudyConfig")

#: Top-level key of a study YAML whose mapping is merged over the rest by ``--tiny``.
TINY_KEY = "tiny"
#: A ``tiny:`` section's key naming the shared tiny-mode settings it is merged over.
TINY_INHERIT_KEY = "inherit"


class SampleConfig(GeneratedSample):
    """A study's generated sample: a :class:`~hepmpm.generate.sample.GeneratedSample` with its
    own classes and seed (a study draws several samples)."""

    classes: list[str]
    jets_per_class: int = Field(ge=10)
    seed: int = Field(1, ge=0)

    def model_post_init(self, _context: object) -> None:
        unknown = [c for c in self.classes if c not in CLASS_NAMES]
        if unknown or not self.classes:
            raise ValueError(f"classes must be among {list(CLASS_NAMES)}; got {unknown or 'none'}")


class StudyConfig(StrictModel):
    """Keys every study has (configs/studies/*.yaml); each study adds its own."""

    seeds: list[int] = Field(min_length=1, description="fine-tuning seeds; plots show mean ± std")
    workers: int = Field(2, ge=1, description="generator processes")
    feature_set: Literal["part17", "mpm7id"] = "part17"
    samples_dir: str | None = Field(
        None, description="folder of generated samples, shareable across studies (null: OUT/work)"
    )
    pretrain_seed: int = Field(0, ge=0, description="seed of the (single) pre-training")
    tokenizer: Stage | None = Field(None, description="tokenizer fit, when a target needs one")
    pretrain: Stage
    finetune: Stage

    def stages(self) -> dict[str, tuple[str, Stage]]:
        """Every training stage the study will run: where (a config key) → (kind, stage)."""
        found = {"pretrain": ("pretrain", self.pretrain), "finetune": ("finetune", self.finetune)}
        if self.tokenizer is not None:
            found["tokenizer"] = ("tokenizer", self.tokenizer)
        return found


def load_study_config(
    model: type[StudyT], path: Path, overrides: Sequence[str] = (), tiny: bool = False
) -> StudyT:
    """Read a study YAML (with ``inherit:``); with ``tiny`` merge its ``tiny:`` section over
    it; apply ``a.b=value`` overrides last. Unknown keys are errors naming the file, and every
    stage's config and overrides are resolved before anything runs."""
    data = apply_overrides(study_yaml(Path(path), tiny), list(overrides))
    config = parse_config(model, data, f"study config {path}")
    for where, (kind, stage) in config.stages().items():
        check_stage(kind, stage.config, stage.overrides, f"study config {path}, {where}")
    return config


def study_yaml(path: Path, tiny: bool = False) -> dict[str, Any]:
    """The settings of the study YAML ``path`` (with ``inherit:``), before they are checked;
    with ``tiny``, its ``tiny:`` section (see :func:`tiny_settings`) merged over the rest."""
    data = load_yaml_with_inheritance(path)
    tiny_section = data.pop(TINY_KEY, None)
    if tiny:
        if not isinstance(tiny_section, dict):
            raise HepmpmError(f"config {path} has no '{TINY_KEY}:' section for --tiny")
        data = deep_merge(data, tiny_settings(tiny_section, path))
    return data


def tiny_settings(section: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ``tiny:`` section of the study config ``path``, merged over the shared tiny-mode
    settings it names with ``inherit: FILE`` (beside ``path``, else packaged in
    ``configs/studies/``, e.g. ``tiny/label_efficiency.yaml``): seconds-scale samples and
    training that several studies share are said once."""
    if TINY_INHERIT_KEY not in section:
        return section
    section = dict(section)
    parent = section.pop(TINY_INHERIT_KEY)
    if not isinstance(parent, str):
        raise ConfigError(f"config {path}: key '{TINY_KEY}.{TINY_INHERIT_KEY}' must be a file name")
    beside = path.parent / parent
    shared = beside if beside.is_file() else packaged_config_path("studies", parent)
    if not shared.is_file():
        raise ConfigError(
            f"config {path}: '{TINY_KEY}.{TINY_INHERIT_KEY}: {parent}' is neither beside it "
            f"({beside}) nor a packaged study file ({shared})"
        )
    return deep_merge(load_yaml_with_inheritance(shared), section)


#: Keys that say where or how fast a study runs, or what its report compares with, not what a
#: run computes: a folder's later sittings may change them.
FREE_KEYS = (
    "workers", "samples_dir", "reference", "reference_envelope", "ablation_labels", "base"
)  # fmt: skip
#: Lists that may grow between sittings (further seeds, label counts: new runs, none changed).
GROWING_KEYS = ("seeds", "labels")
#: Mappings that may gain entries (a further variant or test sample), each old one unchanged.
GAINING_KEYS = ("variants", "test_samples", "targets")
#: Settings of some variants (variant -> value, or a list of variants): they may gain entries for
#: new variants only (absent from a folder made before the key existed: empty).
VARIANT_KEYS = ("continue_from", "pretrain_on_labelled_jets")


def extension_conflict(previous: dict[str, Any], settings: dict[str, Any]) -> str | None:
    """The first key whose change would make a finished run of a study folder made with
    ``previous`` mean something else under ``settings``; None when ``settings`` only add
    seeds, label counts, arms, variants or test samples (a study extended in a later sitting).
    The first seed stays first: arms choose their learning rate with it."""
    for key in sorted(set(previous) | set(settings)):
        before, after = previous.get(key), settings.get(key)
        if before == after or key in FREE_KEYS:
            continue
        if key in GROWING_KEYS and _grows(before, after):
            continue
        if key in GAINING_KEYS and _gains(before, after):
            continue
        if key in VARIANT_KEYS and _gains_new_variants(before, after, previous.get("variants")):
            continue
        if key == "arms" and isinstance(before, list) and isinstance(after, list):
            # Each old arm kept, by the same rule: its own seeds and labels may grow.
            arms = {arm["name"]: arm for arm in after}
            if all(
                arm["name"] in arms and extension_conflict(arm, arms[arm["name"]]) is None
                for arm in before
            ):
                continue
        return key
    return None


def _grows(before: Any, after: Any) -> bool:
    if not (isinstance(before, list) and isinstance(after, list) and before):
        return False
    return set(before) <= set(after) and after[:1] == before[:1]


def _gains(before: Any, after: Any) -> bool:
    mappings = isinstance(before, dict) and isinstance(after, dict)
    return mappings and all(after.get(key) == value for key, value in before.items())


def _gains_new_variants(before: Any, after: Any, old_variants: Any) -> bool:
    """Whether a per-variant setting only gained entries, each for a variant the folder did not
    have (a variant already pre-trained keeps how it was pre-trained)."""

    def mapping(value: Any) -> Any:
        return dict.fromkeys(value, True) if isinstance(value, list) else value or {}

    before, after = mapping(before), mapping(after)
    return _gains(before, after) and not (set(after) - set(before)) & set(old_variants or {})


class StudyFolder:
    """The output folder of a study and where its steps write (see the module docstring); the
    steps are the ``pipeline``'s."""

    def __init__(
        self,
        out: Path,
        config: StudyConfig,
        name: str,
        pipeline: Pipeline,
        report_only: bool = False,
    ) -> None:
        #: Start no training: runs not yet complete are reported missing (``None`` metrics).
        self.report_only = report_only
        self.pipeline = pipeline
        self.root = Path(out)
        self.config = config
        self.work = self.root / "work"
        self.samples = Path(config.samples_dir) if config.samples_dir else self.work / "samples"
        settings = config.model_dump(mode="json")
        claim_folder(self.root, "study.json", f"study {name}", settings, extension_conflict)

    def sample(self, spec: SampleConfig) -> dict[str, list[Path]]:
        """Generate (or complete) ``spec``; its ROOT files per class (several when a class has
        more jets than one file holds). Samples of the same preset,
        size and seed share one folder, whatever classes each study asks for (a file's jets
        depend only on the seed, class and file number). Not safe for concurrent studies.
        ``report_only``: generate nothing (a study checked while it generates)."""
        from hepmpm.generate.preset import load_preset
        from hepmpm.generate.sample import SampleRequest

        folder = self.samples / f"{spec.preset}-j{spec.jets_per_class}-s{spec.seed}"
        # Ask for the classes already there too: the sample's manifest lists what a request
        # made, so a request of fewer classes would forget (and later remake) the others.
        record = folder / "generation.json"
        known = json.loads(record.read_text())["files"].values() if record.is_file() else []
        classes = dict.fromkeys([*(entry["class"] for entry in known), *spec.classes])
        request = SampleRequest(
            preset=load_preset(spec.preset),
            classes=tuple(classes),
            jets_per_class=spec.jets_per_class,
            seed=spec.seed,
            naming="pfnano",
            out=folder,
            workers=self.config.workers,
        )
        if self.report_only:  # generate nothing: the files the sample holds when complete
            tasks = request.tasks()
            return {c: [Path(t.path) for t in tasks if t.class_name == c] for c in spec.classes}
        manifest = self.pipeline.generate(request)
        files: dict[str, list[Path]] = {}
        for name, entry in sorted(manifest["files"].items()):
            files.setdefault(entry["class"], []).append(folder / name)
        return {c: files[c] for c in spec.classes}

    def skim(self, name: str, files: Iterable[Path], domain: str | None) -> Path:
        """Skim ``files`` into ``work/skims/NAME`` (kept when complete with the same inputs);
        ``domain`` None: each file's is the preset of the sample it belongs to."""
        from hepmpm.skim import SkimRequest

        out = self.work / "skims" / name
        if self.report_only:  # skim nothing: what reads it later reads only finished runs
            return out
        request = SkimRequest(
            inputs=sorted(files), out=out, feature_set=self.config.feature_set, domain=domain
        )
        self.pipeline.skim(request)
        return out

    def random_backbone(self, name: str, skim: Path) -> Path:
        """The pre-training stage's backbone at random initialisation (``pretrain_seed``) in
        ``work/pretrain/NAME``: the control arm of what pre-training adds."""
        out = self.work / "pretrain" / name
        if self.report_only:
            return out
        return self.pipeline.random_backbone(
            self.config.pretrain, skim, out, self.config.pretrain_seed
        )

    def pretrain(
        self, name: str, skim: Path, extra_overrides: Sequence[str] = (), init: str | None = None
    ) -> Path:
        """Pre-train once on ``skim`` (labels unused) into ``work/pretrain/NAME``, fitting the
        study's tokenizer first when its targets need tokens; kept once ``backbone.json``
        exists. ``extra_overrides`` follow the stage's own (a variant's lever, the probe's
        skim). ``init``: continue the pre-training of that backbone (``pretrained:NAME`` or a
        folder) with its architecture and recipe (:func:`~hepmpm.training.pretrain.
        continued_config`) instead of starting afresh."""
        from hepmpm.models.mpm import TOKEN_TARGETS
        from hepmpm.training.pretrain import PretrainConfig, continued_config

        out = self.work / "pretrain" / name
        if (out / "backbone.json").is_file() or self.report_only:
            return out
        stage = self.config.pretrain
        overrides = [
            f"trainer.seed={self.config.pretrain_seed}",
            *stage.overrides,
            *extra_overrides,
        ]
        if init is None:
            config = resolve_config(PretrainConfig, stage.config, "pretrain", overrides)
        else:
            config = continued_config(stage.config, init, overrides)
        tokenizer = None  # without a tokenizer: stage, run_pretrain names what is missing
        if self.config.tokenizer is not None and set(config.mpm.targets) & set(TOKEN_TARGETS):
            # Every pre-training with a token target shares it: its variants then differ by
            # their lever only.
            tokenizer = self.pipeline.tokenizer(
                self.config.tokenizer, skim, self.work / "tokenizer"
            )
        self.pipeline.pretrain(config, skim, out, init=init, tokenizer=tokenizer)
        return out

    def run(
        self,
        name: str,
        skim: Path,
        backbone: Path | None,
        mode: str,
        labels: int | None,
        classes: list[str],
        seed: int,
        stage: Stage | None = None,
    ) -> FinetuneRun:
        """The fine-tuning run ``work/runs/NAME``; ``stage``: its stage (default: the
        study's)."""
        return FinetuneRun(
            stage=stage or self.config.finetune,
            skim=skim,
            out=self.work / "runs" / name,
            backbone=backbone,
            mode=mode,
            labels=labels,
            classes=classes,
            seed=seed,
        )

    def finetune(self, runs: Sequence[FinetuneRun]) -> list[dict[str, Any] | None]:
        """The metrics of every run (:func:`~hepmpm.training.finetune.run_finetune`'s), in
        order, running those not complete (with ``report_only``: ``None`` for those)."""
        if self.report_only:
            return [json.loads(r.done.read_text()) if r.done.is_file() else None for r in runs]
        return list(self.pipeline.finetune(runs))


def sample_paths(files: dict[str, list[Path]], classes: Iterable[str] | None = None) -> list[Path]:
    """Every file of ``classes`` (default: all) of a :meth:`StudyFolder.sample` result."""
    return [path for c in (files if classes is None else classes) for path in files[c]]


def tagger_row(test: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of a test evaluation: accuracy, macro AUC, mean QCD rejection at
    50% signal efficiency and mean one-vs-QCD AUC."""
    aucs = [
        e["auc_vs_qcd"] for n, e in test["per_class"].items() if e.get("auc_vs_qcd") is not None
    ]
    return {
        "accuracy": float(test["accuracy"]),
        "macro_auc": float(test["macro_auc"]) if test["macro_auc"] is not None else float("nan"),
        "mean_auc_vs_qcd": float(np.mean(aucs)) if aucs else float("nan"),
        "mean_rejection_50": mean_rejection(test),
    }


def spread(values: Sequence[float]) -> float:
    """The sample standard deviation (ddof=1) of ``values``; 0 for a single value. Every
    study table quotes this one."""
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=1)) if len(values) > 1 else 0.0


def paired_rows(
    rows: Sequence[dict[str, Any]], reference: str, value: str = "accuracy"
) -> list[dict[str, Any]]:
    """For every arm and N: ``value`` minus the reference arm's, seed by seed (a seed draws the
    same labelled jets for every arm, so the pairs share their labels and the draw's luck
    cancels), with its mean, spread, standard error, 95% interval (Student's t) and verdict:
    ``above`` / ``below`` when the interval excludes 0, else ``within the spread``."""
    from scipy.stats import t as student_t

    table = {(r["arm"], r["labels"], r["seed"]): float(r[value]) for r in rows}
    out = []
    for arm, n in dict.fromkeys((r["arm"], r["labels"]) for r in rows):
        if arm == reference:
            continue
        seeds = sorted(s for a, m, s in table if (a, m) == (arm, n) and (reference, n, s) in table)
        if not seeds:
            continue
        diffs = np.array([table[arm, n, s] - table[reference, n, s] for s in seeds])
        k, std, mean = len(diffs), spread(list(diffs)), float(diffs.mean())
        sem = std / math.sqrt(k) if k > 1 else math.nan  # NaN: no interval from one seed
        half = sem * student_t.ppf(0.975, k - 1) if k > 1 else math.nan
        verdict = (
            "one seed" if k < 2
            else "above" if mean - half > 0
            else "below" if mean + half < 0
            else "within the spread"
        )  # fmt: skip
        out.append(
            {
                "arm": arm,
                "labels": n,
                "seeds": k,
                f"minus_{reference}_mean": mean,
                f"minus_{reference}_std": std,
                f"minus_{reference}_sem": sem,
                "ci95_low": mean - half,
                "ci95_high": mean + half,
                "seeds_above": f"{int((diffs > 0).sum())}/{k}",
                "verdict": verdict,
            }
        )
    return out


def aggregate(
    rows: Sequence[dict[str, Any]], keys: Sequence[str], values: Sequence[str]
) -> list[dict[str, Any]]:
    """Mean and standard deviation (ddof=1; 0 for one seed) of ``values`` over the rows that
    share ``keys``, in the order the groups first appear: ``{**keys, seeds, V_mean, V_std}``."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    out = []
    for group_key, members in groups.items():
        entry: dict[str, Any] = dict(zip(keys, group_key, strict=True)) | {"seeds": len(members)}
        for value in values:
            series = [float(m[value]) for m in members]
            entry[f"{value}_mean"] = float(np.mean(series))
            entry[f"{value}_std"] = spread(series)
        out.append(entry)
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_table(path: Path, rows: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """Write ``rows`` (flat dicts) as ``PATH.csv`` and ``PATH.json``, atomically; non-finite
    numbers become empty cells / ``null``, and so does a column a row lacks (a run not tested
    on every sample yet, in a report of a study under way)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(dict.fromkeys(key for row in rows for key in row))
    csv_path, json_path = path.with_suffix(".csv"), path.with_suffix(".json")
    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if _json_safe(v) is None else v for k, v in row.items()})
    write_json_atomic(json_path, [{k: _json_safe(v) for k, v in row.items()} for row in rows])
    return csv_path, json_path


#: The curves a label study plots by default: (value, axis label).
LABEL_CURVES = (
    ("accuracy", "test accuracy"),
    ("mean_rejection_50", "mean QCD rejection at 50% sig. eff."),
)


def label_curves(
    out: Path,
    rows: Sequence[dict[str, Any]],
    values: Sequence[str],
    plotted: Sequence[tuple[str, str]] = LABEL_CURVES,
) -> tuple[list[dict[str, Any]], list[Path]]:
    """A study of arms × labelled jets: ``results`` and ``aggregated`` tables (mean ± std of
    ``values`` over seeds) and the curves of ``plotted`` (value, axis label) against the
    labels, one ``VALUE_vs_labels.png`` each."""
    from hepmpm.evaluation.plots import mean_std_curves

    write_table(out / "results", rows)
    summary = aggregate(rows, ("arm", "labels"), values)
    write_table(out / "aggregated", summary)
    figures = []
    for value, label in plotted:
        x, ys = curves(summary, "arm", "labels", value)
        figures.append(
            mean_std_curves(x, ys, out / f"{value}_vs_labels.png", "labelled jets", label)
        )
    return summary, figures


def pm(mean: float, std: float, digits: int = 3) -> str:
    """``mean ± std`` as text."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def comparison_lines(
    aggregated: Sequence[dict[str, Any]],
    point_key: str,
    arm_key: str,
    value: str,
    reference: str,
    label: Callable[[Any], str] = str,
) -> list[str]:
    """Sentences comparing each arm with ``reference`` at every point: the difference of the
    means of ``value`` and whether it exceeds the two standard deviations combined."""
    table = {(a[arm_key], a[point_key]): a for a in aggregated}
    points = list(dict.fromkeys(a[point_key] for a in aggregated))
    arms = [a for a in dict.fromkeys(a[arm_key] for a in aggregated) if a != reference]
    lines = []
    for arm in arms:
        parts = []
        for point in points:
            this, ref = table.get((arm, point)), table.get((reference, point))
            if this is None or ref is None:
                continue
            diff = this[f"{value}_mean"] - ref[f"{value}_mean"]
            spread = math.hypot(this[f"{value}_std"], ref[f"{value}_std"])
            verdict = "beyond" if abs(diff) > spread else "within"
            parts.append(f"{label(point)}: {diff:+.3f} ({verdict} the spread ±{spread:.3f})")
        if parts:
            lines.append(f"{value}, {arm} − {reference}: " + "; ".join(parts) + ".")
    return lines


def aggregated_section(
    title: str,
    aggregated: Sequence[dict[str, Any]],
    keys: Sequence[str],
    values: Sequence[str],
    text: Sequence[str] = (),
    figures: Sequence[Path] = (),
) -> Section:
    """A page section with the mean ± std table of ``values`` for every group of ``keys``."""
    header = [*keys, "seeds", *values]
    rows = [
        [*(a[k] for k in keys), a["seeds"], *(pm(a[f"{v}_mean"], a[f"{v}_std"]) for v in values)]
        for a in aggregated
    ]
    return Section(title, text=text, table=(header, rows), figures=figures)


def curves(
    aggregated: Sequence[dict[str, Any]], arm_key: str, point_key: str, value: str
) -> tuple[list[Any], dict[str, tuple[list[float], list[float]]]]:
    """(points, arm → (means, stds)) of ``value``, for :func:`.plots.mean_std_curves`: every
    arm at every point, NaN where it did not run (arms run at different label counts)."""
    points = sorted(dict.fromkeys(a[point_key] for a in aggregated))
    table = {(a[arm_key], a[point_key]): a for a in aggregated}
    out: dict[str, tuple[list[float], list[float]]] = {}
    for arm in dict.fromkeys(a[arm_key] for a in aggregated):
        entries = [table.get((arm, p)) for p in points]
        out[str(arm)] = (
            [e[f"{value}_mean"] if e else math.nan for e in entries],
            [e[f"{value}_std"] if e else math.nan for e in entries],
        )
    return points, out
