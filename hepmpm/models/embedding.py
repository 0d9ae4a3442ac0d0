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
    """Raw particle features [B, P, F] → embeddings [B, P, D] (continuous: linear; ids: lookup).

    ``standardise``: the normalised continuous features are further shifted and scaled to zero
    mean and unit spread with statistics fitted once on training jets
    (:meth:`set_input_statistics`) and kept as buffers, so that they travel with the weights and
    into ONNX. The feature set's transforms (weaver's) leave the impact parameters with spreads
    of 0.004-0.03 and Δη, Δφ of ~0.2 beside ~1 for the pT-like features (generated jets): a
    linear embedding then needs weights 5-250 times larger to see them. ParT's input BatchNorm
    does the same job.
    """

    def __init__(self, feature_set: FeatureSet, dim: int, standardise: bool = False) -> None:
        super().__init__()
        self.normalise = FeatureNormalisation(feature_set)
        n_continuous = self.normalise.n_continuous
        self.continuous = nn.Linear(n_continuous, dim)
        self.categorical = nn.ModuleList(nn.Embedding(n, dim) for n in self.normalise.categories)
        self.standardise = standardise
        if standardise:  # only then: backbones saved without them keep loading
            self.register_buffer("input_mean", torch.zeros(n_continuous))
            self.register_buffer("input_std", torch.ones(n_continuous))

    @property
    def needs_statistics(self) -> bool:
        """Whether the input standardisation is on and not fitted yet (still the identity)."""
        return self.standardise and bool(
            (self.input_std == 1).all() and (self.input_mean == 0).all()
        )

    @torch.no_grad()
    def set_input_statistics(self, continuous: torch.Tensor) -> None:
        """Fit the standardisation to ``continuous`` [n, F_cont]: normalised continuous features
        of real particles (:func:`hepmpm.training.statistics.particle_sample`)."""
        if not self.standardise:
            raise ValueError("this embedding does not standardise its inputs")
        self.input_mean.copy_(continuous.mean(0))
        self.input_std.copy_(continuous.std(0).clamp_min(1e-3))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        x, categories = self.normalise(raw)
        if self.standardise:
            x = (x - self.input_mean) / self.input_std
        out = self.continuous(x)
        for i, table in enumerate(self.categorical):
            out = out + table(categories[..., i].clamp(0, table.num_embeddings - 1))
        return out
