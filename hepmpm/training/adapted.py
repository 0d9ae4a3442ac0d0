"""The domain-adaptation levers wired into a fine-tuning run (:mod:`hepmpm.training.adaptation`
defines them): what :func:`~hepmpm.training.finetune.run_finetune` builds before training
(:func:`prepare_adaptation`), the loss of an adapted training step (:class:`Adaptation`), and
what it does after training (:func:`apply_target_statistics`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hepmpm.data.index import JetIndex
from hepmpm.data.loader import JetBatch, JetDataset
from hepmpm.models.classifier import JetTagger
from hepmpm.training.adaptation import (
    AdaptationConfig,
    AuxiliaryMPM,
    DomainClassifier,
    TargetBatches,
    auxiliary_mpm,
    backbone_embeddings,
    dann_ramp,
    dctr_weights,
    domain_loss,
    effective_sample_size,
    fit_domain_classifier,
    grad_reverse,
    target_dataset,
)
from hepmpm.training.statistics import particle_sample


class Adaptation(nn.Module):
    """The trainable parts of the levers (the domain classifier, the auxiliary MPM's heads) and
    the DCTR weight of every jet of the labelled skim (a buffer: checkpoints keep it)."""

    def __init__(
        self,
        config: AdaptationConfig,
        tagger: JetTagger,
        auxiliary: AuxiliaryMPM | None,
        jet_weights: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.config = config
        self.auxiliary = auxiliary
        self.domain = None
        if config.dann_weight > 0:
            with torch.random.fork_rng(devices=[]):  # the tagger's seeded stream stays as it was
                self.domain = DomainClassifier(tagger.backbone.config.dim, config.dann_hidden)
        self.has_weights = jet_weights is not None
        if jet_weights is not None:
            self.register_buffer("jet_weights", jet_weights.float())

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters to train besides the tagger's (the shared backbone excluded)."""
        params = [] if self.domain is None else list(self.domain.parameters())
        if self.auxiliary is not None:
            params += self.auxiliary.own_parameters()
        return params

    def training_loss(
        self,
        tagger: JetTagger,
        batch: JetBatch,
        target: JetBatch | None,
        classes: torch.Tensor,
        progress: float,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(loss, values to log, logits [B, C]) of one step: the (DCTR-weighted) cross-entropy
        on the labelled ``batch`` (``classes``: output position of each jet [B]) plus the levers
        on the ``target`` batch, at training ``progress`` in [0, 1]."""
        c = self.config
        logits, embedding = tagger(batch.features, batch.mask)  # [B, C], [B, D]
        per_jet = F.cross_entropy(logits, classes, reduction="none")
        logs: dict[str, torch.Tensor] = {"train/loss_class": per_jet.mean()}
        if self.has_weights:
            weights = self.jet_weights[batch.jet_id]
            loss = (weights * per_jet).sum() / weights.sum()
        else:
            loss = per_jet.mean()
        if self.domain is not None and target is not None:
            _, target_embedding = tagger(target.features, target.mask)
            coefficient = c.dann_weight * dann_ramp(progress)
            both = grad_reverse(torch.cat([embedding, target_embedding]), coefficient)
            logits_domain = self.domain(both)
            size = embedding.shape[0]
            adversarial = domain_loss(logits_domain[:size], logits_domain[size:])
            loss = loss + adversarial  # the classifier learns fully; the tagger, reversed
            logs |= {"train/loss_domain": adversarial,
                     "train/dann_coefficient": torch.tensor(coefficient)}  # fmt: skip
        if self.auxiliary is not None and target is not None:
            masked_loss = self.auxiliary.loss(target, generator)
            loss = loss + c.mpm_weight * masked_loss
            logs["train/loss_mpm_target"] = masked_loss
        return loss, logs, logits

    @torch.no_grad()
    def domain_auc(self, tagger: JetTagger, sim: JetDataset, target: JetDataset) -> float:
        """ROC AUC of the domain classifier on the tagger's embeddings of the ``sim`` and
        ``target`` validation jets (0.5: the embedding no longer tells them apart, to it)."""
        from sklearn.metrics import roc_auc_score

        from hepmpm.data.loader import make_dataloader

        device = next(self.domain.parameters()).device
        scores, truth = [], []
        for label, dataset in ((0, sim), (1, target)):
            for batch in make_dataloader(dataset):
                batch = batch.to(device)
                _, embedding = tagger(batch.features, batch.mask)
                scores.append(self.domain(embedding).float().cpu().numpy())
                truth.append(np.full(len(scores[-1]), label))
        return float(roc_auc_score(np.concatenate(truth), np.concatenate(scores)))


@dataclass
class PreparedAdaptation:
    """What a fine-tuning run holds for its levers: the module, the target batches of the
    training steps, the validation jets of ``val/domain_auc``, and what it records."""

    module: Adaptation
    target_batches: TargetBatches | None
    domain_sets: tuple[JetDataset, JetDataset] | None
    record: dict[str, Any] = field(default_factory=dict)


def prepare_adaptation(
    config: AdaptationConfig,
    tagger: JetTagger,
    index: JetIndex,
    labels: list[int],
    domains: list[str] | None,
    n_labelled: int | None,
    batch_size: int,
    seed: int,
    pretraining: Path | None,
) -> PreparedAdaptation:
    """Build the levers of ``config`` for ``tagger`` (its starting weights loaded) fine-tuned
    on the labelled skim ``index`` (the ``labels`` classes of ``domains``, ``n_labelled``
    class-balanced train jets, as :class:`~hepmpm.training.finetune.FinetuneDataModule`
    selects them); ``pretraining``: the backbone's pre-training folder (its MPM heads)."""
    feature_names = index.feature_names
    record: dict[str, Any] = {"target": config.target}
    auxiliary = None
    if config.mpm_weight > 0:
        auxiliary, source = auxiliary_mpm(
            tagger.backbone, tagger.feature_set, pretraining, config.mpm
        )
        record["mpm_heads"] = source
    weights = None
    if config.dctr:
        weights, dctr_record = _dctr(config, tagger, index, labels, domains, n_labelled, seed)
        record |= dctr_record
    module = Adaptation(config, tagger, auxiliary, weights)
    batches = domain_sets = None
    if config.needs_target_batches:
        size = config.target_batch_size or batch_size
        batches = TargetBatches(
            target_dataset(config.target, "train", size, shuffle=True, seed=seed,
                           feature_names=feature_names)
        )  # fmt: skip
    if config.dann_weight > 0:
        n = config.domain_val_jets
        sim = JetDataset(index, "val", 256, labels=labels, domains=domains, limit=_at_most(
            index, "val", labels, domains, n), seed=0)  # fmt: skip
        target = target_dataset(config.target, "val", 256, shuffle=False, seed=0, limit=n,
                                feature_names=feature_names)  # fmt: skip
        domain_sets = (sim, target)
    return PreparedAdaptation(module, batches, domain_sets, record)


def _at_most(
    index: JetIndex, split: str, labels: list[int], domains: list[str] | None, n: int
) -> int:
    return min(n, len(index.select(split, labels, domains)))


def _dctr(
    config: AdaptationConfig,
    tagger: JetTagger,
    index: JetIndex,
    labels: list[int],
    domains: list[str] | None,
    n_labelled: int | None,
    seed: int,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The DCTR weight of every jet of ``index`` [len(index)] (1 but for the labelled training
    jets) and what the run records: the classifier's cross-validated AUC, the weights' spread
    and effective sample size."""
    from hepmpm.training.adaptation import separability_auc

    backbone = tagger.backbone
    was_training = backbone.training
    limit = _at_most(index, "train", labels, domains, config.dctr_jets)
    # Any sim training jets (their labels unused) against target training jets.
    sim_set = JetDataset(
        index, "train", 256, labels=labels, domains=domains, limit=limit, seed=seed + 1
    )
    target_set = target_dataset(
        config.target, "train", 256, shuffle=False, seed=seed, limit=config.dctr_jets,
        feature_names=index.feature_names,
    )  # fmt: skip
    # The same selection as the fine-tuning's training jets.
    labelled = JetDataset(
        index, "train", 256, labels=labels, domains=domains, limit=n_labelled,
        balanced=n_labelled is not None, seed=seed,
    )  # fmt: skip
    device = next(backbone.parameters()).device
    sim, _ = backbone_embeddings(backbone, sim_set)
    target, _ = backbone_embeddings(backbone, target_set)
    classifier = fit_domain_classifier(sim, target, seed)
    jets, positions = backbone_embeddings(backbone, labelled)
    backbone.to(device).train(was_training)
    probability = classifier.predict_proba(jets)[:, 1]
    weights = dctr_weights(probability, config.dctr_clip)
    table = torch.ones(len(index), dtype=torch.float32)
    table[torch.from_numpy(positions)] = torch.from_numpy(weights).float()
    ess = effective_sample_size(weights)
    p = np.clip(probability, 1e-6, 1 - 1e-6)
    ratio = p / (1 - p)
    record = {
        "dctr_classifier_auc": separability_auc(sim, target, seed),
        "dctr_ess": ess,
        "dctr_ess_fraction": ess / len(weights),
        "dctr_weight_min": float(weights.min()),
        "dctr_weight_max": float(weights.max()),
        "dctr_clipped_fraction": float(
            np.mean((ratio > config.dctr_clip) | (ratio < 1 / config.dctr_clip))
        ),
    }
    return table, record


@torch.no_grad()
def apply_target_statistics(
    tagger: JetTagger, config: AdaptationConfig, seed: int
) -> dict[str, Any]:
    """Re-fit the tagger's input standardisation on the target training jets (AdaBN-style) and
    return the training-domain statistics it replaced (for ``tagger.json``)."""
    embed = tagger.backbone.embed
    source = {"input_mean": embed.input_mean.tolist(), "input_std": embed.input_std.tolist()}
    dataset = target_dataset(config.target, "train", 256, shuffle=True, seed=seed,
                             feature_names=tagger.feature_set.names)  # fmt: skip
    device = embed.input_mean.device
    embed.set_input_statistics(particle_sample(embed.normalise, dataset, device, batches=16))
    return {"source_input_statistics": source}
