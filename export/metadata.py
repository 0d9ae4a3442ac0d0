"""What an exported model says about itself: ONNX ``metadata_props`` written and checked.

Every hepmpm ONNX file carries (all values are strings; lists and records as JSON):

========================  ===============================================================
``hepmpm.layout``         ``hepmpm`` ([N, P, F] inputs) or ``cmssw`` ([N, F, P], weaver names)
``hepmpm.class_names``    output ``i``'s class name, e.g. ``["QCD", "Hbb", ...]``
``hepmpm.labels``         the JetClass label index each output stands for
``hepmpm.feature_set``    the feature set's name (``part17``, ``mpm7id``)
``hepmpm.features``       the ordered raw-feature names the ``pf_features`` columns hold
``hepmpm.feature_record`` the feature set with its normalisation (names, order, transforms)
``hepmpm.version``        the hepmpm version that exported the model
``hepmpm.config_hash``    the training config's hash (``tagger.json``'s ``config_hash``, else
                          a SHA-256 of ``tagger.json`` itself)
``hepmpm.max_particles``  the particle cap the model is meant to be run with
========================  ===============================================================
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from hepmpm import __version__
from hepmpm.errors import HepmpmError
from hepmpm.features import FeatureSet, check_recorded_feature_set

PREFIX = "hepmpm."
LAYOUTS = ("hepmpm", "cmssw")
_REQUIRED = (
    "layout",
    "class_names",
    "labels",
    "feature_set",
    "features",
    "feature_record",
    "version",
    "config_hash",
    "max_particles",
)


@dataclass(frozen=True)
class ModelInfo:
    """The hepmpm metadata of an ONNX tagger (see the module docstring)."""

    layout: str
    class_names: tuple[str, ...]
    labels: tuple[int, ...]
    feature_set: str
    features: tuple[str, ...]
    feature_record: dict[str, Any]
    version: str
    config_hash: str
    max_particles: int

    def to_props(self) -> dict[str, str]:
        """``metadata_props`` entries (key → string)."""
        values = {
            "layout": self.layout,
            "class_names": json.dumps(list(self.class_names)),
            "labels": json.dumps(list(self.labels)),
            "feature_set": self.feature_set,
            "features": json.dumps(list(self.features)),
            "feature_record": json.dumps(self.feature_record, sort_keys=True),
            "version": self.version,
            "config_hash": self.config_hash,
            "max_particles": str(self.max_particles),
        }
        return {PREFIX + k: v for k, v in values.items()}


def config_hash(record: dict[str, Any], record_path: Path) -> str:
    """The record's ``config_hash`` if fine-tuning stored one, else a hash of ``tagger.json``."""
    stored = record.get("config_hash")
    if stored:
        return str(stored)
    return "sha256:" + hashlib.sha256(Path(record_path).read_bytes()).hexdigest()[:16]


def model_info(
    record: dict[str, Any], record_path: Path, layout: str, max_particles: int
) -> ModelInfo:
    """The metadata of a model exported from the tagger record ``record`` (``tagger.json``)."""
    if layout not in LAYOUTS:
        raise HepmpmError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    feature_record = record["feature_set"]
    return ModelInfo(
        layout=layout,
        class_names=tuple(record["class_names"]),
        labels=tuple(int(x) for x in record["labels"]),
        feature_set=feature_record["name"],
        features=tuple(feature_record["features"]),
        feature_record=feature_record,
        version=__version__,
        config_hash=config_hash(record, record_path),
        max_particles=int(max_particles),
    )


def write_metadata(model: onnx.ModelProto, info: ModelInfo) -> None:
    """Replace ``model``'s hepmpm ``metadata_props`` by ``info``'s."""
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in info.to_props().items():
        model.metadata_props.add(key=key, value=value)


def parse_metadata(props: dict[str, str], source: Path | str) -> ModelInfo:
    """:class:`ModelInfo` from ``metadata_props`` (key → value); clear errors naming ``source``."""
    missing = [PREFIX + k for k in _REQUIRED if PREFIX + k not in props]
    if missing:
        found = sorted(props) or ["no metadata"]
        raise HepmpmError(
            f"{source}: not a hepmpm tagger; metadata lacks {', '.join(missing)} "
            f"(it has {', '.join(found)}); export it with `hepmpm export`"
        )
    try:
        values = {k: props[PREFIX + k] for k in _REQUIRED}
        return ModelInfo(
            layout=values["layout"],
            class_names=tuple(json.loads(values["class_names"])),
            labels=tuple(int(x) for x in json.loads(values["labels"])),
            feature_set=values["feature_set"],
            features=tuple(json.loads(values["features"])),
            feature_record=json.loads(values["feature_record"]),
            version=values["version"],
            config_hash=values["config_hash"],
            max_particles=int(values["max_particles"]),
        )
    except (ValueError, TypeError) as err:
        raise HepmpmError(f"{source}: unreadable hepmpm metadata ({err})") from None


def read_model_info(path: Path) -> ModelInfo:
    """The hepmpm metadata of the ONNX file ``path``; clear errors for a missing/corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise HepmpmError(f"ONNX model {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError and friends on a damaged file
        raise HepmpmError(
            f"{path}: not a readable ONNX model ({type(err).__name__}: {err})"
        ) from None
    if not len(model.graph.node):
        raise HepmpmError(f"{path}: not a readable ONNX model (no graph)")
    info = parse_metadata({p.key: p.value for p in model.metadata_props}, path)
    _check_feature_input(model, info, path)
    return info


def _check_feature_input(model: onnx.ModelProto, info: ModelInfo, path: Path) -> None:
    """The graph's ``pf_features`` holds as many features as the metadata names (its feature
    axis: last in the hepmpm layout [N, P, F], second in the CMSSW one [N, F, P])."""
    inputs = {i.name: i for i in model.graph.input}
    if "pf_features" not in inputs:
        raise HepmpmError(f"{path}: the graph has no input 'pf_features' ({', '.join(inputs)})")
    dims = inputs["pf_features"].type.tensor_type.shape.dim
    axis = -1 if info.layout == "hepmpm" else 1
    found = dims[axis].dim_value if len(dims) == 3 and dims[axis].HasField("dim_value") else None
    if found is not None and found != len(info.features):
        raise HepmpmError(
            f"{path}: its metadata names {len(info.features)} features (feature set "
            f"{info.feature_set!r}) but the graph's pf_features takes {found}"
        )


def check_features(info: ModelInfo, source: Path | str, feature_set: FeatureSet | None) -> None:
    """The model's feature set must be this hepmpm's definition and, if given, ``feature_set``.

    Names both sides on a mismatch: the model's set and order, and what is offered.
    """
    if feature_set is not None and (
        feature_set.name != info.feature_set or tuple(feature_set.names) != info.features
    ):
        raise HepmpmError(
            f"{source} was exported for feature set {info.feature_set!r} "
            f"({', '.join(info.features)}), but the inputs are feature set "
            f"{feature_set.name!r} ({', '.join(feature_set.names)})"
        )
    check_recorded_feature_set(info.feature_record, f"model {source} expects", feature_set)
