"""Backbones shipped inside the package: ``pretrained:NAME`` wherever a pre-training folder is
accepted (``hepmpm finetune --backbone``, ``hepmpm pretrain --init``, study configs).

hepmpm runs offline, so what it offers pre-trained lives here: one folder per backbone,
``hepmpm/pretrained/NAME/`` with the files a ``hepmpm pretrain`` run leaves (``backbone.pt`` +
``backbone.json``, and ``mpm.pt``: the whole masked-particle model, heads included, for continued
pre-training) and ``card.json``, its model card: the data it saw, the feature set, the config,
steps, its linear-probe accuracy against a random-init twin, the hepmpm version, and the sha256
of every weight file (checked by the tests and by :func:`check_card`). Weights load with
``torch.load(weights_only=True)``, like every hepmpm model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hepmpm.errors import HepmpmError

#: Prefix of a shipped backbone's name where a folder is accepted.
PREFIX = "pretrained:"
ROOT = Path(__file__).resolve().parent
CARD = "card.json"


def shipped() -> dict[str, Path]:
    """Name → folder of every shipped backbone (a folder with a ``card.json``)."""
    return {p.name: p for p in sorted(ROOT.iterdir()) if (p / CARD).is_file()}


def resolve_backbone(spec: str | Path) -> Path:
    """The folder of ``spec``: ``pretrained:NAME`` (a shipped backbone) or a folder path."""
    text = str(spec)
    if not text.startswith(PREFIX):
        return Path(spec)
    name = text.removeprefix(PREFIX)
    known = shipped()
    if name not in known:
        names = ", ".join(known) or "none"
        raise HepmpmError(f"no shipped backbone {name!r} (shipped: {names}; `hepmpm pretrained`)")
    return known[name]


def read_card(folder: Path) -> dict[str, Any]:
    """The model card of a shipped backbone folder."""
    return json.loads((Path(folder) / CARD).read_text())


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_card(folder: Path) -> dict[str, Any]:
    """The card of ``folder`` after checking every file it lists against its sha256."""
    card = read_card(folder)
    for name, digest in card["sha256"].items():
        if sha256(Path(folder) / name) != digest:
            raise HepmpmError(f"{Path(folder) / name} does not match the sha256 of its model card")
    return card
