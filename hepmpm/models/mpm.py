"""Masked particle modelling: which particles to mask, what to predict, and the two model modes.

- ``v1`` (MPMv1): masked particles' embeddings are replaced by a learned mask token; the heads
  read the backbone's outputs at the masked positions.
- ``v2`` (MPMv2, MAE-like): masked particles are dropped from the encoder (excluded by the
  key mask); a small transformer decoder gets the visible encoder outputs plus a null token at
  each masked position and predicts the masked particles.

The backbone sees no positions, but masked slots must be told apart (else every masked
particle of a jet gets the same prediction). ``mask_position`` says how:

- ``rank``: the particle's pT rank among all of the jet's particles (the shards are pT-ordered)
  through a sinusoidal code. This leaks: with the visible particles' pT known, a rank pins the
  masked particle's pT between its neighbours', so pT-like targets need no understanding.
- ``order`` (JetSSL-Lite's MPM): the k-th masked particle of a jet (in pT order among the masked
  ones only) gets the k-th of a table of learned tokens; it says "the hardest masked one", not
  where it sits among the visible ones.
- ``none``: one token for all (the task then predicts a distribution per jet, not per slot).

Targets (several at once, each with a weight): ``vqvae`` / ``kmeans`` (token id of a fitted
tokenizer, cross-entropy), ``regression`` (the normalised continuous features, MSE or Huber:
``regression_loss``), ``id`` (the 8-class particle type, cross-entropy), and ``class``: the
jet's class from its pooled embedding (joint MPM + supervised pre-training, arXiv 2606.14870),
counted only on jets whose JetClass label is in ``class_labels`` and whose domain is in
``class_domains`` (others are unlabelled and contribute the masked-particle targets alone).
Particle losses count masked particles only.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from hepmpm.config import StrictModel
from hepmpm.features import PARTICLE_ID_CLASSES, FeatureSet
from hepmpm.jetclass import CLASS_NAMES
from hepmpm.models.backbone import Backbone, BackboneConfig, TransformerEncoder

TOKEN_TARGETS = ("vqvae", "kmeans")
TARGETS = (*TOKEN_TARGETS, "regression", "id", "class")
#: Rows of the ``order`` table of learned mask tokens (masked particles beyond share the last).
MAX_ORDER_TOKENS = 128


class DecoderConfig(StrictModel):
    """The v2 decoder: a small transformer over visible outputs + null tokens."""

    dim: int = Field(64, ge=8)
    depth: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)


class MPMConfig(StrictModel):
    """Masking mode, fraction and targets (name → loss weight)."""

    mode: Literal["v1", "v2"] = "v1"
    mask_fraction: float = Field(0.4, gt=0, lt=1, description="fraction of each jet's particles")
    targets: dict[str, float] = Field(default_factory=lambda: {"vqvae": 1.0})
    mask_position: Literal["rank", "order", "none"] = "rank"
    regression_loss: Literal["mse", "huber"] = Field(
        "mse", description="loss of the regression target (huber: delta 1 on normalised values)"
    )
    standardise_regression: bool = Field(
        False,
        description="regress each feature in units of its spread over the training jets: the "
        "feature set's transforms leave Δη, Δφ with a spread ~0.1, so without this the loss "
        "barely sees where a masked particle is",
    )
    class_labels: list[int] | None = Field(
        None,
        description="class target: JetClass labels it may use (None: every labelled jet); "
        "jets of other labels count as unlabelled",
    )
    class_domains: list[str] | None = Field(
        None,
        description="class target: domains whose labels it may use (e.g. [sim] when pre-training "
        "on data and simulation together: pseudo-data's truth is for evaluation only; None: "
        "every domain); jets of other domains count as unlabelled",
    )
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)

    def model_post_init(self, _context: object) -> None:
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ValueError(f"targets must be among {', '.join(TARGETS)}; got {unknown or 'none'}")
        if sum(t in TOKEN_TARGETS for t in self.targets) > 1:
            raise ValueError("use one token target (vqvae or kmeans): there is one tokenizer")
        if set(self.targets) == {"class"}:
            raise ValueError("the class target needs a masked-particle target beside it")
        bad = [v for v in self.class_labels or [] if not 0 <= v < len(CLASS_NAMES)]
        if bad:
            raise ValueError(f"class_labels must be JetClass labels 0..{len(CLASS_NAMES) - 1}")


def choose_masked(
    mask: torch.Tensor, fraction: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Masked particles [B, P] bool: ``round(fraction * n)`` of each jet's ``n`` real particles,
    at least one, and at most ``n - 1`` so that something stays visible (for ``n > 1``)."""
    n = mask.sum(1)
    k = torch.clamp(torch.round(fraction * n), min=1)
    k = torch.minimum(k, torch.clamp(n - 1, min=1))
    scores = torch.rand(mask.shape, generator=generator, device=mask.device)
    scores = scores.masked_fill(~mask, 2.0)  # padded particles sort last
    rank = scores.argsort(1).argsort(1)
    return (rank < k[:, None]) & mask


