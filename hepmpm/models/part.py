"""weaver-core's Particle Transformer (ParT) as a hepmpm tagger: a reference arm from scratch.

:class:`ParTTagger` has :class:`~hepmpm.models.classifier.JetTagger`'s interface (raw features
[B, P, F] in feature-set order + mask [B, P] → logits [B, C], embedding [B, D]), so hepmpm's
fine-tuning trains, validates and tests it exactly like its own taggers. The network is
``weaver.nn.model.ParticleTransformer`` itself (imported, not copied), configured as in weaver's
``networks/example_ParticleTransformer.py`` for JetClass (kinematics + particle id, 4-vector pair
features); :class:`PartConfig` allows a smaller one. weaver-core is imported only when a
:class:`ParTTagger` is built (``pip install weaver-core --no-deps``: ParT needs only torch).

What ParT is handed, built from the raw features inside the model:

- ``x`` (N, C, P): the feature set's own normalisation (:class:`FeatureNormalisation`, for
  ``part17`` the same weaver ``clip((x - sub) * mul, -5, 5)`` transforms ParT's JetClass inputs
  use), categorical features one-hot encoded (``part17`` has none: charge and the particle-type
  flags are numbers already), and 0 at padded slots, as weaver pads its standardised inputs.
- ``v`` (N, 4, P): (px, py, pz, E) for the pairwise features (ln kT, ln z, ln ΔR, ln m²) from
  the particle's pT, Δη and Δφ to the jet axis, massless; 0 at padded slots.
- ``mask`` (N, 1, P): 1 for real particles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from hepmpm.config import StrictModel
from hepmpm.errors import HepmpmError
from hepmpm.features import FeatureSet
from hepmpm.models.embedding import FeatureNormalisation
from hepmpm.models.pairs import ParticleKinematics


class FcLayer(StrictModel):
    """A hidden layer between ParT's class token and its final linear layer (weaver's
    ``fc_params`` entry ``(units, dropout)``, ReLU)."""

    units: int = Field(ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class PartConfig(StrictModel):
    """Size of the ParT; the defaults are weaver's JetClass configuration (8 blocks of 128)."""

    num_layers: int = Field(8, ge=1, description="particle-attention blocks")
    embed_dims: list[int] = Field(
        default_factory=lambda: [128, 512, 128],
        min_length=1,
        description="the particle embedding MLP's widths; the last is the blocks' width",
    )
    pair_embed_dims: list[int] = Field(
        default_factory=lambda: [64, 64, 64],
        min_length=1,
        description="the pair-feature embedding's widths (then one per attention head)",
    )
    num_heads: int = Field(8, ge=1, description="attention heads (must divide embed_dims[-1])")
    num_cls_layers: int = Field(2, ge=1, description="class-attention blocks")
    fc_params: list[FcLayer] = Field(
        default_factory=list, description="hidden layers before the classifier ([]: none)"
    )

    def model_post_init(self, _context: object) -> None:
        if self.embed_dims[-1] % self.num_heads:
            raise HepmpmError(
                f"part.num_heads = {self.num_heads} does not divide part.embed_dims[-1] = "
                f"{self.embed_dims[-1]}"
            )


def _particle_transformer() -> type[nn.Module]:
    try:
        from weaver.nn.model.ParticleTransformer import ParticleTransformer
    except ImportError:
        raise HepmpmError("ParT needs weaver-core: pip install weaver-core --no-deps") from None
    return ParticleTransformer


