"""Backbones and taggers on disk: a weights file + a JSON record of what the weights are.

- A pre-training run writes ``backbone.pt`` + ``backbone.json`` (format ``hepmpm-backbone``):
  the feature set (names, order, normalisation), the backbone config, and what the caller adds
  (MPM settings, steps, metrics, the skim).
- A fine-tuning run writes ``tagger.pt`` + ``tagger.json`` (format ``hepmpm-tagger``): the
  feature set, backbone and head configs, the class names of the outputs and the JetClass label
  each output stands for, and the caller's additions (mode, metrics, the training config and its
  hash). Export (:mod:`hepmpm.export`) reads only these two files.
- A ``model: part`` fine-tuning run (weaver-core's ParT, a reference arm) writes the same two
  files, its record saying ``"model": "part"`` and ParT's size (:func:`save_part_tagger`):
  :func:`load_tagger` and export refuse it clearly; :func:`load_run_tagger` loads either kind.

The JSON is written after the weights, so a folder with the record holds a whole model. Weights
load with ``torch.load(..., weights_only=True)``; a record of another kind of model, another
feature set, or weights that do not fit the record are clear errors naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from hepmpm import __version__
from hepmpm.atomic import write_json_atomic
from hepmpm.config import parse_config
from hepmpm.errors import HepmpmError
from hepmpm.features import FeatureSet, check_recorded_feature_set, feature_set_record
from hepmpm.models.backbone import Backbone, BackboneConfig
from hepmpm.models.classifier import HeadConfig, JetTagger
from hepmpm.models.part import PartConfig, ParTTagger
from hepmpm.records import read_record
from hepmpm.weights import load_weights, save_weights

BACKBONE_RECORD, BACKBONE_WEIGHTS = "backbone.json", "backbone.pt"
BACKBONE_FORMAT = "hepmpm-backbone"
TAGGER_RECORD, TAGGER_WEIGHTS = "tagger.json", "tagger.pt"
TAGGER_FORMAT = "hepmpm-tagger"

#: A tagger of either kind: hepmpm's, or weaver-core's ParT (a reference arm).
Tagger = JetTagger | ParTTagger

_BACKBONE_KEYS = ("format", "feature_set", "backbone", "hepmpm_version")
_TAGGER_KEYS = (*_BACKBONE_KEYS, "head", "class_names", "labels")


def _save(
    module: nn.Module, directory: Path, weights: str, record_name: str, record: dict, extra: dict
) -> None:
    clash = sorted(set(extra or {}) & set(record))
    if clash:
        raise ValueError(f"extra cannot replace the record's own keys {clash}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(module, directory / weights)
    write_json_atomic(directory / record_name, {**record, **(extra or {})})


def _read(
    directory: Path, record_name: str, expected: str, keys: tuple[str, ...], hint: str
) -> dict[str, Any]:
    # Say what the folder does hold: a backbone given where a tagger is expected, say.
    found = [n for n in (BACKBONE_RECORD, TAGGER_RECORD) if (Path(directory) / n).is_file()]
    absent = f"{directory} holds no {record_name} ({hint})" + (
        f"; it holds {', '.join(found)}" if found else ""
    )
    return read_record(Path(directory) / record_name, expected, keys, absent)


def save_backbone(backbone: Backbone, directory: Path, extra: dict[str, Any] | None = None) -> None:
    """Write ``backbone.pt`` then ``backbone.json`` into ``directory``."""
    record = {
        "format": BACKBONE_FORMAT,
        "feature_set": feature_set_record(backbone.feature_set),
        "backbone": backbone.config.model_dump(mode="json"),
        "hepmpm_version": __version__,
    }
    _save(backbone, directory, BACKBONE_WEIGHTS, BACKBONE_RECORD, record, extra)


def read_backbone_record(directory: Path) -> dict[str, Any]:
    """The parsed ``backbone.json`` of a pre-training folder."""
    return _read(
        directory, BACKBONE_RECORD, BACKBONE_FORMAT, _BACKBONE_KEYS,
        "a finished `hepmpm pretrain --out DIR` writes it",
    )  # fmt: skip


def load_backbone(directory: Path, feature_set: FeatureSet | None = None) -> Backbone:
    """The pre-trained backbone of ``directory``, checked against the data's ``feature_set``."""
    directory = Path(directory)
    record = read_backbone_record(directory)
    source = directory / BACKBONE_RECORD
    known = check_recorded_feature_set(
        record["feature_set"], f"backbone {directory} was pre-trained on", feature_set
    )
    config = parse_config(BackboneConfig, record["backbone"], str(source))
    return load_weights(Backbone(known, config), directory / BACKBONE_WEIGHTS, source)


