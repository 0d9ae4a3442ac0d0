"""K-means tokenizer (MPMv2's k-means target): each particle's nearest centroid, jet context-free.

A particle is the vector of its normalised continuous features followed by a one-hot block per
categorical feature (``mpm7id``'s 8-class id) scaled by ``id_weight``. The centroids are fitted
with scikit-learn's ``MiniBatchKMeans`` on up to ``max_particles`` particles of the training
split (:func:`fit_kmeans`); :meth:`KMeansTokenizer.tokenize` assigns the nearest centroid in torch.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm

from hepmpm.config import StrictModel
from hepmpm.data.loader import JetBatch
from hepmpm.errors import HepmpmError
from hepmpm.features import FeatureSet
from hepmpm.models.embedding import FeatureNormalisation
from hepmpm.tokenizers.base import TokenCounts, Tokenizer, particle_vectors, scatter_tokens


class KMeansConfig(StrictModel):
    """The k-means tokenizer: number of clusters and how particles become vectors."""

    n_clusters: int = Field(512, ge=2, description="number of centroids (token ids)")
    id_weight: float = Field(
        1.0, ge=0, description="scale of the one-hot blocks of categorical features (mpm7id id)"
    )


class KMeansFitConfig(StrictModel):
    """How the centroids are fitted (scikit-learn ``MiniBatchKMeans``)."""

    max_particles: int = Field(
        1_000_000, ge=1, description="at most this many training-split particles are used"
    )
    batch_size: int = Field(4096, ge=1, description="particles per mini-batch of MiniBatchKMeans")
    max_iter: int = Field(100, ge=1, description="passes over the particles at most")
    n_init: int = Field(3, ge=1, description="initialisations tried; the best inertia is kept")
    seed: int = Field(0, ge=0, description="seeds the particle sample and MiniBatchKMeans")


class KMeansTokenizer(Tokenizer):
    """Nearest-centroid tokenizer; ``centroids`` [n_clusters, D] is a buffer (saved weights)."""

    kind = "kmeans"
    config_class = KMeansConfig

    def __init__(self, feature_set: FeatureSet, config: KMeansConfig) -> None:
        super().__init__(feature_set, config)
        self.normalise = FeatureNormalisation(feature_set)
        dim = self.normalise.n_continuous + sum(self.normalise.categories)
        self.register_buffer("centroids", torch.zeros(config.n_clusters, dim))

    @property
    def n_tokens(self) -> int:
        return self.config.n_clusters

    def vectors(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features [..., F] → the vectors that are clustered [..., D]."""
        return particle_vectors(self.normalise, features, self.config.id_weight)

    def assign(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest centroid of vectors [N, D] → (ids long [N], squared distances [N])."""
        c = self.centroids
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, one [N, K] matrix product.
        distances = (
            vectors.pow(2).sum(-1, keepdim=True) - 2 * vectors @ c.T + c.pow(2).sum(-1)
        )  # [N, K]
        best, ids = distances.min(dim=-1)
        return ids, best.clamp_min(0)

    @torch.no_grad()
    def tokenize(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Centroid id of every particle: raw [B, P, F] + mask [B, P] → long [B, P], -1 at
        padding."""
        self._check_inputs(features, mask)
        with torch.autocast(features.device.type, enabled=False):
            ids, _ = self.assign(self.vectors(features.float()[mask]))
        return scatter_tokens(ids, mask)


def collect_vectors(
    tokenizer: KMeansTokenizer,
    batches: Iterable[JetBatch],
    max_particles: int,
    show_progress: bool = False,
) -> np.ndarray:
    """Vectors [n, D] float32 of the real particles of ``batches``, at most ``max_particles``."""
    parts, n = [], 0
    with tqdm(total=max_particles, disable=not show_progress, desc="particles", unit="") as bar:
        for batch in batches:
            with torch.no_grad():
                vectors = tokenizer.vectors(batch.features[batch.mask]).numpy()
            vectors = vectors[: max_particles - n]
            parts.append(vectors)
            n += len(vectors)
            bar.update(len(vectors))
            if n >= max_particles:
                break
    if not parts:
        return np.zeros((0, tokenizer.centroids.shape[1]), np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def fit_kmeans(
    tokenizer: KMeansTokenizer, vectors: np.ndarray, config: KMeansFitConfig
) -> dict[str, float]:
    """Fit the centroids on ``vectors`` [n, D] in place; metrics of the fit.

    Returns ``inertia`` (sum of squared distances to the nearest centroid),
    ``inertia_per_particle``, ``particles``, ``iterations``, and ``usage``/``perplexity``/``used``
    of the clusters over ``vectors``.
    """
    from sklearn.cluster import MiniBatchKMeans  # only for fitting, not for tokenizing

    k = tokenizer.n_tokens
    if len(vectors) < k:
        raise HepmpmError(
            f"k-means with {k} clusters needs at least {k} particles, the training split has "
            f"{len(vectors)}; use fewer clusters (model.n_clusters) or more jets"
        )
    kmeans = MiniBatchKMeans(
        n_clusters=k,
        batch_size=config.batch_size,
        max_iter=config.max_iter,
        n_init=config.n_init,
        random_state=config.seed,
    )
    kmeans.fit(vectors)
    tokenizer.centroids.copy_(torch.from_numpy(kmeans.cluster_centers_.astype(np.float32)))
    counts = TokenCounts(k)
    ids, _ = tokenizer.assign(torch.from_numpy(vectors))
    counts.update(ids)
    return {
        "inertia": float(kmeans.inertia_),
        "inertia_per_particle": float(kmeans.inertia_) / len(vectors),
        "particles": len(vectors),
        "iterations": int(kmeans.n_iter_),
        **counts.metrics(),
    }


@torch.no_grad()
def evaluate_kmeans(tokenizer: KMeansTokenizer, batches: Iterable[JetBatch]) -> dict[str, float]:
    """Cluster metrics over ``batches``: ``inertia_per_particle``, ``usage``, ``perplexity``,
    ``used``, ``particles``."""
    counts = TokenCounts(tokenizer.n_tokens)
    total, n = 0.0, 0
    for batch in batches:
        ids, distances = tokenizer.assign(tokenizer.vectors(batch.features[batch.mask]))
        counts.update(ids)
        total += float(distances.double().sum())
        n += len(ids)
    return {"inertia_per_particle": total / max(n, 1), "particles": n, **counts.metrics()}
