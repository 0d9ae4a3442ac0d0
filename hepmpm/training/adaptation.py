"""Domain adaptation during fine-tuning: the levers that keep using unlabelled target-domain jets
(collision data, or a shifted simulation) while a tagger learns from labelled simulation.

Each is an option of ``FinetuneConfig.adaptation`` (:class:`AdaptationConfig`), off by default;
``adaptation.target`` names the skim folder of the unlabelled target jets (their labels are
never read) and every lever below draws from it:

- ``mpm_weight``: **masked-particle loss on the target jets** (self-supervised adaptation). Every
  step adds ``mpm_weight`` x the backbone's own pre-training objective on a batch of target jets
  (:class:`AuxiliaryMPM`: the pre-training's decoder and heads from its ``mpm.pt``, sharing the
  tagger's backbone; fresh heads from scratch or when the folder has none).
- ``dann_weight``: **domain-adversarial fine-tuning** (Ganin et al. 2016). A small
  :class:`DomainClassifier` on the tagger's jet embedding tells labelled (sim) from target jets;
  a gradient-reversal layer (:func:`grad_reverse`) hands the backbone and head the negated
  gradient, scaled by ``dann_weight x`` :func:`dann_ramp` (0 at the start, ~1 from half of
  ``dann_ramp_steps`` on, by default the run's schedule). Its AUC on validation jets is logged
  (``val/domain_auc``): how much of the domain the embedding still carries.
- ``target_statistics``: **target-domain statistics** (AdaBN-style). After training, the input
  standardisation (``backbone.standardise_inputs``: the tagger's only normalisation statistics,
  LayerNorm has none) is re-fitted on the target jets; the saved tagger (and so its ONNX export)
  carries them, and ``tagger.json`` keeps the training-domain ones. The test metrics of
  ``metrics.json`` (the labelled skim's own domain) use the training-domain statistics.
- ``dctr``: **reweighting the labelled jets toward the target** (DCTR-style). Before training, a
  logistic regression on the starting backbone's pooled jet embedding tells sim from target
  jets; each labelled jet's classification loss is weighted by w = p/(1-p), clipped to
  [1/``dctr_clip``, ``dctr_clip``] and normalised to mean 1; the effective sample size
  (sum w)^2 / sum w^2 is recorded.

:func:`embedding_domain_auc` measures, after the fact and for any tagger, how well a fresh linear
classifier tells two sets of jets apart from the tagger's embedding (the studies' per-arm
``domain_auc_NAME``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from hepmpm.config import StrictModel
from hepmpm.data.index import JetIndex
from hepmpm.data.loader import JetBatch, JetDataset, make_dataloader
from hepmpm.errors import ConfigError, HepmpmError
from hepmpm.features import FeatureSet
from hepmpm.models.backbone import Backbone
from hepmpm.models.mpm import (
    TOKEN_TARGETS,
    MaskedParticleModel,
    MPMConfig,
    choose_masked,
    mpm_losses,
    pooled_embedding,
)


class AdaptationConfig(StrictModel):
    """``adaptation:`` of a fine-tuning config: the domain-adaptation levers, all off by default."""

    target: str | None = Field(
        None,
        description="skim folder of unlabelled target-domain jets (e.g. collision data); every "
        "lever below reads them, their labels never",
    )
    target_batch_size: int | None = Field(
        None, ge=1, description="target jets per training step (None: data.batch_size)"
    )
    mpm_weight: float = Field(
        0.0, ge=0, description="weight of the masked-particle loss on target jets (0: off)"
    )
    mpm: MPMConfig | None = Field(
        None,
        description="masked-particle objective when no pre-trained heads exist (scratch mode, "
        "or a backbone folder without mpm.pt); None: the pre-training's, else MPMv2 "
        "regression + id",
    )
    dann_weight: float = Field(
        0.0, ge=0, description="largest weight of the reversed domain gradient (0: off)"
    )
    dann_ramp_steps: int | None = Field(
        None,
        ge=1,
        description="steps over which the reversed gradient's weight ramps from 0 to ~1 (full "
        "from half of them on); None: the run's schedule (trainer.schedule_steps or max_steps)",
    )
    dann_hidden: int = Field(64, ge=1, description="hidden width of the domain classifier")
    domain_val_jets: int = Field(
        512, ge=10, description="sim and target validation jets of val/domain_auc (each)"
    )
    target_statistics: bool = Field(
        False,
        description="re-fit the input standardisation on the target jets after training (the "
        "saved tagger is the one for the target domain); needs backbone.standardise_inputs",
    )
    dctr: bool = Field(False, description="weight the labelled jets by p/(1-p) of sim vs target")
    dctr_clip: float = Field(10.0, gt=1, description="weights are clipped to [1/clip, clip]")
    dctr_jets: int = Field(
        2000, ge=20, description="sim and target training jets (each) the DCTR classifier fits"
    )

    def model_post_init(self, _context: object) -> None:
        if self.enabled and self.target is None:
            raise ValueError(
                "adaptation: mpm_weight, dann_weight, target_statistics and dctr read "
                "unlabelled target jets: set adaptation.target to their skim folder"
            )

    @property
    def enabled(self) -> bool:
        """Whether any lever is on."""
        return bool(self.mpm_weight or self.dann_weight or self.target_statistics or self.dctr)

    @property
    def needs_target_batches(self) -> bool:
        """Whether training steps read target jets (the DCTR weights and the statistics are
        fitted once, before and after training)."""
        return bool(self.mpm_weight or self.dann_weight)


# ---------------------------------------------------------------------------- DANN


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad, None


def grad_reverse(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """The identity forward; backward multiplies the gradient by ``-coefficient`` (so what
    precedes it learns to *defeat* what follows it)."""
    return _GradientReversal.apply(x, float(coefficient))


def dann_ramp(progress: float) -> float:
    """DANN's weight schedule 2 / (1 + exp(-10 p)) - 1 at training progress ``p`` in [0, 1]:
    0 at the start (the domain classifier first learns), ~1 from half-way on."""
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0


class DomainClassifier(nn.Module):
    """Jet embedding [B, D] -> domain logit [B] (positive: target domain)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding).squeeze(-1)


