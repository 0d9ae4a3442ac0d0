"""Per-feature statistics of training jets, fitted once when a training starts from random
weights: the regression targets' standardisation (``mpm.standardise_regression``) and the
backbone's input standardisation (``backbone.standardise_inputs``)."""

from __future__ import annotations

import torch

from hepmpm.data.loader import JetDataset, make_dataloader
from hepmpm.models.embedding import FeatureNormalisation


@torch.no_grad()
def particle_sample(
    normalise: FeatureNormalisation,
    dataset: JetDataset,
    device: torch.device | str = "cpu",
    batches: int = 8,
) -> torch.Tensor:
    """The normalised continuous features [n_particles, F_cont] of the real particles of the
    first ``batches`` batches of ``dataset`` (a fixed sample: the runs pass a val split)."""
    real = [
        normalise(batch.features.to(device))[0][batch.mask.to(device)]
        for _, batch in zip(range(batches), make_dataloader(dataset), strict=False)
    ]
    return torch.cat(real)
