"""A tokenizer on disk: ``weights.pt`` (a plain state_dict) + ``tokenizer.json`` (what it is).

``tokenizer.json`` records the kind, the model config (enough to rebuild the module), the
feature set (name, ordered features, each feature's normalisation), ``n_tokens``, the hepmpm
version, and what the caller adds (``extra``): the skim it was fitted on (path and the
manifest's ``settings_hash``), its metrics, the training config. ``weights.pt`` loads with
``torch.load(..., weights_only=True)``. ``tokenizer.json`` is written last, so a folder without
it is not a tokenizer; a new folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hepmpm import __version__
from hepmpm.atomic import write_json_atomic
from hepmpm.config import parse_config
from hepmpm.errors import HepmpmError
from hepmpm.features import FeatureSet, check_recorded_feature_set, feature_set_record
from hepmpm.records import read_record
from hepmpm.tokenizers.base import Tokenizer
from hepmpm.tokenizers.kmeans import KMeansTokenizer
from hepmpm.tokenizers.vqvae import VQVAETokenizer
from hepmpm.weights import load_weights, save_weights

TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "weights.pt"
TOKENIZER_FORMAT = "hepmpm-tokenizer"

#: Tokenizer classes by ``kind``.
TOKENIZER_KINDS: dict[str, type[Tokenizer]] = {
    cls.kind: cls for cls in (VQVAETokenizer, KMeansTokenizer)
}

_CORE_KEYS = ("format", "version", "kind", "n_tokens", "config", "feature_set", "hepmpm_version")


def save_tokenizer(
    tokenizer: Tokenizer, directory: Path, extra: dict[str, Any] | None = None
) -> None:
    """Write ``tokenizer`` to ``directory`` (``weights.pt`` then ``tokenizer.json``).

    ``extra`` adds keys to ``tokenizer.json`` (conventionally ``skim``: ``{"path",
    "settings_hash"}``, ``metrics``, ``training``); it cannot replace the core keys. A directory
    that does not exist yet appears complete or not at all; into an existing one each file is
    replaced atomically, ``tokenizer.json`` last.
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_CORE_KEYS))
    if clash:
        raise ValueError(f"extra cannot replace the tokenizer's own keys {clash}")
    record = {
        "format": TOKENIZER_FORMAT,
        "version": 1,
        "kind": tokenizer.kind,
        "n_tokens": tokenizer.n_tokens,
        "config": tokenizer.config.model_dump(mode="json"),
        "feature_set": feature_set_record(tokenizer.feature_set),
        "hepmpm_version": __version__,
        "weights": WEIGHTS_FILE,
        "skim": None,
        "metrics": {},
        **extra,
    }
    directory = Path(directory)
    if directory.exists():
        _write(directory, tokenizer, record)
        return
    staging = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        _write(staging, tokenizer, record)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write(directory: Path, tokenizer: Tokenizer, record: dict[str, Any]) -> None:
    save_weights(tokenizer, directory / WEIGHTS_FILE)
    write_json_atomic(directory / TOKENIZER_FILE, record)


def read_tokenizer_record(directory: Path) -> dict[str, Any]:
    """The parsed ``tokenizer.json`` of ``directory``; a clear error if it is not a tokenizer."""
    directory = Path(directory)
    path = directory / TOKENIZER_FILE
    record = read_record(
        path,
        TOKENIZER_FORMAT,
        (*_CORE_KEYS, "weights"),
        absent=f"{directory} is not a tokenizer folder: no {TOKENIZER_FILE} (make one with "
        "`hepmpm tokenizer --config vqvae --data SKIM --out DIR`; an interrupted run writes none)",
    )
    if record["kind"] not in TOKENIZER_KINDS:
        raise HepmpmError(
            f"{path}: key 'kind' is {record['kind']!r}, expected one of {list(TOKENIZER_KINDS)}"
        )
    return record


def load_tokenizer(directory: Path, feature_set: FeatureSet | None = None) -> Tokenizer:
    """Load the tokenizer saved in ``directory``, in evaluation mode on the CPU.

    With ``feature_set`` (that of the data it will tokenize), its name, feature order and
    normalisation must be those the tokenizer was fitted on; so must this hepmpm version's
    definition of the recorded feature set.
    """
    directory = Path(directory)
    record = read_tokenizer_record(directory)
    known = check_recorded_feature_set(
        record["feature_set"], f"tokenizer {directory} was fitted on", feature_set
    )
    where = f"tokenizer {directory}"
    cls = TOKENIZER_KINDS[record["kind"]]
    config = parse_config(cls.config_class, record["config"], f"{directory / TOKENIZER_FILE}")
    tokenizer = cls(known, config)
    load_weights(tokenizer, directory / record["weights"], directory / TOKENIZER_FILE)
    if tokenizer.n_tokens != record["n_tokens"]:
        raise HepmpmError(
            f"{where}: n_tokens is {record['n_tokens']} but its config gives {tokenizer.n_tokens}"
        )
    return tokenizer.eval()