def domain_loss(sim_logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the domain classifier: sim jets [B] label 0, target [B'] 1."""
    logits = torch.cat([sim_logits, target_logits]).float()
    truth = torch.cat([torch.zeros_like(sim_logits), torch.ones_like(target_logits)]).float()
    return F.binary_cross_entropy_with_logits(logits, truth)


# ---------------------------------------------------------------------------- target batches


class TargetBatches:
    """Shuffled batches of the target jets, one per training step, chosen by the step number
    alone (epoch ``step // len``, its ``step % len``-th batch), so that a resumed run reads the
    same target jets at the same steps."""

    def __init__(self, dataset: JetDataset) -> None:
        if not dataset.drop_last:
            raise ValueError("TargetBatches needs drop_last=True: equal batches every epoch")
        self.dataset = dataset
        self.loader = make_dataloader(dataset)
        self.n_batches = len(self.loader)
        self._iterator: Any = None
        self._next_step: int | None = None

    def batch(self, step: int) -> JetBatch:
        """The target batch of training step ``step``."""
        epoch, position = divmod(int(step), self.n_batches)
        if self._next_step != step or position == 0:
            self.dataset.set_epoch(epoch)
            self._iterator = iter(self.loader)
            for _ in range(position):
                next(self._iterator)
        self._next_step = step + 1
        return next(self._iterator)


def target_dataset(
    skim: str | Path,
    split: str,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    limit: int | None = None,
    feature_names: tuple[str, ...] | None = None,
) -> JetDataset:
    """The jets of ``split`` of the target skim (every class and label, read as unlabelled),
    checked to have the labelled skim's ``feature_names``."""
    path = Path(skim)
    index = JetIndex.from_skim(path)
    if feature_names is not None and index.feature_names != tuple(feature_names):
        raise HepmpmError(
            f"adaptation.target {path}: its feature set ({', '.join(index.feature_names)}) is "
            f"not the labelled skim's ({', '.join(feature_names)})"
        )
    available = len(index.select(split))
    if limit is not None:
        limit = min(limit, available)
    if shuffle:  # drop_last: at least one whole batch
        batch_size = min(batch_size, limit or available)
    return JetDataset(
        index, split, batch_size, limit=limit, shuffle=shuffle, seed=seed,
        drop_last=shuffle, cache=True,
    )  # fmt: skip


# ---------------------------------------------------------------------------- auxiliary MPM


def supported_objective(config: MPMConfig) -> MPMConfig:
    """``config`` without the targets an auxiliary loss on unlabelled jets cannot use: the class
    target (labels) and token targets (a tokenizer); an error when nothing is left."""
    kept = {
        name: weight
        for name, weight in config.targets.items()
        if name != "class" and name not in TOKEN_TARGETS
    }
    if not kept:
        raise HepmpmError(
            f"adaptation.mpm_weight: the pre-training's targets {sorted(config.targets)} need a "
            "tokenizer or labels; set adaptation.mpm (e.g. targets: {regression: 1.0, id: 1.0})"
        )
    return config.model_copy(update={"targets": kept})


class AuxiliaryMPM(nn.Module):
    """The masked-particle objective of a pre-training run on the tagger's own backbone.

    ``model`` holds the decoder, mask tokens and heads; its ``backbone`` *is* the tagger's
    (one module registered in both places), so the loss trains the tagger."""

    def __init__(self, model: MaskedParticleModel, backbone: Backbone) -> None:
        super().__init__()
        model.backbone = backbone
        self.model = model

    def own_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters that are not the shared backbone's (its heads, decoder,
        tokens): what the optimizer adds for them."""
        shared = {id(p) for p in self.model.backbone.parameters()}
        return [p for p in self.model.parameters() if id(p) not in shared and p.requires_grad]

    def loss(self, batch: JetBatch, generator: torch.Generator | None) -> torch.Tensor:
        """The weighted masked-particle loss (a scalar) on ``batch`` (labels unused)."""
        config = self.model.config
        masked = choose_masked(batch.mask, config.mask_fraction, generator)
        predictions = self.model(batch.features, batch.mask, masked)
        targets = self.model.targets(batch.features, masked, None)
        losses = mpm_losses(predictions, targets, config.regression_loss)
        return sum(config.targets[name] * value for name, value in losses.items())


def auxiliary_mpm(
    backbone: Backbone,
    feature_set: FeatureSet,
    pretraining: Path | None,
    fallback: MPMConfig | None,
) -> tuple[AuxiliaryMPM, str]:
    """The :class:`AuxiliaryMPM` of ``backbone`` and where its heads come from: the
    pre-training folder's ``mpm.pt`` (its recorded objective, token and class targets dropped)
    when ``pretraining`` has one, else fresh heads for ``fallback`` (default MPMv2 regression +
    id). Built under a forked RNG: fresh heads leave the tagger's seeded stream alone."""
    record: dict[str, Any] = {}
    if pretraining is not None:
        from hepmpm.models.store import read_backbone_record

        record = read_backbone_record(pretraining)
    whole = None if pretraining is None else Path(pretraining) / "mpm.pt"
    if whole is not None and whole.is_file() and record.get("mpm"):
        config = supported_objective(MPMConfig.model_validate(record["mpm"]))
        source = f"{whole}"
    else:
        whole = None
        default = MPMConfig(mode="v2", targets={"regression": 1.0, "id": 1.0})
        config = supported_objective(fallback or default)
        source = "fresh heads"
    with torch.random.fork_rng(devices=[]):
        model = MaskedParticleModel(feature_set, backbone.config, config)
    if whole is not None:
        state = torch.load(whole, map_location="cpu", weights_only=True)
        wanted = model.state_dict()
        # The backbone's weights are the tagger's (loaded from backbone.pt); the heads of
        # dropped targets are not needed.
        kept = {k: v for k, v in state.items() if k in wanted and not k.startswith("backbone.")}
        missing = [k for k in wanted if k not in kept and not k.startswith("backbone.")]
        if missing:
            raise HepmpmError(f"{whole} lacks {missing} of its recorded objective")
        model.load_state_dict(kept, strict=False)
    return AuxiliaryMPM(model, backbone), source


# ---------------------------------------------------------------------------- DCTR weights


def dctr_weights(probability: np.ndarray, clip: float) -> np.ndarray:
    """Per-jet weights [N] from the classifier's target probability p [N] of N labelled jets:
    w = p / (1 - p) (the likelihood ratio target/sim for balanced training classes), clipped
    to [1/clip, clip], normalised to mean 1."""
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-6, 1 - 1e-6)
    weights = np.clip(p / (1 - p), 1.0 / clip, clip)
    return weights / weights.mean()


