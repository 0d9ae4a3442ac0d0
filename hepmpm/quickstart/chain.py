"""``hepmpm quickstart``: the whole chain on a sample it makes itself, resumable step by step.

generate ``sim`` and ``data`` → skim each (coffea Runner) → pre-train MPM on ``data`` (no labels
used, as on real collisions), continuing from the backbone shipped with hepmpm
(``pretrain.init``) → fine-tune on N labelled ``sim`` jets for each N of ``finetune.labels``, and
train the same tagger from scratch on the same jets (``scratch``) → export the fine-tuned tagger
of the largest N to ONNX → tag ``sim`` and ``data`` with the TaggerProcessor → report, whose
first section says what pre-training bought.

Each step writes into its own folder under ``OUT`` and is complete when its final file exists
(the library writes that file last); a re-run skips complete steps and lets interrupted ones go
on (generation and skims keep complete files, training resumes from its last checkpoint). The
profile is stored in ``OUT/quickstart.json``; a folder made with another profile is refused
(:func:`hepmpm.records.claim_folder`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from hepmpm.config import StrictModel, load_config, resolve_config_path
from hepmpm.errors import HepmpmError
from hepmpm.folder_lock import holding_folder
from hepmpm.generate.sample import GeneratedSample
from hepmpm.jetclass import CLASS_NAMES
from hepmpm.quiet import quiet_lightning
from hepmpm.records import claim_folder
from hepmpm.training.stages import Stage, check_stage


class PretrainStepConfig(Stage):
    """Pre-training: the step's config, and the weights it starts from."""

    init: str | None = Field(
        None,
        description="continue from pretrained:NAME or a pre-training folder (null: random)",
    )


class FinetuneStepConfig(Stage):
    """Fine-tuning: the step's config, the mode and the labelled jets of each tagger."""

    mode: Literal["frozen", "finetune"] = "finetune"
    labels: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1,
        description="class-balanced labelled sim jets, one tagger per entry; the largest is "
        "exported and tagged",
    )


class QuickstartConfig(StrictModel):
    """A quickstart profile (configs/quickstart/*.yaml)."""

    seed: int = Field(1, ge=0)
    workers: int = Field(2, ge=1, description="generator processes")
    feature_set: Literal["part17", "mpm7id"] = "part17"
    classes: list[str]
    sim: GeneratedSample
    data: GeneratedSample
    pretrain: PretrainStepConfig
    finetune: FinetuneStepConfig
    scratch: Stage | None = Field(
        None,
        description="the reference arm: the same tagger from random weights on the same jets "
        "(its own config: its own learning rate)",
    )
    export_layout: Literal["hepmpm", "cmssw"] = "hepmpm"

    def model_post_init(self, _context: object) -> None:
        unknown = [c for c in self.classes if c not in CLASS_NAMES]
        if unknown or "QCD" not in self.classes:
            raise ValueError(f"classes must include QCD and be among {CLASS_NAMES}: {unknown}")

    def arms(self) -> list[tuple[str, int]]:
        """(arm, labels) of every tagger trained: ``pretrained`` and (with ``scratch``)
        ``scratch`` at each label count."""
        names = ["pretrained", *(["scratch"] if self.scratch is not None else [])]
        return [(arm, n) for n in sorted(set(self.finetune.labels)) for arm in names]

    @property
    def exported(self) -> tuple[str, int]:
        """The tagger exported and tagged: the pre-trained one of the most labels."""
        return "pretrained", max(self.finetune.labels)


def load_profile(profile: str | Path, overrides: list[str] | None = None) -> QuickstartConfig:
    """A packaged profile (``tiny``, ``default``) or a YAML file, with ``key=value`` overrides;
    every step's config and overrides are resolved here, before anything runs."""
    path = resolve_config_path(profile, "quickstart")
    config = load_config(QuickstartConfig, path, overrides)
    for name, kind in (("pretrain", "pretrain"), ("finetune", "finetune"), ("scratch", "finetune")):
        step = getattr(config, name)
        if step is not None:
            check_stage(kind, step.config, step.overrides, f"quickstart profile {path}, {name}")
    if config.pretrain.init is not None:
        from hepmpm.pretrained import resolve_backbone

        start = resolve_backbone(config.pretrain.init)
        if not (start / "backbone.json").is_file():
            raise HepmpmError(
                f"quickstart profile {path}: pretrain.init {config.pretrain.init!r} is not a "
                "pre-training folder (no backbone.json)"
            )
    return config


