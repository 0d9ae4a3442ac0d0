"""Linear probes of a backbone's jet embedding: does pre-training learn what a tagger can use?

The probe is the field's health check of self-supervised pre-training (JetSSL-Lite trains one
online): freeze the backbone, embed labelled jets, fit a logistic regression on a few of them
and score it on others. The same probe on the same architecture at random initialisation is the
reference: a transformer with random weights already gives useful features (random projections
of the particles), so only the *gap* between the two says that pre-training learned something.

- :func:`jet_embeddings`: the frozen jet embedding [N, 2D]: the mean of the backbone's particle
  outputs over the real particles, beside the mean of its register outputs (the whole input of
  a tagger head, pooled without learned weights).
- :func:`probe_accuracy`: standardised features, multinomial logistic regression (scikit-learn).
- :class:`OnlineProbe`: a Lightning callback that probes the pre-training backbone at every
  validation and logs ``probe/acc`` beside ``probe/acc_random`` (the mean over
  ``random_draws`` random-init twins, probed once at the start; ``probe/acc_random_std`` their
  spread) and the difference ``probe/gain``. One random draw is not a reference: random
  initialisations of the same backbone differ by 0.01-0.03 in probe accuracy.

Probe jets come from the train split (fitting) and the val split (scoring) of a labelled skim;
never from a test split, so a study's test jets stay unseen.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from pydantic import Field

from hepmpm.config import StrictModel
from hepmpm.data.index import JetIndex
from hepmpm.data.loader import JetDataset, make_dataloader
from hepmpm.errors import HepmpmError
from hepmpm.models.backbone import Backbone
from hepmpm.models.mpm import pooled_embedding


class ProbeConfig(StrictModel):
    """The online linear probe of pre-training (``probe:`` in a pre-training config)."""

    skim: str | None = Field(
        None,
        description="labelled skim folder for the probe (None: no probe); its train split fits "
        "the probe, its val split scores it",
    )
    labels: int = Field(1000, ge=2, description="class-balanced train-split jets to fit on")
    score_jets: int = Field(2000, ge=2, description="class-balanced val-split jets to score on")
    classes: list[int] | None = Field(
        None, description="JetClass labels to probe (None: every labelled class of the skim)"
    )
    batch_size: int = Field(256, ge=1)
    seed: int = Field(0, ge=0, description="which jets are drawn, and the first random twin's init")
    random_draws: int = Field(
        3, ge=1, description="random-init twins (seed, seed + 1, ...): their mean is the reference"
    )


@torch.no_grad()
def jet_embeddings(
    backbone: Backbone, dataset: JetDataset, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Frozen jet embeddings [N, 2D] float32 (mean particle output, mean register output) and
    class labels [N] of every jet of ``dataset``; the backbone's train/eval mode is restored."""
    was_training = backbone.training
    backbone.eval()
    embeddings, labels = [], []
    for batch in make_dataloader(dataset):
        features, mask = batch.features.to(device), batch.mask.to(device)
        particles, registers = backbone(features, mask)  # [B, P, D], [B, R, D]
        embeddings.append(pooled_embedding(particles, registers, mask).float().cpu().numpy())
        labels.append(batch.labels.numpy())
    backbone.train(was_training)
    return np.concatenate(embeddings), np.concatenate(labels)


def probe_accuracy(
    train: tuple[np.ndarray, np.ndarray], score: tuple[np.ndarray, np.ndarray]
) -> float:
    """Accuracy on ``score`` (embeddings [N, E], labels [N]) of a logistic regression fitted on
    ``train`` after standardising each embedding dimension with the train jets' mean and std."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    probe.fit(*train)
    return float(probe.score(*score))


class ProbeSets:
    """The probe's fitting (train split) and scoring (val split) jets of a labelled skim."""

    def __init__(self, config: ProbeConfig, feature_names: tuple[str, ...]) -> None:
        if config.skim is None:
            raise ValueError("ProbeSets needs probe.skim")
        index = JetIndex.from_skim(Path(config.skim))
        if tuple(index.feature_names) != tuple(feature_names):
            raise HepmpmError(
                f"probe.skim {config.skim} has features {list(index.feature_names)}, the "
                f"pre-training skim {list(feature_names)}: skim both with the same feature set"
            )
        classes = config.classes
        if classes is None:
            classes = sorted(int(v) for v in np.unique(index.labels) if v >= 0)
        if len(classes) < 2:
            raise HepmpmError(f"probe.skim {config.skim} needs at least two labelled classes")

        def dataset(split: str, n: int) -> JetDataset:
            return JetDataset(
                index, split, config.batch_size, labels=classes, limit=n, balanced=True,
                seed=config.seed,
            )  # fmt: skip

        self.fit_set = dataset("train", config.labels)
        self.score_set = dataset("val", config.score_jets)

    def accuracy(self, backbone: Backbone, device: torch.device | str = "cpu") -> float:
        """Probe accuracy of ``backbone`` (fitted on the fit set, scored on the score set)."""
        return probe_accuracy(
            jet_embeddings(backbone, self.fit_set, device),
            jet_embeddings(backbone, self.score_set, device),
        )


class OnlineProbe(L.Callback):
    """Probe the module's ``model.backbone`` at every validation (rank 0 computes, all log).

    The random-init twins are deep copies of the backbone re-initialised with seeds
    ``probe.seed``, ``probe.seed + 1``, ... at the first validation (after the module has fitted
    its input standardisation, which the twins share), each probed once; their mean
    and spread are logged at every validation too, so the curves of a run's CSV log can be
    plotted side by side.
    """

    def __init__(self, config: ProbeConfig, feature_names: tuple[str, ...]) -> None:
        self.config = config
        self.sets = ProbeSets(config, feature_names)
        self.random_accuracies: list[float] | None = None

    @staticmethod
    def _backbone(module: L.LightningModule) -> Backbone:
        return module.model.backbone

    def _probe_random_twins(self, pl_module: L.LightningModule) -> None:
        self.random_accuracies = []
        for draw in range(self.config.random_draws):
            twin = copy.deepcopy(self._backbone(pl_module))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.config.seed + draw)
                for module in twin.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
                twin.registers.data.normal_(0, 0.02)
            self.random_accuracies.append(self.sets.accuracy(twin, pl_module.device))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.random_accuracies is None:
            self._probe_random_twins(pl_module)
        accuracy = torch.tensor(0.0, device=pl_module.device)
        if trainer.is_global_zero:
            accuracy += self.sets.accuracy(self._backbone(pl_module), pl_module.device)
        accuracy = trainer.strategy.reduce(accuracy, reduce_op="sum")  # rank 0's value
        draws = np.asarray(self.random_accuracies or [0.0])
        random = float(draws.mean())
        pl_module.log("probe/acc", accuracy, prog_bar=True)
        pl_module.log("probe/acc_random", random)
        pl_module.log("probe/acc_random_std", float(draws.std(ddof=1)) if len(draws) > 1 else 0.0)
        pl_module.log("probe/gain", accuracy - random)

    def state_dict(self) -> dict[str, Any]:
        return {"random_accuracies": self.random_accuracies}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.random_accuracies = state_dict.get("random_accuracies")