def effective_sample_size(weights: np.ndarray) -> float:
    """(sum w)^2 / sum w^2: how many unweighted jets the weighted set is worth."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / np.square(w).sum())


def fit_domain_classifier(sim: np.ndarray, target: np.ndarray, seed: int = 0) -> Any:
    """A standardised logistic regression of target (1) vs sim (0) on embeddings [N, D],
    [M, D], the two sets balanced (the larger one subsampled) so p/(1-p) is the density ratio."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(sim), len(target))
    sim = sim[rng.permutation(len(sim))[:n]]
    target = target[rng.permutation(len(target))[:n]]
    x = np.concatenate([sim, target])
    y = np.concatenate([np.zeros(n), np.ones(n)])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    return model.fit(x, y)


def separability_auc(first: np.ndarray, second: np.ndarray, seed: int = 0) -> float:
    """How well a linear classifier tells ``second`` [M, D] from ``first`` [N, D]: the ROC AUC
    of 2-fold cross-validated :func:`fit_domain_classifier` scores (0.5: indistinguishable)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = min(len(first), len(second))
    if n < 4:
        raise HepmpmError(f"a domain AUC needs at least 4 jets of each set, got {n}")
    a = first[rng.permutation(len(first))[:n]]
    b = second[rng.permutation(len(second))[:n]]
    half = n // 2
    scores, truth = [], []
    for fit, score in ((slice(0, half), slice(half, n)), (slice(half, n), slice(0, half))):
        model = fit_domain_classifier(a[fit], b[fit], seed)
        scores.append(model.predict_proba(np.concatenate([a[score], b[score]]))[:, 1])
        truth.append(np.r_[np.zeros(len(a[score])), np.ones(len(b[score]))])
    return float(roc_auc_score(np.concatenate(truth), np.concatenate(scores)))


@torch.no_grad()
def backbone_embeddings(backbone: Backbone, dataset: JetDataset) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone embeddings [N, 2D] (:func:`~hepmpm.models.mpm.pooled_embedding`) of
    every jet of ``dataset`` and their JetIndex positions [N] (the backbone is left in
    evaluation mode, on the CPU)."""
    backbone.eval().cpu()
    out, ids = [], []
    for batch in make_dataloader(dataset):
        particles, registers = backbone(batch.features, batch.mask)
        out.append(pooled_embedding(particles, registers, batch.mask).float().numpy())
        ids.append(batch.jet_id.numpy())
    return np.concatenate(out), np.concatenate(ids)