#: What each arm's training step does, as the step list says it.
ARM_TITLES = {"pretrained": "fine-tune the pre-trained backbone", "scratch": "train from scratch"}


@dataclass(frozen=True)
class Layout:
    """Where each step writes, under the quickstart's output folder."""

    root: Path

    def sample(self, domain: str) -> Path:
        return self.root / "samples" / domain

    def skim(self, domain: str) -> Path:
        return self.root / "skims" / domain

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    def tagger(self, arm: str, labels: int) -> Path:
        """The training folder of the ``arm`` tagger (pretrained, scratch) on ``labels`` jets."""
        return self.root / "taggers" / f"{arm}-n{labels}"

    @property
    def model(self) -> Path:
        return self.root / "model" / "tagger.onnx"

    @property
    def tag(self) -> Path:
        return self.root / "tag"

    @property
    def report(self) -> Path:
        return self.root / "report"


@dataclass(frozen=True)
class Step:
    """A named piece of work; ``done`` is the file whose existence means it is complete."""

    title: str
    done: Path | None
    run: Callable[[], str | None]


def _generate(config: QuickstartConfig, layout: Layout, domain: str, progress: bool) -> str:
    from hepmpm.generate.preset import load_preset
    from hepmpm.generate.sample import SampleRequest, generate_sample

    sample = getattr(config, domain)
    request = SampleRequest(
        preset=load_preset(sample.preset),
        classes=tuple(config.classes),
        jets_per_class=sample.jets_per_class,
        seed=config.seed + (0 if domain == "sim" else 1000),
        naming="pfnano",
        out=layout.sample(domain),
        workers=config.workers,
    )
    manifest = generate_sample(request, show_progress=progress)
    return f"{sum(f['jets'] for f in manifest['files'].values())} jets"


def _skim(config: QuickstartConfig, layout: Layout, domain: str, progress: bool) -> str:
    from hepmpm.skim import SkimRequest, run_skim

    request = SkimRequest(
        inputs=[layout.sample(domain)],
        out=layout.skim(domain),
        feature_set=config.feature_set,
        # Iterative: a quickstart-sized skim takes a second, less than starting worker processes.
        executor="iterative",
        domain=domain,
    )
    manifest, _ = run_skim(request, show_progress=progress)
    return f"{sum(s['jets'] for s in manifest['shards'])} jets"


def _pretrain(config: QuickstartConfig, layout: Layout, progress: bool) -> str:
    from hepmpm.training.pretrain import run_pretrain

    step = config.pretrain
    metrics = run_pretrain(
        step.config,
        layout.skim("data"),
        layout.pretrain,
        overrides=[f"trainer.seed={config.seed}", *step.overrides],
        resume=True,  # the quickstart resumes its own steps
        show_progress=progress,
        init=step.init,
    )
    accuracy = {k: v for k, v in metrics.items() if k.startswith("val/acc_")}
    return ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()) or f"{metrics['steps']} steps"


def _train_tagger(
    config: QuickstartConfig, layout: Layout, arm: str, labels: int, progress: bool
) -> str:
    from hepmpm.training.finetune import run_finetune

    step = config.finetune if arm == "pretrained" else config.scratch
    out = layout.tagger(arm, labels)
    metrics = run_finetune(
        step.config,
        layout.skim("sim"),
        out,
        backbone_dir=layout.pretrain if arm == "pretrained" else None,
        mode=config.finetune.mode if arm == "pretrained" else "scratch",
        labels=labels,
        classes=config.classes,
        overrides=step.overrides,
        seed=config.seed,
        resume=True,
        show_progress=progress,
    )
    test = metrics["test"]
    return (
        f"sim test accuracy {test['accuracy']:.3f}, macro AUC {test['macro_auc']:.3f} "
        f"(best step {metrics['best_step']})"
    )


