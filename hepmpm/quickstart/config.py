"""A quickstart profile (configs/quickstart/*.yaml): the sample, the steps' configs and the
taggers it trains, read and checked before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from hepmpm.config import StrictModel, load_config, resolve_config_path
from hepmpm.errors import HepmpmError
from hepmpm.generate.sample import GeneratedSample
from hepmpm.jetclass import CLASS_NAMES
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