@torch.no_grad()
def tagger_embeddings(tagger: nn.Module, dataset: JetDataset) -> np.ndarray:
    """The jet embeddings [N, D] a tagger (hepmpm's or ParT) classifies, of every jet of
    ``dataset`` (the tagger is left in evaluation mode, on the CPU)."""
    tagger.eval().cpu()
    out = [tagger(b.features, b.mask)[1].float().numpy() for b in make_dataloader(dataset)]
    return np.concatenate(out)


def embedding_domain_auc(
    tagger: nn.Module, first: JetDataset, second: JetDataset, seed: int = 0
) -> float:
    """:func:`separability_auc` of the ``tagger``'s embeddings of two sets of jets (e.g. the sim
    test split and a data sample): how much of the domain the embedding carries."""
    embedded = tagger_embeddings(tagger, first), tagger_embeddings(tagger, second)
    return separability_auc(*embedded, seed)


def check_target(config: AdaptationConfig, feature_names: tuple[str, ...]) -> None:
    """An error, before any work, when the levers' target skim is missing, empty or of
    another feature set than the labelled skim's ``feature_names``."""
    if config.enabled:
        for split in ("train", "val") if config.dann_weight else ("train",):
            target_dataset(config.target, split, 1, shuffle=False, seed=0,
                           feature_names=feature_names)  # fmt: skip


def check_levers(config: AdaptationConfig, model: str, standardises_inputs: bool) -> None:
    """Errors, before any work, for levers the tagger cannot take."""
    if config.enabled and model != "hepmpm":
        raise ConfigError("adaptation levers act on hepmpm taggers; model: part takes none")
    if config.target_statistics and not standardises_inputs:
        raise ConfigError(
            "adaptation.target_statistics re-fits the input standardisation, but the backbone "
            "has backbone.standardise_inputs off (pre-train with it, or set it for scratch)"
        )
