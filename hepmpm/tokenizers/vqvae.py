"""VQ-VAE tokenizer over particle sets (MPMv1): each particle's code in the context of its jet.

::

    raw features [B, P, F]
      → ParticleEmbedding (the feature set's normalisation inside)     [B, P, D_enc]
      → set-transformer encoder (no positional encoding)              [B, P, D_enc]
      → linear to the latent                                          [B, P, L]
      → VectorQuantize: nearest of ``codebook_size`` codes            [B, P, L], ids [B, P]
      → linear + small set-transformer decoder                        [B, P, D_dec]
      → heads: normalised continuous features [B, P, F_cont]; id logits [B, P, n_classes]

The loss is the MSE of the *normalised* continuous features over real particles, plus
``id_loss_weight`` × cross-entropy of each categorical feature (``mpm7id``'s particle id), plus
``commitment_weight`` × the commitment loss. The codebook is not learned by gradient but as an
exponential moving average of the latents assigned to each code (``quantizer.decay``),
initialised by k-means on the first batch (``quantizer.kmeans_init``); a code whose average
assignment count drops below ``quantizer.threshold_ema_dead_code`` is re-initialised to a latent
of the current batch. Only real particles reach the quantiser, so padding never shapes the codebook.

The quantiser is ``vector_quantize_pytorch.VectorQuantize`` (lucidrains); its options are named
as there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from hepmpm.config import StrictModel
from hepmpm.features import FeatureSet
from hepmpm.models.backbone import Backbone, BackboneConfig, TransformerEncoder
from hepmpm.tokenizers.base import TokenCounts, Tokenizer, scatter_tokens


class QuantizerConfig(StrictModel):
    """The codebook's training tricks, each a named option of ``VectorQuantize``."""

    kmeans_init: bool = Field(
        True,
        description="initialise the codebook by k-means on the latents of the first training "
        "batch (instead of uniform random codes, most of which would never be used)",
    )
    kmeans_iters: int = Field(10, ge=1, description="k-means iterations of that initialisation")
    threshold_ema_dead_code: float = Field(
        2.0,
        ge=0,
        description="re-initialise a code to a random latent of the batch when its moving-average "
        "number of assigned particles per batch falls below this (0: never); keeps usage high",
    )
    commitment_weight: float = Field(
        0.25,
        ge=0,
        description="weight of the commitment loss |z - sg(q(z))|^2 pulling the encoder's latents "
        "towards their codes (beta of van den Oord et al. 2017)",
    )
    decay: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="exponential-moving-average decay of the codebook update (closer to 1: "
        "slower, smoother codes; use ~0.99 for long runs with large batches)",
    )
    rotation_trick: bool = Field(
        True,
        description="pass gradients through the quantiser with the rotation trick (Fifty et al. "
        "2024) instead of the straight-through estimator",
    )


class VQVAEConfig(StrictModel):
    """Architecture of the VQ-VAE tokenizer (defaults: MPMv1's 512 codes of dimension 16)."""

    encoder: BackboneConfig = Field(
        default_factory=lambda: BackboneConfig(dim=128, depth=4, heads=8, registers=0),
        description="set-transformer encoder over the embedded particles",
    )
    decoder: BackboneConfig = Field(
        default_factory=lambda: BackboneConfig(dim=128, depth=2, heads=8, registers=0),
        description="set-transformer decoder over the quantised latents",
    )
    latent_dim: int = Field(16, ge=1, description="dimension of a code")
    codebook_size: int = Field(512, ge=2, description="number of codes (token ids)")
    quantizer: QuantizerConfig = Field(default_factory=QuantizerConfig)
    id_loss_weight: float = Field(
        1.0, ge=0, description="weight of the cross-entropy of categorical features (mpm7id)"
    )


