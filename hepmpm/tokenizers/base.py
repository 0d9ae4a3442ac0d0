"""What every tokenizer is: raw particle features [B, P, F] + mask [B, P] → token ids [B, P].

A tokenizer maps each real particle of a jet to one of ``n_tokens`` discrete ids (a VQ-VAE code
or a k-means centroid) that masked-particle pre-training predicts. It takes **raw** features in
the order of its feature set, like every model of hepmpm; the feature set's normalisation is
part of the tokenizer. Padded positions get the id ``-1`` (:data:`PAD_TOKEN`).

:class:`TokenCounts` turns the ids of many batches into the codebook metrics: usage (fraction of
the ids that occur at least once) and perplexity (``exp`` of the entropy of the id frequencies;
``n_tokens`` when every id is equally frequent, 1 when one id takes everything).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hepmpm.config import StrictModel
from hepmpm.features import FeatureSet
from hepmpm.models.embedding import FeatureNormalisation

#: Token id of padded particle slots.
PAD_TOKEN = -1


class Tokenizer(nn.Module):
    """Base of the tokenizers: ``tokenize(features [B, P, F] raw, mask [B, P]) -> long [B, P]``.

    Subclasses set :attr:`kind`, build themselves from ``(feature_set, config)`` and implement
    :meth:`tokenize`: no gradient, deterministic (evaluation mode), :data:`PAD_TOKEN` where
    ``mask`` is False.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type[StrictModel]]

    def __init__(self, feature_set: FeatureSet, config: StrictModel) -> None:
        super().__init__()
        self.feature_set = feature_set
        self.config = config

    @property
    def n_tokens(self) -> int:
        """Number of distinct token ids (codebook size or number of clusters)."""
        raise NotImplementedError

    def tokenize(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token id of every particle: raw features [B, P, F], mask [B, P] → long [B, P]."""
        raise NotImplementedError

    def _check_inputs(self, features: torch.Tensor, mask: torch.Tensor) -> None:
        if features.ndim != 3 or features.shape[-1] != self.feature_set.n_features:
            raise ValueError(
                f"{self.kind} tokenizer of feature set {self.feature_set.name!r} expects raw "
                f"features [B, P, {self.feature_set.n_features}], got {list(features.shape)}"
            )
        if mask.shape != features.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be bool [B, P] = {list(features.shape[:2])}, "
                f"got {mask.dtype} {list(mask.shape)}"
            )


def scatter_tokens(codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Ids of the real particles [N] (in ``mask`` order) → long [B, P], :data:`PAD_TOKEN` else."""
    tokens = torch.full(mask.shape, PAD_TOKEN, dtype=torch.long, device=mask.device)
    tokens[mask] = codes.long()
    return tokens


def particle_vectors(
    normalisation: FeatureNormalisation, features: torch.Tensor, id_weight: float = 1.0
) -> torch.Tensor:
    """Normalised continuous features and one-hot categories: raw [..., F] → [..., D].

    ``D = F_continuous + sum(categories)``; each one-hot block is scaled by ``id_weight``.
    """
    continuous, categories = normalisation(features)
    parts = [continuous]
    for i, n in enumerate(normalisation.categories):
        one_hot = F.one_hot(categories[..., i].clamp(0, n - 1), n).to(continuous.dtype)
        parts.append(one_hot * id_weight)
    return torch.cat(parts, dim=-1)


class TokenCounts:
    """How often each of ``n_tokens`` ids occurred over many batches (padding ignored)."""

    def __init__(self, n_tokens: int, device: torch.device | str = "cpu") -> None:
        self.n_tokens = n_tokens
        self.counts = torch.zeros(n_tokens, dtype=torch.long, device=device)

    def update(self, tokens: torch.Tensor) -> None:
        """Add the ids of a batch (any shape; :data:`PAD_TOKEN` entries are skipped)."""
        ids = tokens[tokens >= 0].to(self.counts.device)
        self.counts += torch.bincount(ids, minlength=self.n_tokens)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def usage(self) -> float:
        """Fraction of the ids seen at least once."""
        return float((self.counts > 0).float().mean())

    def perplexity(self) -> float:
        """``exp(-sum p log p)`` of the id frequencies (1 … n_tokens; nan before any update)."""
        if not self.total:
            return math.nan
        p = self.counts.double() / self.total
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return float(entropy.exp())

    def metrics(self) -> dict[str, float]:
        """``usage``, ``perplexity`` and ``used`` (number of ids seen)."""
        return {
            "usage": self.usage(),
            "perplexity": self.perplexity(),
            "used": int((self.counts > 0).sum()),
        }
