"""``OnnxTagger``: an exported hepmpm tagger as a ``coffea.ml_tools`` wrapper.

It subclasses :class:`coffea.ml_tools.helper.numpy_call_wrapper`, so one object tags jets given
as numpy arrays, awkward arrays (eager coffea) and dask-awkward arrays (coffea's dask mode, via
``map_partitions``). The onnxruntime session is created lazily, on first use, in the process
that uses it, and is never pickled (coffea's ``nonserializable_attribute``): the wrapper travels
to Dask and process-pool workers as a path plus metadata. CUDA is used when the onnxruntime
build and the machine have it, else the CPU.

Inputs, awkward: the jets' particles ``[N, var, F]`` float (the **raw** features in the model's
order, as :func:`hepmpm.features.compute_features` makes them), or a record array
``[N, var, {feature: value}]`` whose field names are the model's feature names (any order). Jets
are padded to ``max_particles`` slots (longer jets keep their first ones: the skim sorts
particles by pT). Output: probabilities ``[N, C]`` float32 in the order of
:attr:`OnnxTagger.class_names`.

**Batching by multiplicity.** The jets of a call are sorted by particle count and run in
batches of at most ``batch_size`` jets, each padded only to its own longest jet rounded up to a
multiple of :data:`PAD_MULTIPLE` slots, and the scores are put back in the input order
(:func:`multiplicity_batches`). A chunk of real jets (median ~50 particles, a tail to 128) then
costs what its particles cost, not ``N × 128`` slots, and the scores are **bit for bit** those
of one call padded to 128: onnxruntime's float32 reductions over the particles (softmax,
attention, pooling) run in vector blocks, and a length that is not a whole number of blocks
ends in a tail loop that rounds differently (up to 1.5e-6 in the scores at the jet's own
length); whole blocks of zero-padded slots add exact zeros (tested).
:func:`scores_of` does the same from flat per-jet particles without padding the chunk at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from coffea.ml_tools.helper import nonserializable_attribute, numpy_call_wrapper
from hepmpm.export.metadata import ModelInfo, check_features, read_model_info
from hepmpm.export.runtime import default_providers, make_session, run_probs

from hepmpm.errors import HepmpmError
from hepmpm.features import FeatureSet, get_feature_set

#: Jets per onnxruntime call by device. On CPUs small batches of similar multiplicity pad
#: least and per-call overheads stay small (300-jet chunks, median 48 particles: 32 jets per
#: call tag ~3.5x faster than 512); a GPU wants large batches.
DEFAULT_BATCH_SIZE = {"cpu": 32, "cuda": 512}

#: Padded lengths are multiples of this (a whole number of onnxruntime's vector blocks: any
#: multiple of 4 gave scores identical to padding to 128 on AVX2 and AVX-512; 8 for margin).
PAD_MULTIPLE = 8

#: Sessions of this process, by (model file, its size and mtime, threads, providers): the
#: copies of an OnnxTagger that coffea unpickles for each chunk share one warm session.
_SESSIONS: dict[tuple, Any] = {}


def multiplicity_batches(counts: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Jet indices [<= batch_size] per batch, jets sorted by ``counts`` [N] (particles per jet),
    so that each batch pads to a length close to all of its jets'."""
    order = np.argsort(np.asarray(counts), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def padded_width(longest: int, limit: int) -> int:
    """Slots a batch whose longest jet has ``longest`` particles is padded to: the next multiple
    of :data:`PAD_MULTIPLE` (at least one), at most ``limit``."""
    return min(-(-max(int(longest), 1) // PAD_MULTIPLE) * PAD_MULTIPLE, max(int(limit), 1))


def pad_batch(
    flat: np.ndarray, starts: np.ndarray, counts: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Features [B, P, F] float32 (padded slots 0) and mask [B, P] float32 of the jets
    ``flat[starts[i] : starts[i] + counts[i]]`` of ``flat`` [n_particles, F] (each count at most
    ``limit``); P is :func:`padded_width` of the longest."""
    width = padded_width(counts.max(initial=0), limit)
    mask = np.arange(width) < counts[:, None]
    features = np.zeros((len(counts), width, flat.shape[1]), dtype=np.float32)
    features[mask] = flat[(starts[:, None] + np.arange(width))[mask]]
    return features, mask.astype(np.float32)


class OnnxTagger(numpy_call_wrapper, nonserializable_attribute):
    """Tag jets with the hepmpm ONNX model ``model_path`` (either layout).

    Parameters
    ----------
    model_path:
        A file written by ``hepmpm export``; its metadata is read (and checked) here.
    feature_set:
        The feature set the caller's inputs are made of (name or :class:`FeatureSet`); a model
        exported for another set or order is a clear error naming both. ``None``: the model's.
    max_particles:
        Particle slots jets are padded/truncated to (default: the model's ``max_particles``).
    threads:
        onnxruntime intra-op threads (``None``: all cores).
    providers:
        onnxruntime execution providers (default: CUDA if available, then CPU).
    batch_size:
        Jets per onnxruntime call (``None``: :data:`DEFAULT_BATCH_SIZE` of the first provider).
    """

    def __init__(
        self,
        model_path: str | Path,
        feature_set: str | FeatureSet | None = None,
        max_particles: int | None = None,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> None:
        numpy_call_wrapper.__init__(self)
        nonserializable_attribute.__init__(self, ["session"])
        self.model_path = str(Path(model_path).resolve())
        self.info: ModelInfo = read_model_info(Path(self.model_path))
        if isinstance(feature_set, str):
            feature_set = get_feature_set(feature_set)
        check_features(self.info, self.model_path, feature_set)
        self.max_particles = int(max_particles or self.info.max_particles)
        self.threads = threads
        self.providers = list(providers) if providers else None
        first = (self.providers or default_providers())[0]
        self.batch_size = int(
            batch_size or DEFAULT_BATCH_SIZE["cuda" if "CUDA" in first else "cpu"]
        )

    def _create_session(self) -> Any:
        path = Path(self.model_path)
        if not path.is_file():  # moved since __init__: make_session's one-line error
            return make_session(path, self.threads, self.providers)
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, self.threads, tuple(self.providers or ()))
        if key not in _SESSIONS:
            _SESSIONS[key] = make_session(path, self.threads, self.providers)
        return _SESSIONS[key]

    @property
    def feature_set(self) -> FeatureSet:
        """The model's feature set (looked up by name: feature sets hold functions, which plain
        pickle cannot send to workers)."""
        return get_feature_set(self.info.feature_set)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    # -- numpy -------------------------------------------------------------------------------

    def validate_numpy_input(self, pf_features: Any, pf_mask: np.ndarray) -> None:
        """``pf_features`` [N, P, F] (or F columns [N, P]) and ``pf_mask`` [N, P]."""
        n_features = len(pf_features) if isinstance(pf_features, list) else pf_features.shape[-1]
        if n_features != self.feature_set.n_features:
            raise HepmpmError(
                f"{self.model_path} expects {self.feature_set.n_features} features "
                f"({', '.join(self.info.features)}), got {n_features}"
            )
        shape = pf_features[0].shape if isinstance(pf_features, list) else pf_features.shape[:2]
        if tuple(shape) != tuple(np.shape(pf_mask)):
            raise HepmpmError(
                f"pf_mask has shape {np.shape(pf_mask)}, the features {tuple(shape)} (N, P)"
            )

    def numpy_call(self, pf_features: Any, pf_mask: np.ndarray) -> np.ndarray:
        """Probabilities [N, C] float32 of jets: features [N, P, F] raw (or a list of F columns
        [N, P]), mask [N, P] (1/True = particle, padded slots last)."""
        mask = np.asarray(pf_mask, dtype=np.float32)
        features = np.stack(pf_features, axis=-1) if isinstance(pf_features, list) else pf_features
        counts = mask.sum(axis=1).astype(np.int64)  # [N] particles per jet (padding last)
        probs = np.zeros((len(mask), len(self.class_names)), dtype=np.float32)
        for jets in multiplicity_batches(counts, self.batch_size):
            width = padded_width(counts[jets].max(), mask.shape[1])  # this batch's longest jet
            probs[jets] = run_probs(
                self.session, features[jets, :width], mask[jets, :width], self.info.layout
            )
        return probs

    def tag_flat(self, features: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Probabilities [n_jets, C] float32 of jets whose raw particle features lie jet after
        jet in ``features`` [n_particles, F] (``counts`` [n_jets] each, hardest first); jets
        longer than ``max_particles`` keep their first ones. Batched by multiplicity, padded
        per batch: no [n_jets, max_particles, F] array is ever made."""
        features = np.asarray(features, dtype=np.float32)
        counts = np.asarray(counts, dtype=np.int64)
        if features.ndim != 2 or features.shape[1] != self.feature_set.n_features:
            raise HepmpmError(
                f"{self.model_path} expects {self.feature_set.n_features} features "
                f"({', '.join(self.info.features)}) per particle, got an array of shape "
                f"{features.shape}"
            )
        if counts.sum() != len(features):
            raise HepmpmError(
                f"the jets' particle counts add up to {int(counts.sum())}, but {len(features)} "
                "particles were given"
            )
        starts = np.cumsum(counts) - counts
        kept = np.minimum(counts, self.max_particles)
        probs = np.zeros((len(counts), len(self.class_names)), dtype=np.float32)
        for jets in multiplicity_batches(kept, self.batch_size):
            batch_features, batch_mask = pad_batch(
                features, starts[jets], kept[jets], self.max_particles
            )
            probs[jets] = run_probs(self.session, batch_features, batch_mask, self.info.layout)
        return probs

    # -- awkward / dask-awkward --------------------------------------------------------------

    def prepare_awkward(self, particles: Any) -> tuple[tuple, dict]:
        """Jagged particles [N, var, F] (or records with the feature names) → padded columns
        [N, max_particles] per feature and the mask [N, max_particles]."""
        lib = self.get_awkward_lib(particles)
        if particles.fields:
            missing = [name for name in self.info.features if name not in particles.fields]
            if missing:
                raise HepmpmError(
                    f"{self.model_path} needs the features {', '.join(self.info.features)}; "
                    f"the particles lack {', '.join(missing)} (they have "
                    f"{', '.join(particles.fields)})"
                )
            columns = [particles[name] for name in self.info.features]
        else:
            columns = [particles[..., i] for i in range(self.feature_set.n_features)]

        def pad(x: Any) -> Any:
            padded = lib.pad_none(x, self.max_particles, axis=1, clip=True)
            return lib.values_astype(lib.fill_none(padded, 0.0), np.float32)

        mask = pad(lib.ones_like(columns[0]))
        return ([pad(c) for c in columns], mask), {}

    def postprocess_awkward(self, return_array: Any, *args: Any, **kwargs: Any) -> Any:
        return return_array


def scores_of(tagger: OnnxTagger, features: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Probabilities [n_jets, C] of jets whose particles lie jet after jet in ``features``
    [n_particles, F] (``counts`` [n_jets] each): :meth:`OnnxTagger.tag_flat`."""
    return tagger.tag_flat(features, counts)
