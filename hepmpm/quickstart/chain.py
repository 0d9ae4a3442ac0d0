"""``hepmpm quickstart``: the whole chain on a sample it makes itself, resumable step by step.

generate ``sim`` and ``data`` → skim each (coffea Runner) → fine-tune the backbone shipped with
hepmpm (``backbone``, pre-trained without labels) on N labelled ``sim`` jets for each N of
``finetune.labels``; the same fine-tuning adapted to the unlabelled ``data`` jets (``adapted``:
domain-adversarial, no data label read); the same tagger from scratch on the same jets
(``scratch``) → export the pre-trained tagger of the largest N to ONNX → tag
``sim`` and ``data`` with the TaggerProcessor → report, whose first section says what
pre-training and the adaptation bought on each domain, with data/sim scale factors.

Each step writes into its own folder under ``OUT`` and is complete when its final file exists
(the library writes that file last); a re-run skips complete steps and lets interrupted ones go
on (generation and skims keep complete files, training resumes from its last checkpoint). The
profile is stored in ``OUT/quickstart.json``; a folder made with another profile is refused
(:func:`hepmpm.records.claim_folder`).
"""

from __future__ import annotations

import time
from pathlib import Path

from hepmpm.folder_lock import holding_folder
from hepmpm.pipeline import FinetuneRun, Pipeline, Step
from hepmpm.quickstart.config import QuickstartConfig
from hepmpm.quickstart.layout import Layout
from hepmpm.records import claim_folder

#: What each arm's training step does, as the step list says it.
ARM_TITLES = {
    "pretrained": "fine-tune the pre-trained backbone",
    "adapted": "fine-tune it adapted to the unlabelled data jets",
    "scratch": "train from scratch",
}


def _generate(pipeline: Pipeline, config: QuickstartConfig, layout: Layout, domain: str) -> str:
    from hepmpm.generate.preset import load_preset
    from hepmpm.generate.sample import SampleRequest

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
    manifest = pipeline.generate(request)
    return f"{sum(f['jets'] for f in manifest['files'].values())} jets"


def _skim(pipeline: Pipeline, config: QuickstartConfig, layout: Layout, domain: str) -> str:
    from hepmpm.skim import SkimRequest

    request = SkimRequest(
        inputs=[layout.sample(domain)],
        out=layout.skim(domain),
        feature_set=config.feature_set,
        # Iterative: a quickstart-sized skim takes a second, less than starting worker processes.
        executor="iterative",
        domain=domain,
    )
    manifest = pipeline.skim(request)
    return f"{sum(s['jets'] for s in manifest['shards'])} jets"


def tagger_run(config: QuickstartConfig, layout: Layout, arm: str, labels: int) -> FinetuneRun:
    """The fine-tuning of the ``arm`` tagger (pretrained, adapted, scratch) on ``labels`` sim
    jets."""
    from hepmpm.pretrained import resolve_backbone

    if arm == "scratch":
        assert config.scratch is not None  # config.arms() names scratch only when it has a stage
        stage, backbone, mode = config.scratch, None, "scratch"
    else:
        stage, backbone = config.finetune, resolve_backbone(config.backbone)
        mode = config.finetune.mode
    if arm == "adapted":
        assert config.adapted is not None
        levers = [*config.adapted.overrides, f"adaptation.target={layout.skim('data')}"]
        stage = stage.model_copy(update={"overrides": [*stage.overrides, *levers]})
    return FinetuneRun(
        stage=stage,
        skim=layout.skim("sim"),
        out=layout.tagger(arm, labels),
        backbone=backbone,
        mode=mode,
        labels=labels,
        classes=config.classes,
        seed=config.seed,
    )


def _train_tagger(pipeline: Pipeline, run: FinetuneRun) -> str:
    [metrics] = pipeline.finetune([run])
    test = metrics["test"]
    return (
        f"sim test accuracy {test['accuracy']:.3f}, macro AUC {test['macro_auc']:.3f} "
        f"(best step {metrics['best_step']})"
    )


def _export(pipeline: Pipeline, config: QuickstartConfig, layout: Layout) -> str:
    worst = pipeline.export(layout.tagger(*config.exported), layout.model, config.export_layout)
    return f"onnxruntime vs torch max |Δprob| {worst:.1e}"


def _tag(pipeline: Pipeline, layout: Layout) -> str:
    from hepmpm.tag import TagRequest

    request = TagRequest(
        model=layout.model,
        inputs=[layout.sample("sim"), layout.sample("data")],
        out=layout.tag,
        executor="iterative",
        threads=1,
    )
    summary = pipeline.tag(request)
    tagged = {d: c["jets_tagged"] for d, c in summary["counts"].items()}
    return ", ".join(f"{d}: {n} jets" for d, n in tagged.items())


def _report(config: QuickstartConfig, layout: Layout) -> str:
    from hepmpm.quickstart.report import write_quickstart_report

    report = write_quickstart_report(layout, config)
    return f"{report.html}"


def plan(pipeline: Pipeline, config: QuickstartConfig, layout: Layout) -> list[Step]:
    """The quickstart's steps, in order."""
    return [
        *(
            Step(
                f"generate {d} ({getattr(config, d).jets_per_class} jets per class)",
                None,  # generation itself skips the files already complete
                lambda d=d: _generate(pipeline, config, layout, d),
            )
            for d in ("sim", "data")
        ),
        *(
            Step(
                f"skim {d} (coffea Runner)",
                layout.skim(d) / "manifest.json",
                lambda d=d: _skim(pipeline, config, layout, d),
            )
            for d in ("sim", "data")
        ),
        *(
            Step(
                f"{ARM_TITLES[arm]} on {n} labelled sim jets",
                run.done,
                lambda run=run: _train_tagger(pipeline, run),
            )
            for arm, n in config.arms()
            for run in [tagger_run(config, layout, arm, n)]
        ),
        Step("export to ONNX", layout.model, lambda: _export(pipeline, config, layout)),
        Step(
            "tag sim and data (TaggerProcessor)",
            layout.tag / "summary.json",
            lambda: _tag(pipeline, layout),
        ),
        Step("write the report", None, lambda: _report(config, layout)),
    ]


def run_quickstart(config: QuickstartConfig, out: Path, pipeline: Pipeline) -> Path:
    """Run (or complete) every step with ``pipeline``; returns the report's HTML page."""
    layout = Layout(Path(out))
    with holding_folder(layout.root, "quickstart"):
        claim_folder(layout.root, "quickstart.json", "quickstart", config.model_dump(mode="json"))
        started = time.perf_counter()
        pipeline.run_steps(plan(pipeline, config, layout))
        pipeline.echo(f"quickstart complete in {time.perf_counter() - started:.0f} s")
    return layout.report / "report.html"