@dataclass
class VQVAEOutput:
    """One forward pass: reconstructions, their targets, and the quantiser's results.

    Shapes: B jets, P particle slots, N = real particles of the batch (``mask`` order),
    L latent dimension, F_cont continuous features.
    """

    reconstruction: torch.Tensor  #: [B, P, F_cont] predicted normalised continuous features
    target: torch.Tensor  #: [B, P, F_cont] normalised continuous features of the input
    id_logits: list[torch.Tensor]  #: per categorical feature, [B, P, n_classes]
    id_target: torch.Tensor  #: long [B, P, F_cat] categories of the input
    latents: torch.Tensor  #: [N, L] encoder latents of the real particles
    quantised: torch.Tensor  #: [N, L] their codes (values; gradients pass to the latents)
    codes: torch.Tensor  #: long [N] code of each real particle
    tokens: torch.Tensor  #: long [B, P] code per slot, -1 at padding


class SetDecoder(nn.Module):
    """Learned register tokens + a transformer encoder: [B, P, D] + mask [B, P] → [B, P, D]."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.registers = nn.Parameter(torch.randn(config.registers, config.dim) * 0.02)
        self.encoder = TransformerEncoder(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, n = x.shape[0], self.registers.shape[0]
        x = torch.cat([self.registers.expand(batch, -1, -1), x], dim=1)  # [B, R + P, D]
        keep = torch.ones(batch, n, dtype=torch.bool, device=mask.device)
        return self.encoder(x, torch.cat([keep, mask], dim=1))[:, n:]


class VQVAETokenizer(Tokenizer):
    """VQ-VAE over a jet's particles; :meth:`tokenize` gives each real particle its code id."""

    kind = "vqvae"
    config_class = VQVAEConfig

    def __init__(self, feature_set: FeatureSet, config: VQVAEConfig) -> None:
        super().__init__(feature_set, config)
        self.encoder = Backbone(feature_set, config.encoder)
        normalise = self.encoder.embed.normalise
        q = config.quantizer
        self.to_latent = nn.Linear(config.encoder.dim, config.latent_dim)
        self.quantizer = VectorQuantize(
            dim=config.latent_dim,
            codebook_size=config.codebook_size,
            kmeans_init=q.kmeans_init,
            kmeans_iters=q.kmeans_iters,
            threshold_ema_dead_code=q.threshold_ema_dead_code,
            commitment_weight=0.0,  # applied in `losses`, the same in training and evaluation
            decay=q.decay,
            rotation_trick=q.rotation_trick,
            straight_through=False,
        )
        self.from_latent = nn.Linear(config.latent_dim, config.decoder.dim)
        self.decoder = SetDecoder(config.decoder)
        self.continuous_head = nn.Linear(config.decoder.dim, normalise.n_continuous)
        self.id_heads = nn.ModuleList(
            nn.Linear(config.decoder.dim, n) for n in normalise.categories
        )

    @property
    def n_tokens(self) -> int:
        return self.config.codebook_size

    @property
    def codebook(self) -> torch.Tensor:
        """The codes [codebook_size, latent_dim]."""
        return self.quantizer.codebook

    def encode(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Latents of the real particles: raw [B, P, F] + mask [B, P] → [N, L] (mask order)."""
        particles, _ = self.encoder(features, mask)  # [B, P, D_enc]
        return self.to_latent(particles)[mask]  # [N, L]

    def quantize(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents [N, L] → (quantised [N, L], codes long [N]).

        In training mode this also updates the codebook (k-means init, EMA, dead codes). Always
        in float32: codebook statistics must not be accumulated in bf16 under autocast.
        """
        with torch.autocast(latents.device.type, enabled=False):
            # one "sequence" of the N real particles
            quantised, codes, _ = self.quantizer(latents.float()[None])
        return quantised[0], codes[0]

    def decode(
        self, quantised: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Quantised latents [N, L] of the real particles → continuous [B, P, F_cont], logits."""
        slots = quantised.new_zeros((*mask.shape, quantised.shape[-1]))  # [B, P, L]
        slots[mask] = quantised
        x = self.decoder(self.from_latent(slots), mask)  # [B, P, D_dec]
        return self.continuous_head(x), [head(x) for head in self.id_heads]

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> VQVAEOutput:
        target, id_target = self.encoder.embed.normalise(features)  # [B, P, F_cont], [B, P, F_cat]
        latents = self.encode(features, mask)
        quantised, codes = self.quantize(latents)
        reconstruction, id_logits = self.decode(quantised, mask)
        return VQVAEOutput(
            reconstruction=reconstruction,
            target=target,
            id_logits=id_logits,
            id_target=id_target,
            latents=latents,
            quantised=quantised,
            codes=codes,
            tokens=scatter_tokens(codes, mask),
        )

    def losses(self, out: VQVAEOutput, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scalar losses over the real particles: ``reconstruction`` (MSE of the normalised
        continuous features), ``id`` (mean cross-entropy of the categorical features, 0 if none),
        ``commitment`` (unweighted |z - q(z)|^2) and ``loss`` (what training minimises)."""
        reconstruction = F.mse_loss(out.reconstruction[mask].float(), out.target[mask])
        id_loss = reconstruction.new_zeros(())
        for i, logits in enumerate(out.id_logits):
            classes = logits.shape[-1]
            target = out.id_target[..., i][mask].clamp(0, classes - 1)
            id_loss = id_loss + F.cross_entropy(logits[mask].float(), target)
        if out.id_logits:
            id_loss = id_loss / len(out.id_logits)
        # |z - sg(q(z))|^2 with the codes of this forward pass (before its EMA update)
        commitment = F.mse_loss(out.latents.float(), out.quantised.detach().float())
        loss = (
            reconstruction
            + self.config.id_loss_weight * id_loss
            + self.config.quantizer.commitment_weight * commitment
        )
        return {
            "loss": loss,
            "reconstruction": reconstruction,
            "id": id_loss,
            "commitment": commitment,
        }

    @torch.no_grad()
    def tokenize(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Code id of every particle: raw [B, P, F] + mask [B, P] → long [B, P], -1 at padding.

        Runs in evaluation mode (no codebook update) and in float32 even under autocast.
        """
        self._check_inputs(features, mask)
        was_training = self.training
        self.eval()
        try:
            with torch.autocast(features.device.type, enabled=False):
                _, codes = self.quantize(self.encode(features.float(), mask))
        finally:
            self.train(was_training)
        return scatter_tokens(codes, mask)


#: The losses of :meth:`VQVAETokenizer.losses`, in the order :class:`VQVAEMeter` sums them.
LOSS_NAMES = ("loss", "reconstruction", "id", "commitment")


class VQVAEMeter:
    """Particle-weighted mean losses and code counts over many batches."""

    def __init__(self, n_tokens: int, device: torch.device | str = "cpu") -> None:
        # sum of each loss × particles, then the number of particles
        self.sums = torch.zeros(len(LOSS_NAMES) + 1, dtype=torch.float64, device=device)
        self.counts = TokenCounts(n_tokens, device)

    def update(self, losses: dict[str, torch.Tensor], codes: torch.Tensor) -> None:
        n = len(codes)
        values = torch.stack([losses[name].detach().double() for name in LOSS_NAMES])
        self.sums[:-1] += values.to(self.sums.device) * n
        self.sums[-1] += n
        self.counts.update(codes)

    def compute(self, reduce: Any = None) -> dict[str, float]:
        """Mean losses, ``usage``, ``perplexity``, ``used``, ``particles``; ``reduce`` sums a
        tensor over processes (multi-GPU)."""
        sums, counts = self.sums, self.counts
        if reduce is not None:
            sums = reduce(sums.clone())
            counts = TokenCounts(self.counts.n_tokens, sums.device)
            counts.counts = reduce(self.counts.counts.clone())
        n = float(sums[-1])
        metrics: dict[str, float] = {
            name: float(sums[i]) / max(n, 1.0) for i, name in enumerate(LOSS_NAMES)
        }
        return {**metrics, **counts.metrics(), "particles": int(n)}


@torch.no_grad()
def evaluate_vqvae(
    tokenizer: VQVAETokenizer, batches: Any, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Validation metrics of ``tokenizer`` over ``batches`` of :class:`JetBatch` (eval mode)."""
    was_training = tokenizer.training
    tokenizer.eval()
    meter = VQVAEMeter(tokenizer.n_tokens, device)
    try:
        for batch in batches:
            batch = batch.to(device)
            out = tokenizer(batch.features, batch.mask)
            meter.update(tokenizer.losses(out, batch.mask), out.codes)
    finally:
        tokenizer.train(was_training)
    return meter.compute()
