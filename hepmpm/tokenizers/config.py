"""Configs of ``hepmpm tokenizer``: one YAML per run, ``kind: vqvae`` or ``kind: kmeans``.

Packaged configs (``configs/tokenizer/``): ``vqvae`` (MPMv1: 512 codes of dimension 16),
``kmeans`` (512 clusters), ``tiny`` and ``tiny_kmeans`` (seconds on a CPU, for tests). Any key may
be overridden with ``--set section.key=value``; unknown keys and wrong types are errors naming
the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from hepmpm.config import (
    StrictModel,
    apply_overrides,
    load_yaml_with_inheritance,
    parse_config,
    resolve_config_path,
)
from hepmpm.errors import ConfigError
from hepmpm.tokenizers.kmeans import KMeansConfig, KMeansFitConfig
from hepmpm.tokenizers.vqvae import VQVAEConfig


class DataConfig(StrictModel):
    """Which jets of the skim are read, and how."""

    pad_to: int = Field(
        64, ge=1, description="particle slots per jet; longer jets keep their hardest particles"
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    cache: bool = Field(
        False, description="keep the jets in memory after the first epoch (small skims only)"
    )
    limit_train_jets: int | None = Field(None, ge=1, description="use at most this many jets")
    limit_val_jets: int | None = Field(None, ge=1, description="validate on at most this many")


class OptimiserConfig(StrictModel):
    """AdamW with a linear warm-up, then a cosine decay to ``final_lr_fraction`` × ``lr``."""

    lr: float = Field(1.0e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(200, ge=0, description="steps of linear warm-up from 0")
    final_lr_fraction: float = Field(0.1, ge=0, le=1, description="lr at max_steps / lr")
    grad_clip: float = Field(1.0, ge=0, description="clip the gradient norm (0: off)")


class TrainerConfig(StrictModel):
    """Length, batches, validation, seed and device of a training run (Lightning)."""

    max_steps: int = Field(20_000, ge=1, description="optimiser steps")
    batch_size: int = Field(256, ge=1, description="jets per batch (per device)")
    val_every: int = Field(500, ge=1, description="validate every this many steps")
    seed: int = Field(0, ge=0, description="seeds weights, codebook init and shuffling")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = Field(
        "auto", description="'auto': a GPU when there is one, else the CPU"
    )
    devices: int | Literal["auto"] = Field(1, description="devices (GPUs: DDP when > 1)")
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="'auto': bf16 autocast on CUDA, float32 elsewhere"
    )
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads during the run (None: torch's default); 1 is fastest for "
        "tiny models, and on a machine whose cores are busy with other work",
    )


class VQVAETrainingConfig(StrictModel):
    """``kind: vqvae``: train a VQ-VAE tokenizer."""

    kind: Literal["vqvae"]
    model: VQVAEConfig = Field(default_factory=VQVAEConfig)
    optimiser: OptimiserConfig = Field(default_factory=OptimiserConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    data: DataConfig = Field(default_factory=DataConfig)


class KMeansTrainingConfig(StrictModel):
    """``kind: kmeans``: fit a k-means tokenizer."""

    kind: Literal["kmeans"]
    model: KMeansConfig = Field(default_factory=KMeansConfig)
    fit: KMeansFitConfig = Field(default_factory=KMeansFitConfig)
    data: DataConfig = Field(default_factory=DataConfig)


TokenizerRunConfig = VQVAETrainingConfig | KMeansTrainingConfig

_CONFIG_CLASSES: dict[str, type[StrictModel]] = {
    "vqvae": VQVAETrainingConfig,
    "kmeans": KMeansTrainingConfig,
}


def load_tokenizer_config(
    name_or_path: str | Path, overrides: list[str] | None = None
) -> TokenizerRunConfig:
    """Read a tokenizer config (packaged name or path; ``inherit:`` allowed), apply
    ``a.b=value`` overrides, validate it as the class its ``kind`` names."""
    path = resolve_config_path(name_or_path, "tokenizer")
    data = apply_overrides(load_yaml_with_inheritance(path), overrides or [])
    kind = data.get("kind")
    if kind not in _CONFIG_CLASSES:
        raise ConfigError(
            f"config {path}: key 'kind' must be one of {list(_CONFIG_CLASSES)}, got {kind!r}"
        )
    return parse_config(_CONFIG_CLASSES[kind], data, f"config {path}")