class ParTTagger(nn.Module):
    """Raw particle features [B, P, F] + mask [B, P] (True = real) → (logits [B, C],
    embedding [B, D]).

    The embedding is the input of ParT's final linear layer: the normalised class token
    (D = ``embed_dims[-1]``), or the last ``fc_params`` layer's output (D = its ``units``).
    That layer is taken out of weaver's ``fc`` into :attr:`classify` (weaver's initialisation
    kept), so both outputs come from one forward pass.

    In training mode weaver's ``SequenceTrimmer`` is on, as in weaver (after 5 warm-up calls it
    shuffles the particles and trims the padding of each batch); its input BatchNorms see the
    zeroed padded slots of a batch, as in weaver. In evaluation mode the output depends on the
    real particles only, in any order.
    """

    def __init__(self, feature_set: FeatureSet, config: PartConfig, n_classes: int) -> None:
        super().__init__()
        kinematics = ParticleKinematics(feature_set, "ParT")  # before the import: errors first
        ParticleTransformer = _particle_transformer()
        self.feature_set = feature_set
        self.config = config
        self.normalise = FeatureNormalisation(feature_set)
        self.kinematics = kinematics
        input_dim = self.normalise.n_continuous + sum(self.normalise.categories)
        # weaver's networks/example_ParticleTransformer.py for JetClass (kinpid + 4-vectors).
        self.part = ParticleTransformer(
            input_dim=input_dim,
            num_classes=n_classes,
            pair_input_dim=4,
            use_pre_activation_pair=False,
            embed_dims=list(config.embed_dims),
            pair_embed_dims=list(config.pair_embed_dims),
            num_heads=config.num_heads,
            num_layers=config.num_layers,
            num_cls_layers=config.num_cls_layers,
            block_params=None,
            cls_block_params={"dropout": 0, "attn_dropout": 0, "activation_dropout": 0},
            fc_params=[(layer.units, layer.dropout) for layer in config.fc_params],
            activation="gelu",
            trim=True,
            for_inference=False,
        )
        # weaver's fc is [hidden layers..., Linear(·, n_classes)]: keep the hidden layers in
        # ParT, so that it returns the embedding, and apply the last one here.
        *hidden, last = self.part.fc
        if not isinstance(last, nn.Linear):
            raise HepmpmError(
                f"weaver's ParticleTransformer.fc ends in {type(last).__name__}, not Linear: "
                "this weaver-core version is not one hepmpm supports"
            )
        self.part.fc = nn.Sequential(*hidden)
        self.classify = last

    @property
    def n_outputs(self) -> int:
        """Number of classes C the tagger scores."""
        return self.classify.out_features

    def no_weight_decay(self) -> set[str]:
        """Parameter names (of this module) weaver keeps out of weight decay."""
        return {f"part.{name}" for name in self.part.no_weight_decay()}

    def part_inputs(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ParT's ``x`` (N, C, P), ``v`` (N, 4, P) = (px, py, pz, E) in GeV, ``mask`` (N, 1, P)
        float from raw ``features`` [N, P, F] and ``mask`` [N, P] bool (True = real).

        The real particles are moved to the front of each jet, in their order: in evaluation
        mode weaver's trimmer cuts every slot past the longest jet's count, so a real particle
        after a padded slot would be lost.
        """
        order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)  # [N, P]
        features = features.gather(1, order[..., None].expand_as(features))
        mask = mask.gather(1, order)
        real = mask[..., None].to(features.dtype)  # [N, P, 1]
        continuous, categories = self.normalise(features)  # [N, P, F_cont], [N, P, F_cat]
        one_hot = [
            F.one_hot(categories[..., i].clamp(0, n - 1), n).to(features.dtype)
            for i, n in enumerate(self.normalise.categories)
        ]
        x = torch.cat([continuous, *one_hot], dim=-1) * real  # [N, P, C]

        pt, eta, phi = self.kinematics(features)  # [N, P] each
        # The particle's momentum in the frame boosted along the beam by the jet's rapidity and
        # rotated by -φ_jet, massless (η = y). ParT's pair features — ln ΔR, ln kT = ln(min pT ΔR),
        # ln z = ln(min pT / (pT_i + pT_j)) and ln m²_ij — use only pT, rapidity and φ
        # differences, and pair masses: all invariant under that boost and rotation, so they
        # are those of the lab-frame (massless) particles.
        px, py = pt * torch.cos(phi), pt * torch.sin(phi)
        pz, energy = pt * torch.sinh(eta), pt * torch.cosh(eta)
        # Padded slots: a zero 4-vector; weaver clamps the logs of the zero pT, ΔR and m² of
        # pairs with one, so they stay finite (and the mask drops them).
        v = torch.stack([px, py, pz, energy], dim=1) * real.transpose(1, 2)  # [N, 4, P]
        return x.transpose(1, 2), v, real.transpose(1, 2)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, v, part_mask = self.part_inputs(features, mask)
        embedding = self.part(x, v=v, mask=part_mask)  # [N, D]
        return self.classify(embedding), embedding

    def extra_repr(self) -> str:
        return f"feature_set={self.feature_set.name}"
