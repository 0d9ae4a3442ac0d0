"""The optimizer rules every hepmpm training shares: AdamW with linear warm-up, then cosine or
linear decay to ``min_lr_ratio`` (:func:`lr_factor`), and one weight-decay rule
(:func:`decay_groups`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from hepmpm.config import StrictModel


class OptimizerConfig(StrictModel):
    """AdamW with warm-up and decay; gradients clipped to ``grad_clip`` (norm)."""

    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.05, ge=0, le=1)
    grad_clip: float | None = Field(1.0, gt=0, description="clip the gradient norm (null: off)")


def lr_factor(step: int, total_steps: int, config: OptimizerConfig) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    decay = (
        0.5 * (1 + math.cos(math.pi * progress)) if config.schedule == "cosine" else 1 - progress
    )
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * decay


def decay_groups(
    module: torch.nn.Module,
    weight_decay: float,
    skip: set[str] | None = None,
    only: set[str] | None = None,
) -> list[dict[str, Any]]:
    """AdamW parameter groups of ``module``'s trainable parameters (those named in ``only``, if
    given), the one weight-decay rule of every hepmpm training: matrices decay, biases, norms,
    embedding tables and the parameters named in ``skip`` do not."""
    decay, no_decay = [], []
    skip = skip or set()
    for name, p in module.named_parameters():
        if p.requires_grad and (only is None or name in only):
            decays = p.ndim >= 2 and "embed.categorical" not in name and name not in skip
            (decay if decays else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def adamw_stepwise(
    groups: list[dict[str, Any]],
    config: OptimizerConfig,
    schedules: Callable[[int], float] | Sequence[Callable[[int], float]],
) -> dict[str, Any]:
    """What ``configure_optimizers`` returns: AdamW over ``groups`` (:func:`decay_groups`, each
    may set its own ``lr``) with ``config``'s rate and betas, and a learning-rate multiplier per
    optimizer step (one function, or one per group)."""
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
    lambdas = schedules if callable(schedules) else list(schedules)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