def save_tagger(
    tagger: JetTagger,
    directory: Path,
    class_names: list[str],
    labels: list[int],
    head: HeadConfig,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``tagger.pt`` then ``tagger.json``: output ``i`` is class ``class_names[i]``, the
    JetClass label ``labels[i]``."""
    if len(class_names) != len(labels) or len(labels) != tagger.head.classify.out_features:
        raise ValueError("class_names and labels must have one entry per tagger output")
    record = {
        "format": TAGGER_FORMAT,
        "feature_set": feature_set_record(tagger.feature_set),
        "backbone": tagger.backbone.config.model_dump(mode="json"),
        "head": head.model_dump(mode="json"),
        "class_names": list(class_names),
        "labels": [int(label) for label in labels],
        "hepmpm_version": __version__,
    }
    _save(tagger, directory, TAGGER_WEIGHTS, TAGGER_RECORD, record, extra)


def read_tagger_record(directory: Path) -> dict[str, Any]:
    """The parsed ``tagger.json`` of a fine-tuning folder (of a hepmpm tagger)."""
    _refuse_part(Path(directory) / TAGGER_RECORD)
    return _read(
        directory, TAGGER_RECORD, TAGGER_FORMAT, _TAGGER_KEYS,
        "a finished `hepmpm finetune --out DIR` writes it",
    )  # fmt: skip


def _refuse_part(path: Path) -> None:
    """A clear error for the record of a ``model: part`` run (weaver-core's ParT, a reference
    arm): it is not a hepmpm tagger, and nothing here builds or exports one."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # absent or unreadable: the usual record checks say so
    if isinstance(record, dict) and record.get("model") == "part":
        raise HepmpmError(
            f"{path}: a ParT reference tagger (model: part, weaver-core's ParticleTransformer); "
            "only hepmpm taggers load and export here (its metrics are in metrics.json)"
        )


def load_tagger(
    directory: Path, feature_set: FeatureSet | None = None
) -> tuple[JetTagger, dict[str, Any]]:
    """The fine-tuned tagger of ``directory`` (evaluation mode, CPU) and its record."""
    directory = Path(directory)
    record = read_tagger_record(directory)
    source = directory / TAGGER_RECORD
    known = check_recorded_feature_set(
        record["feature_set"], f"tagger {directory} was trained on", feature_set
    )
    tagger = JetTagger(
        known,
        parse_config(BackboneConfig, record["backbone"], str(source)),
        parse_config(HeadConfig, record["head"], str(source)),
        len(record["class_names"]),
    )
    load_weights(tagger, directory / TAGGER_WEIGHTS, source)
    return tagger.eval(), record


def save_part_tagger(
    tagger: ParTTagger,
    directory: Path,
    class_names: list[str],
    labels: list[int],
    extra: dict[str, Any],
) -> None:
    """``tagger.pt`` then ``tagger.json`` of a ParT run: the record says ``"model": "part"``
    (and ParT's size), so that :func:`load_tagger` and export, which build hepmpm taggers,
    refuse it clearly."""
    save_weights(tagger, directory / TAGGER_WEIGHTS)
    record = {
        "format": TAGGER_FORMAT,
        "model": "part",
        "feature_set": feature_set_record(tagger.feature_set),
        "part": tagger.config.model_dump(mode="json"),
        "class_names": list(class_names),
        "labels": [int(label) for label in labels],
        "hepmpm_version": __version__,
    }
    write_json_atomic(directory / TAGGER_RECORD, {**record, **extra})


def load_run_tagger(directory: Path) -> tuple[Tagger, dict[str, Any]]:
    """The tagger of a fine-tuning folder (evaluation mode, CPU) and its record, of either
    kind: hepmpm's (:func:`load_tagger`) or a ParT reference run's (its ``tagger.json`` says
    ``"model": "part"``; needs weaver-core), for evaluating it on other jets
    (:func:`hepmpm.evaluation.scoring.evaluate_tagger`). Export takes hepmpm taggers only."""
    directory = Path(directory)
    source = directory / TAGGER_RECORD
    record = read_record(
        source, TAGGER_FORMAT, ("feature_set", "class_names", "labels"),
        f"{source} is missing: a finished `hepmpm finetune --out DIR` writes it",
    )  # fmt: skip
    if record.get("model") != "part":
        return load_tagger(directory)
    features = check_recorded_feature_set(
        record["feature_set"], f"tagger {directory} was trained on", None
    )
    config = parse_config(PartConfig, record.get("part", {}), str(source))
    tagger = ParTTagger(features, config, len(record["class_names"]))
    load_weights(tagger, directory / TAGGER_WEIGHTS, source)
    return tagger.eval(), record
