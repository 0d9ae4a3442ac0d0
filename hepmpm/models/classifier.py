"""Jet taggers: a backbone plus a class-attention pooling head (CaiT / ParT style).

A learned class token attends to the backbone's particle (and register) outputs in one or two
class-attention blocks; its final state is the jet embedding [B, D], and a linear layer turns it
into class logits [B, C]. Only the class token is updated in these blocks, so the particles'
representations are exactly the backbone's, and the head is permutation-invariant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from hepmpm.config import StrictModel
from hepmpm.features import FeatureSet
from hepmpm.models.backbone import Backbone, BackboneConfig


class HeadConfig(StrictModel):
    """The class-attention head."""

    layers: int = Field(2, ge=1, description="class-attention blocks")
    heads: int = Field(8, ge=1, description="attention heads (the backbone's dim must divide)")
    mlp_ratio: float = Field(4.0, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the final linear layer")


class ClassAttentionBlock(nn.Module):
    """cls ← cls + attn(norm(cls), norm([cls; tokens])); cls ← cls + mlp(norm(cls))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.norm_query = nn.LayerNorm(dim)
        self.norm_tokens = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, cls: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``cls`` [B, 1, D], ``tokens`` [B, T, D], ``mask`` [B, T] (True = real) → [B, 1, D]."""
        batch, _, dim = cls.shape
        keys = self.norm_tokens(torch.cat([cls, tokens], dim=1))  # [B, 1+T, D]
        split = dim // self.heads
        q = self.query(self.norm_query(cls)).view(batch, 1, self.heads, split).transpose(1, 2)
        k, v = self.key_value(keys).view(batch, -1, 2, self.heads, split).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # [B, H, 1+T, D/H]
        # The class token always sees itself, so a jet with no particles stays finite.
        attend = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # [B, H, 1, D/H]
        cls = cls + self.out(y.transpose(1, 2).reshape(batch, 1, dim))
        return cls + self.mlp(self.norm_mlp(cls))


class ClassAttentionHead(nn.Module):
    """Particle outputs [B, T, D] + mask [B, T] → (logits [B, C], embedding [B, D])."""

    def __init__(self, dim: int, n_classes: int, config: HeadConfig) -> None:
        super().__init__()
        self.class_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = nn.ModuleList(
            ClassAttentionBlock(dim, config.heads, config.mlp_ratio) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.dropout)
        self.classify = nn.Linear(dim, n_classes)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cls = self.class_token.expand(tokens.shape[0], -1, -1)
        for block in self.blocks:
            cls = block(cls, tokens, mask)
        embedding = self.norm(cls[:, 0])  # [B, D]
        return self.classify(self.dropout(embedding)), embedding


class JetTagger(nn.Module):
    """Raw particle features [B, P, F] + mask [B, P] → (logits [B, C], embedding [B, D]).

    The head reads the backbone's register outputs too (always real tokens).
    """

    def __init__(
        self,
        feature_set: FeatureSet,
        backbone: BackboneConfig,
        head: HeadConfig,
        n_classes: int,
    ) -> None:
        super().__init__()
        self.feature_set = feature_set
        self.backbone = Backbone(feature_set, backbone)
        self.head = ClassAttentionHead(backbone.dim, n_classes, head)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        particles, registers = self.backbone(features, mask)  # [B, P, D], [B, R, D]
        return self.head_outputs(particles, registers, mask)

    def head_outputs(
        self, particles: torch.Tensor, registers: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, C], embedding [B, D]) of the head on backbone outputs: particles
        [B, P, D] with their mask [B, P], registers [B, R, D]."""
        register_mask = torch.ones(registers.shape[:2], dtype=torch.bool, device=mask.device)
        tokens = torch.cat([registers, particles], dim=1)
        return self.head(tokens, torch.cat([register_mask, mask], dim=1))
