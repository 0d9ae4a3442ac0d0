"""Scoring a tagger on the jets of a skim folder: its class probabilities and test metrics.

What studies, the quickstart, examples and fine-tuning itself use to judge a tagger, saved
(:func:`hepmpm.models.store.load_run_tagger`) or in training: :func:`predict` runs it over a
:class:`~hepmpm.data.loader.JetDataset`, :func:`test_scores` over a split of a skim folder with
the truth as output positions, :func:`evaluate_tagger` gives their
:func:`~hepmpm.evaluation.metrics.classification_metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hepmpm.data.index import JetIndex
from hepmpm.data.loader import JetDataset, make_dataloader
from hepmpm.errors import HepmpmError
from hepmpm.evaluation.metrics import classification_metrics
from hepmpm.jetclass import CLASS_NAMES
from hepmpm.models.part import ParTTagger
from hepmpm.models.store import Tagger


@torch.no_grad()
def predict(
    tagger: Tagger, dataset: JetDataset, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities [N, C] (float32, softmax) and JetClass labels [N] of every jet of
    ``dataset``, in its selection's order whatever order its batches come in (a ``bucket``
    dataset pads less; the tagger is left in evaluation mode on ``device``)."""
    tagger.eval().to(device)
    scores, labels, ids = [], [], []
    for batch in make_dataloader(dataset):
        logits, _ = tagger(batch.features.to(device), batch.mask.to(device))
        scores.append(logits.float().softmax(-1).cpu().numpy())
        labels.append(batch.labels.numpy())
        ids.append(batch.jet_id.numpy())
    order = np.argsort(dataset.order_of(np.concatenate(ids)))
    return np.concatenate(scores)[order], np.concatenate(labels)[order]


def n_outputs(tagger: Tagger) -> int:
    """The number of classes C a tagger scores."""
    # JetTagger has no attribute for it (yet): its head's final layer says.
    if isinstance(tagger, ParTTagger):
        return tagger.n_outputs
    return tagger.head.classify.out_features


def test_scores(
    tagger: Tagger,
    data: Path | JetIndex,
    labels: list[int],
    split: str | None = "test",
    domains: list[str] | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scores [N, C] of ``tagger`` on the jets of ``split`` (``None``: all) and ``domains`` of a
    skim folder (or its index) whose label is one of ``labels`` (the JetClass label of each
    tagger output, as in ``tagger.json``), their true output positions [N] (0..C-1) and the
    class names [C]: the inputs of :func:`~hepmpm.evaluation.metrics.classification_metrics`."""
    index = data if isinstance(data, JetIndex) else JetIndex.from_skim(data)
    if n_outputs(tagger) != len(labels):
        raise HepmpmError(
            f"the tagger has {n_outputs(tagger)} outputs, but {len(labels)} labels were given"
        )
    dataset = JetDataset(index, split, batch_size, labels=labels, domains=domains, bucket=True)
    scores, truth = predict(tagger, dataset, device)
    position = np.full(len(CLASS_NAMES), -1, dtype=np.int64)
    position[labels] = np.arange(len(labels))
    return scores, position[truth], [CLASS_NAMES[label] for label in labels]


def evaluate_tagger(
    tagger: Tagger, data: Path | JetIndex, labels: list[int], *where: Any, **how: Any
) -> dict[str, Any]:
    """Metrics (:func:`~hepmpm.evaluation.metrics.classification_metrics`) of ``tagger`` on the
    jets :func:`test_scores` scores (``where``/``how``: its ``split``, ``domains``,
    ``batch_size``, ``device``)."""
    return classification_metrics(*test_scores(tagger, data, labels, *where, **how))
