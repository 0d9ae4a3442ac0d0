"""A quickstart profile (configs/quickstart/*.yaml): the samples, the backbone, the taggers it
trains and the scale factors its report shows, read and checked before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from hepmpm.calibration.truth_scale_factors import ScaleFactorConfig
from hepmpm.config import StrictModel, load_config, resolve_config_path
from hepmpm.errors import HepmpmError
from hepmpm.generate.sample import GeneratedSample
from hepmpm.jetclass import CLASS_NAMES
from hepmpm.training.stages import Stage, check_stage


class FinetuneStepConfig(Stage):
    """Fine-tuning: the step's config, the mode and the labelled jets of each tagger."""

    mode: Literal["frozen", "finetune"] = "finetune"
    labels: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1,
        description="class-balanced labelled sim jets, one tagger per entry; the largest is "
        "exported and tagged",
    )


class AdaptedArmConfig(StrictModel):
    """The adapted arm: the pre-trained arm's fine-tuning with domain-adaptation levers acting on
    the unlabelled ``data`` jets (its ``adaptation.target``, which the quickstart sets)."""

    overrides: list[str] = Field(
        min_length=1,
        description="adaptation.* settings added to finetune's overrides, e.g. "
        "adaptation.dann_weight=1.0",
    )


#: Every arm the quickstart can train, in the order its tables show them.
ARMS = ("pretrained", "adapted", "scratch")
#: Where a profile's adapted arm is checked, its target not made yet.
_TARGET_PLACEHOLDER = "adaptation.target=the-data-skim"


class QuickstartConfig(StrictModel):
    """A quickstart profile (configs/quickstart/*.yaml)."""

    seed: int = Field(1, ge=0)
    workers: int = Field(2, ge=1, description="generator processes")
    feature_set: Literal["part17", "mpm7id"] = "part17"
    classes: list[str]
    sim: GeneratedSample
    data: GeneratedSample
    backbone: str = Field(
        "pretrained:compact-sim4-stdin-mask60-gpu",
        description="what the pre-trained arm fine-tunes: pretrained:NAME (shipped with hepmpm) "
        "or a pre-training folder",
    )
    finetune: FinetuneStepConfig
    adapted: AdaptedArmConfig | None = Field(
        None,
        description="the pre-trained arm again, adapted to the unlabelled data jets during "
        "fine-tuning (null: none)",
    )
    scratch: Stage | None = Field(
        None,
        description="the reference arm: the same tagger from random weights on the same jets "
        "(its own config: its own learning rate)",
    )
    scale_factors: ScaleFactorConfig = Field(
        default_factory=lambda: ScaleFactorConfig(signals=["Tbqq"], mistag=[0.05]),
        description="the data/sim scale factors of the report (pseudo-data truth, one bin)",
    )
    export_layout: Literal["hepmpm", "cmssw"] = "hepmpm"

    def model_post_init(self, _context: object) -> None:
        unknown = [c for c in self.classes if c not in CLASS_NAMES]
        if unknown or "QCD" not in self.classes:
            raise ValueError(f"classes must include QCD and be among {CLASS_NAMES}: {unknown}")
        absent = [c for c in self.scale_factors.signals if c not in self.classes]
        if absent or self.scale_factors.background not in self.classes:
            raise ValueError(f"scale_factors: the classes are {self.classes}")

    def arm_names(self) -> list[str]:
        """``pretrained``, then ``adapted`` and ``scratch`` where the profile has them."""
        return ["pretrained", *(name for name in ARMS[1:] if getattr(self, name) is not None)]

    def arms(self) -> list[tuple[str, int]]:
        """(arm, labels) of every tagger trained: each arm at each label count."""
        return [(arm, n) for n in sorted(set(self.finetune.labels)) for arm in self.arm_names()]

    @property
    def exported(self) -> tuple[str, int]:
        """The tagger exported and tagged: the pre-trained one of the most labels (the adapted
        one is measured beside it; across seeds it is not yet the better one:
        docs/results/sim-to-real-adaptation)."""
        return "pretrained", max(self.finetune.labels)


def load_profile(profile: str | Path, overrides: list[str] | None = None) -> QuickstartConfig:
    """A packaged profile (``tiny``, ``default``) or a YAML file, with ``key=value`` overrides;
    every step's config and overrides are resolved here, before anything runs."""
    path = resolve_config_path(profile, "quickstart")
    config = load_config(QuickstartConfig, path, overrides)
    where = f"quickstart profile {path}"
    stages = [("finetune", config.finetune.config, config.finetune.overrides)]
    if config.adapted is not None:
        overrides = [*config.finetune.overrides, *config.adapted.overrides, _TARGET_PLACEHOLDER]
        stages.append(("adapted", config.finetune.config, overrides))
    if config.scratch is not None:
        stages.append(("scratch", config.scratch.config, config.scratch.overrides))
    for name, stage_config, overrides in stages:
        check_stage("finetune", stage_config, overrides, f"{where}, {name}")
    from hepmpm.pretrained import resolve_backbone

    if not (resolve_backbone(config.backbone) / "backbone.json").is_file():
        raise HepmpmError(
            f"{where}: backbone {config.backbone!r} is not a pre-training folder (no backbone.json)"
        )
    return config