def _export(config: QuickstartConfig, layout: Layout) -> str:
    from hepmpm.export import export_tagger

    layout.model.parent.mkdir(parents=True, exist_ok=True)
    report = export_tagger(
        layout.tagger(*config.exported), layout.model, layout=config.export_layout
    )
    return f"onnxruntime vs torch max |Δprob| {report.worst:.1e}"


def _tag(config: QuickstartConfig, layout: Layout, progress: bool) -> str:
    import shutil

    from hepmpm.tag import TagRequest, run_tag

    # A tagging run is short and writes its summary last: an interrupted one starts over.
    shutil.rmtree(layout.tag, ignore_errors=True)
    request = TagRequest(
        model=layout.model,
        inputs=[layout.sample("sim"), layout.sample("data")],
        out=layout.tag,
        executor="iterative",
        threads=1,
    )
    summary, _ = run_tag(request, show_progress=progress)
    tagged = {d: c["jets_tagged"] for d, c in summary["counts"].items()}
    return ", ".join(f"{d}: {n} jets" for d, n in tagged.items())


def _report(config: QuickstartConfig, layout: Layout) -> str:
    from hepmpm.quickstart.report import write_quickstart_report

    report = write_quickstart_report(layout, config)
    return f"{report.html}"


def plan(config: QuickstartConfig, layout: Layout, progress: bool) -> list[Step]:
    """The quickstart's steps, in order."""
    return [
        *(
            Step(
                f"generate {d} ({getattr(config, d).jets_per_class} jets per class)",
                None,  # generation itself skips the files already complete
                lambda d=d: _generate(config, layout, d, progress),
            )
            for d in ("sim", "data")
        ),
        *(
            Step(
                f"skim {d} (coffea Runner)",
                layout.skim(d) / "manifest.json",
                lambda d=d: _skim(config, layout, d, progress),
            )
            for d in ("sim", "data")
        ),
        Step(
            "pre-train MPM on data (no labels)"
            + (f", continuing from {config.pretrain.init}" if config.pretrain.init else ""),
            layout.pretrain / "backbone.json",
            lambda: _pretrain(config, layout, progress),
        ),
        *(
            Step(
                f"{ARM_TITLES[arm]} on {n} labelled sim jets",
                layout.tagger(arm, n) / "tagger.json",
                lambda arm=arm, n=n: _train_tagger(config, layout, arm, n, progress),
            )
            for arm, n in config.arms()
        ),
        Step("export to ONNX", layout.model, lambda: _export(config, layout)),
        Step(
            "tag sim and data (TaggerProcessor)",
            layout.tag / "summary.json",
            lambda: _tag(config, layout, progress),
        ),
        Step("write the report", None, lambda: _report(config, layout)),
    ]


def run_quickstart(
    config: QuickstartConfig,
    out: Path,
    show_progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Run (or complete) every step; returns the report's HTML page."""
    out = Path(out)
    with holding_folder(out, "quickstart"):
        claim_folder(out, "quickstart.json", "quickstart", config.model_dump(mode="json"))
        return _run_steps(out, config, show_progress, echo)


def _run_steps(
    out: Path, config: QuickstartConfig, show_progress: bool, echo: Callable[[str], None]
) -> Path:
    quiet_lightning()  # keep the step lines readable
    layout = Layout(out)
    steps = plan(config, layout, show_progress)
    started = time.perf_counter()
    for number, step in enumerate(steps, 1):
        prefix = f"[{number}/{len(steps)}] {step.title}"
        if step.done is not None and step.done.is_file():
            echo(f"{prefix}: done before, skipped")
            continue
        echo(f"{prefix} ...")
        t0 = time.perf_counter()
        note = step.run()
        echo(f"{prefix}: {note} ({time.perf_counter() - t0:.0f} s)")
    echo(f"quickstart complete in {time.perf_counter() - started:.0f} s")
    return layout.report / "report.html"
