"""The backbone: a pre-norm transformer encoder over a jet's particles (a set transformer).

No positional encoding, so permuting the particles permutes the outputs (tested). Padded
particles are excluded by a key-padding mask; optional register tokens (learned, shared by all
jets) give attention somewhere to park and serve as a jet summary. Attention uses PyTorch's fused
``scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU). With ``pair_bias``,
ParT's pairwise interaction features bias every attention logit (:mod:`hepmpm.models.pairs`);
they depend on pairs, not on order, so the outputs stay permutation equivariant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from hepmpm.config import StrictModel
from hepmpm.features import FeatureSet
from hepmpm.models.embedding import ParticleEmbedding
from hepmpm.models.pairs import PairBias


class BackboneConfig(StrictModel):
    """Size of the encoder. Named sizes: :data:`BACKBONE_SIZES`."""

    dim: int = Field(128, ge=8, description="width of the particle embeddings")
    depth: int = Field(4, ge=1, description="number of transformer blocks")
    heads: int = Field(8, ge=1, description="attention heads (dim must divide)")
    mlp_ratio: float = Field(4.0, gt=0, description="hidden width of the MLP / dim")
    dropout: float = Field(0.0, ge=0, lt=1)
    registers: int = Field(0, ge=0, description="learned register tokens prepended to a jet")
    pair_bias: bool = Field(
        False,
        description="bias attention with ParT's pair features (ln ΔR, ln kT, ln z, ln m²) "
        "through an MLP of width pair_dim, one bias per head",
    )
    pair_dim: int = Field(32, ge=1, description="hidden width of the pair-feature MLP")
    standardise_inputs: bool = Field(
        False,
        description="shift and scale each normalised continuous input feature to zero mean and "
        "unit spread over the training jets (statistics fitted when training starts from random "
        "weights, then kept with the weights), as ParT's input BatchNorm does",
    )

    def model_post_init(self, _context: object) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}")

    def architecture(self) -> dict[str, object]:
        """What fixes the weights' shapes (dropout aside): two backbones with the same
        architecture load each other's weights."""
        return self.model_dump(mode="json", exclude={"dropout"})


#: ``tiny`` for tests (seconds on a CPU), ``compact`` for pre-training on ~1e5 jets with 2 CPU
#: cores (~0.2M parameters), ``small`` for CPU studies (~0.8M parameters), ``base`` for GPUs
#: (MPMv1-like, 8 x 512, ~25M parameters).
BACKBONE_SIZES: dict[str, BackboneConfig] = {
    "tiny": BackboneConfig(dim=32, depth=2, heads=4, registers=1),
    "compact": BackboneConfig(dim=64, depth=4, heads=4, registers=2),
    "small": BackboneConfig(dim=128, depth=4, heads=8, registers=2),
    "base": BackboneConfig(dim=512, depth=8, heads=8, registers=4),
}


class Attention(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        if config.dim % config.heads:
            raise ValueError(f"dim {config.dim} is not a multiple of heads {config.heads}")
        self.heads = config.heads
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.out = nn.Linear(config.dim, config.dim)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """``attend``: bool [B, 1, 1, T] (True = a key to attend to) or a float bias
        [B, H, T, T] added to the logits (−inf for keys not to attend to)."""
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, dim // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, D/H]
        if attend.is_floating_point():
            attend = attend.to(q.dtype)  # bf16 autocast: the mask in the logits' dtype
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        hidden = int(config.dim * config.mlp_ratio)
        self.norm1 = nn.LayerNorm(config.dim)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.dim)
        self.mlp = nn.Sequential(
            nn.Linear(config.dim, hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(hidden, config.dim),
        )

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attend)
        return x + self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    """Blocks over tokens [B, T, D] with a key mask [B, T] (True = real token) → [B, T, D];
    ``bias`` [B, H, T, T]: added to every block's attention logits."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        attend = mask[:, None, None, :]  # [B, 1, 1, T]: every query sees the real keys
        if bias is not None:
            attend = bias.masked_fill(~attend, float("-inf"))
        for block in self.blocks:
            x = block(x, attend)
        return self.norm(x)


class Backbone(nn.Module):
    """Raw particle features [B, P, F] + mask [B, P] → particle outputs [B, P, D].

    ``forward`` also returns the register outputs [B, R, D]. ``encode_embedded`` runs the encoder
    on already-embedded tokens, which masked-particle pre-training uses to swap in mask tokens.
    """

    def __init__(self, feature_set: FeatureSet, config: BackboneConfig) -> None:
        super().__init__()
        self.feature_set = feature_set
        self.config = config
        self.embed = ParticleEmbedding(feature_set, config.dim, config.standardise_inputs)
        self.registers = nn.Parameter(torch.randn(config.registers, config.dim) * 0.02)
        self.encoder = TransformerEncoder(config)
        self.pairs = (
            PairBias(feature_set, config.pair_dim, config.heads) if config.pair_bias else None
        )

    def encode_embedded(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        features: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode embedded particles [B, P, D] → (particles [B, P, D], registers [B, R, D]).

        With ``pair_bias`` the raw ``features`` [B, P, F] give the pair features of the
        ``visible`` particles [B, P] (default: ``mask``; masked particle modelling passes the
        particles it does not hide)."""
        batch = tokens.shape[0]
        registers = self.registers.expand(batch, -1, -1)
        x = torch.cat([registers, tokens], dim=1)
        register_mask = torch.ones(batch, registers.shape[1], dtype=torch.bool, device=mask.device)
        bias = None
        if self.pairs is not None:
            if features is None:
                raise ValueError("a backbone with pair_bias needs the raw features")
            bias = self.pairs(features, mask if visible is None else visible, registers.shape[1])
        x = self.encoder(x, torch.cat([register_mask, mask], dim=1), bias)
        n = registers.shape[1]
        return x[:, n:], x[:, :n]

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_embedded(self.embed(features), mask, features)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