def rank_code(n_positions: int, dim: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal code of positions 0..n-1 [n, dim] (the pT rank of a masked particle)."""
    position = torch.arange(n_positions, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(1e4) / dim))
    code = torch.zeros(n_positions, dim, device=device)
    code[:, 0::2] = torch.sin(position * frequency)
    code[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return code


def particle_class(raw: torch.Tensor, feature_set: FeatureSet) -> torch.Tensor:
    """The 8-class particle type [B, P] (:data:`PARTICLE_ID_CLASSES`) from raw features."""
    names = feature_set.names
    if "id" in names:
        return raw[..., names.index("id")].round().long()
    f = {n: raw[..., names.index(n)] for n in names}
    positive = (f["part_charge"] > 0).long()
    return torch.where(
        f["part_isElectron"] > 0.5, 4 + positive,
        torch.where(f["part_isMuon"] > 0.5, 6 + positive,
        torch.where(f["part_isChargedHadron"] > 0.5, 1 + 2 * positive,
        torch.where(f["part_isPhoton"] > 0.5, 0, 2))),
    )  # fmt: skip


class MaskedParticleModel(nn.Module):
    """Backbone + masking + prediction heads; ``forward`` returns per-target logits/predictions
    at the masked positions ([M, ·] with M masked particles in the batch)."""

    def __init__(
        self,
        feature_set: FeatureSet,
        backbone: BackboneConfig,
        config: MPMConfig,
        n_tokens: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.feature_set = feature_set
        self.backbone = Backbone(feature_set, backbone)
        dim = backbone.dim
        self.mask_token = nn.Parameter(torch.randn(dim) * 0.02)
        head_dim = dim
        if config.mode == "v2":
            decoder = config.decoder
            head_dim = decoder.dim
            self.to_decoder = nn.Linear(dim, decoder.dim)
            self.null_token = nn.Parameter(torch.randn(decoder.dim) * 0.02)
            self.decoder = TransformerEncoder(
                BackboneConfig(dim=decoder.dim, depth=decoder.depth, heads=decoder.heads)
            )
        if config.mask_position == "order":
            self.order_tokens = nn.Parameter(torch.randn(MAX_ORDER_TOKENS, head_dim) * 0.02)
        n_continuous = self.backbone.embed.normalise.n_continuous
        # Per-feature shift and scale of the regression targets (identity unless set by
        # set_target_statistics); buffers, so checkpoints and resumes keep them.
        self.register_buffer("target_mean", torch.zeros(n_continuous))
        self.register_buffer("target_std", torch.ones(n_continuous))
        outputs = {
            "regression": n_continuous,
            "id": len(PARTICLE_ID_CLASSES),
        }
        self.heads = nn.ModuleDict()
        for target in config.targets:
            if target == "class":  # on the pooled jet embedding [mean particle; mean register]
                self.heads[target] = nn.Linear(2 * dim, len(CLASS_NAMES))
                continue
            if target in TOKEN_TARGETS:
                if not n_tokens:
                    raise ValueError(f"target {target!r} needs a tokenizer (its number of tokens)")
                outputs[target] = n_tokens
            self.heads[target] = nn.Linear(head_dim, outputs[target])

    @property
    def needs_target_statistics(self) -> bool:
        """Whether the regression targets are to be standardised and are not fitted yet."""
        config = self.config
        wanted = config.standardise_regression and "regression" in config.targets
        return wanted and bool((self.target_std == 1).all())

    @torch.no_grad()
    def set_target_statistics(self, continuous: torch.Tensor) -> None:
        """Standardise the regression targets with the per-feature mean and std of
        ``continuous`` [n, F_cont]: normalised continuous features of real particles."""
        self.target_mean.copy_(continuous.mean(0))
        self.target_std.copy_(continuous.std(0).clamp_min(1e-3))

    def _position_code(self, masked: torch.Tensor, dim: int) -> torch.Tensor:
        """What tells masked slots apart: [B or 1, P or 1, dim] (see ``mask_position``)."""
        if self.config.mask_position == "none":
            return torch.zeros(1, 1, dim, device=masked.device)
        if self.config.mask_position == "order":
            order = (masked.long().cumsum(1) - 1).clamp(0, MAX_ORDER_TOKENS - 1)  # [B, P]
            return self.order_tokens[order]
        return rank_code(masked.shape[1], dim, masked.device)[None]

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor, masked: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        tokens = self.backbone.embed(features)  # [B, P, D]
        if self.config.mode == "v1":
            fill = self.mask_token + self._position_code(masked, tokens.shape[-1])
            tokens = torch.where(masked[..., None], fill.to(tokens.dtype), tokens)
            # Pair features of the particles it does not hide: a masked particle's kinematics
            # must not reach the encoder through its pairs.
            outputs, registers = self.backbone.encode_embedded(
                tokens, mask, features, mask & ~masked
            )
            encoded, visible = outputs, mask
        else:
            visible = mask & ~masked
            encoded, registers = self.backbone.encode_embedded(tokens, visible, features)
            x = self.to_decoder(torch.cat([registers, encoded], dim=1))
            fill = self.null_token + self._position_code(masked, x.shape[-1])
            n_registers = registers.shape[1]
            particles = torch.where(masked[..., None], fill.to(x.dtype), x[:, n_registers:])
            x = torch.cat([x[:, :n_registers], particles], dim=1)
            register_mask = torch.ones(
                mask.shape[0], n_registers, dtype=torch.bool, device=mask.device
            )
            outputs = self.decoder(x, torch.cat([register_mask, visible | masked], dim=1))
            outputs = outputs[:, n_registers:]
        at_masked = outputs[masked]  # [M, D]
        predictions = {}
        for target, head in self.heads.items():
            if target == "class":
                predictions[target] = head(pooled_embedding(encoded, registers, visible))  # [B, C]
            else:
                predictions[target] = head(at_masked)
        return predictions

    def targets(
        self,
        features: torch.Tensor,
        masked: torch.Tensor,
        tokens: torch.Tensor | None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """What each head should predict: at the masked positions ([M] ids or [M, F] values);
        for ``class``, the JetClass label of each jet [B] (-1: unlabelled, or not allowed)."""
        out = {}
        for target in self.config.targets:
            if target == "class":
                if labels is None:
                    raise ValueError("the class target needs the jets' labels")
                allowed = labels >= 0
                if self.config.class_labels is not None:
                    chosen = torch.tensor(self.config.class_labels, device=labels.device)
                    allowed &= torch.isin(labels, chosen)
                out[target] = torch.where(allowed, labels, torch.full_like(labels, -1))
            elif target in TOKEN_TARGETS:
                out[target] = tokens[masked]
            elif target == "regression":
                continuous, _ = self.backbone.embed.normalise(features)
                out[target] = (continuous[masked] - self.target_mean) / self.target_std
            else:
                out[target] = particle_class(features, self.feature_set)[masked]
        return out


def pooled_embedding(
    particles: torch.Tensor, registers: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Jet embedding [B, 2D]: mean of the particle outputs [B, P, D] over ``mask`` [B, P],
    beside the mean of the register outputs [B, R, D] (zeros without registers)."""
    weights = mask[..., None].to(particles.dtype)
    mean = (particles * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    summary = registers.mean(1) if registers.shape[1] else torch.zeros_like(mean)
    return torch.cat([mean, summary], dim=-1)


def mpm_losses(
    predictions: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    regression_loss: str = "mse",
) -> dict[str, torch.Tensor]:
    """Loss per target: cross-entropy for ids/tokens/classes (the class target averages over
    labelled jets only, 0 for a batch without any), MSE or Huber for regression."""
    losses = {}
    for name, prediction in predictions.items():
        target = targets[name]
        if name == "regression":
            loss = F.huber_loss if regression_loss == "huber" else F.mse_loss
            losses[name] = loss(prediction.float(), target)
        elif name == "class":
            total = F.cross_entropy(prediction.float(), target, ignore_index=-1, reduction="sum")
            losses[name] = total / (target >= 0).sum().clamp_min(1)
        else:
            losses[name] = F.cross_entropy(prediction.float(), target)
    return losses
