"""Particle kinematics from raw features, and pairwise interaction features as an attention bias.

ParT (arXiv 2202.03772) adds to every attention logit a learned function of four features of
each particle pair: ln ΔR, ln kT = ln(min(pT_i, pT_j) ΔR), ln z = ln(min(pT_i, pT_j) /
(pT_i + pT_j)) and ln m²_ij; OmniLearned's PET uses a similar bias. Here they come from the raw
pT, Δη and Δφ (to the jet axis) of the feature set, with the particles taken massless and Δη as
their rapidity: all four are invariant under the boost along the beam and the rotation that
bring the jet axis to (0, 0), so they are those of the lab-frame particles, and
m²_ij = 2 pT_i pT_j (cosh Δη_ij − cos Δφ_ij).

:class:`PairBias` maps them through a small MLP to one bias per attention head, computed once
per jet and shared by the blocks. Pairs with a particle outside ``visible`` (padding, or a
particle hidden by masked particle modelling) get no bias, so a hidden particle's kinematics
never reach the encoder through its pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hepmpm.errors import HepmpmError
from hepmpm.features import FeatureSet

#: Per feature set: (pT feature, whether it holds log pT, Δη feature, Δφ feature).
KINEMATIC_FEATURES: dict[str, tuple[str, bool, str, str]] = {
    "part17": ("part_pt_log", True, "part_deta", "part_dphi"),
    "mpm7id": ("pt", False, "deta", "dphi"),
}

#: Pair features per pair.
N_PAIR_FEATURES = 4

# Floor of the logarithms: a particle's pair with itself (ΔR = 0) and padded slots stay finite.
_EPS = 1e-8
# The logs span about ±10; this brings the MLP's inputs to order one.
_PAIR_SCALE = 0.25


class ParticleKinematics(nn.Module):
    """Raw features [..., P, F] → (pT / GeV, Δη, Δφ), each [..., P], for a known feature set."""

    def __init__(self, feature_set: FeatureSet, needed_by: str) -> None:
        super().__init__()
        if feature_set.name not in KINEMATIC_FEATURES:
            raise HepmpmError(
                f"{needed_by} needs pT, Δη and Δφ of each particle; feature set "
                f"{feature_set.name!r} is not one it knows (known: {', '.join(KINEMATIC_FEATURES)})"
            )
        pt, self.pt_is_log, eta, phi = KINEMATIC_FEATURES[feature_set.name]
        index = [list(feature_set.names).index(name) for name in (pt, eta, phi)]
        self.register_buffer("index", torch.tensor(index), persistent=False)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pt, eta, phi = features.index_select(-1, self.index).unbind(-1)
        return (torch.exp(pt) if self.pt_is_log else pt), eta, phi


def pair_features(pt: torch.Tensor, eta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """ln ΔR, ln kT, ln z, ln m² [B, P, P, 4] of every pair of massless particles given by
    ``pt`` (GeV), ``eta`` and ``phi`` [B, P] (Δφ wrapped to (−π, π])."""
    deta = eta[:, :, None] - eta[:, None, :]
    dphi = torch.remainder(phi[:, :, None] - phi[:, None, :] + torch.pi, 2 * torch.pi) - torch.pi
    delta_r = torch.sqrt(deta.square() + dphi.square())
    low = torch.minimum(pt[:, :, None], pt[:, None, :])
    total = pt[:, :, None] + pt[:, None, :]
    cosh = 0.5 * (torch.exp(deta) + torch.exp(-deta))  # aten::cosh has no ONNX export (opset 17)
    mass2 = 2 * pt[:, :, None] * pt[:, None, :] * (cosh - torch.cos(dphi))
    values = (delta_r, low * delta_r, low / total.clamp_min(_EPS), mass2)
    return torch.stack([torch.log(v.clamp_min(_EPS)) for v in values], dim=-1)


class PairBias(nn.Module):
    """Raw features [B, P, F] and ``visible`` [B, P] → attention bias [B, H, R + P, R + P]
    (``R`` register tokens first, which get none): an MLP of :func:`pair_features` per head."""

    def __init__(self, feature_set: FeatureSet, dim: int, heads: int) -> None:
        super().__init__()
        self.kinematics = ParticleKinematics(feature_set, "pair_bias")
        self.mlp = nn.Sequential(
            nn.Linear(N_PAIR_FEATURES, dim),
            nn.GELU(),
            nn.Linear(dim, dim),
            nn.GELU(),
            nn.Linear(dim, heads),
        )

    def forward(
        self, features: torch.Tensor, visible: torch.Tensor, registers: int
    ) -> torch.Tensor:
        pt, eta, phi = self.kinematics(features.float())
        # Slots outside `visible` (padding may hold anything) become a unit-pT particle on the
        # axis before any arithmetic, so no inf or NaN enters the MLP or its gradients.
        pt = torch.where(visible, pt, 1.0)
        eta, phi = torch.where(visible, eta, 0.0), torch.where(visible, phi, 0.0)
        pairs = pair_features(pt, eta, phi) * _PAIR_SCALE  # [B, P, P, 4]
        both = (visible[:, :, None] & visible[:, None, :]).to(pairs.dtype)  # [B, P, P]
        bias = self.mlp(pairs) * both[..., None]  # [B, P, P, H]
        return F.pad(bias.permute(0, 3, 1, 2), (registers, 0, registers, 0))
