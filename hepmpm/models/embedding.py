"""Particle input embedding: raw features → the feature set's normalisation → [B, P, D].

The normalisation is part of the model (and so of the exported ONNX graph): shards and
analyses hand over raw features, exactly as :mod:`hepmpm.features` defines them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hepmpm.features import FeatureSet, Transform

_FUNCTION_CODE = {None: 0, "log": 1, "asinh": 2}


class FeatureNormalisation(nn.Module):
    """Torch twin of :meth:`hepmpm.features.FeatureSet.normalise` for the continuous features.

    Input [..., F] raw; output [..., F_cont] normalised continuous features and [..., F_cat]
    integer categories (``long``).
    """

    def __init__(self, feature_set: FeatureSet) -> None:
        super().__init__()
        continuous = [i for i, f in enumerate(feature_set.features) if f.categories is None]
        categorical = [i for i, f in enumerate(feature_set.features) if f.categories is not None]
        # An identity transform is the general one with no shift, scale or bounds.
        unbounded = Transform(sub=0.0, mul=1.0, lower=-math.inf, upper=math.inf)
        transforms = [feature_set.features[i].transform for i in continuous]
        transforms = [unbounded if t.is_identity else t for t in transforms]

        self.register_buffer("continuous_index", torch.tensor(continuous, dtype=torch.long))
        self.register_buffer("categorical_index", torch.tensor(categorical, dtype=torch.long))
        for name in ("pre", "sub", "mul", "lower", "upper"):
            values = [getattr(t, name) for t in transforms]
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32))
        codes = torch.tensor([_FUNCTION_CODE[t.function] for t in transforms])
        self.register_buffer("is_log", codes == 1)
        self.register_buffer("is_asinh", codes == 2)
        self.categories = [feature_set.features[i].categories for i in categorical]

    @property
    def n_continuous(self) -> int:
        return len(self.continuous_index)

    def forward(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = raw.index_select(-1, self.continuous_index) * self.pre
        # Padded entries are 0: clamp before the log so they stay finite (they are masked later).
        x = torch.where(self.is_log, torch.log(x.clamp_min(1e-12)), x)
        x = torch.where(self.is_asinh, torch.asinh(x), x)
        x = torch.clamp((x - self.sub) * self.mul, self.lower, self.upper)
        categories = raw.index_select(-1, self.categorical_index).round().long()
        return x, categories


class ParticleEmbedding(nn.Module):
    """Raw particle features [B, P, F] → embeddings [B, P, D] (continuous: linear; ids: lookup)."""

    def __init__(self, feature_set: FeatureSet, dim: int) -> None:
        super().__init__()
        self.normalise = FeatureNormalisation(feature_set)
        self.continuous = nn.Linear(self.normalise.n_continuous, dim)
        self.categorical = nn.ModuleList(nn.Embedding(n, dim) for n in self.normalise.categories)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        x, categories = self.normalise(raw)
        out = self.continuous(x)
        for i, table in enumerate(self.categorical):
            out = out + table(categories[..., i].clamp(0, table.num_embeddings - 1))
        return out
