"""What every hepmpm training run (pre-training, fine-tuning) shares: its loggers, the
Lightning warnings that say nothing about it, and the comparison of configs on ``--resume``."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger


def config_differences(name: str, before: Any, now: Any) -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, old, new) of each leaf where two config records differ."""
    if isinstance(before, dict) and isinstance(now, dict):
        for key in sorted(set(before) | set(now)):
            yield from config_differences(f"{name}.{key}", before.get(key), now.get(key))
    elif before != now:
        yield name, before, now


def make_loggers(out: Path) -> list[Logger]:
    """CSV logs always, TensorBoard's too when it is installed (each run: a new version_N)."""
    loggers: list[Logger] = [CSVLogger(out, name="logs")]
    if any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
        loggers.append(TensorBoardLogger(out, name="tensorboard", default_hp_metric=False))
    return loggers


# Lightning warnings that say nothing about a hepmpm run: the loader is an IterableDataset
# with a length, the frozen tokenizer is in eval mode on purpose, few batches per epoch.
EXPECTED_WARNINGS = (
    r".*does not have many workers.*",
    r".*IterableDataset.*__len__.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*module\(s\) in eval mode.*",
    r".*smaller than the logging interval.*",
    r".*sync_dist=True.*",  # validation sums are reduced over ranks before logging
    r"Checkpoint directory .* exists and is not empty",  # --resume (otherwise refused)
)
