"""Tiny fine-tune folders and exported models for the export and tagger tests."""

from __future__ import annotations

from pathlib import Path

import torch

from hepmpm.features import get_feature_set
from hepmpm.jetclass import CLASS_NAMES
from hepmpm.models.backbone import BACKBONE_SIZES
from hepmpm.models.classifier import HeadConfig, JetTagger
from hepmpm.models.store import save_tagger


def make_tagger_dir(
    out: Path, feature_set: str = "part17", seed: int = 0, backbone=None, edit=None, **extra
) -> Path:
    """A tagger (``backbone``: a BackboneConfig, default ``tiny``) with random weights saved as
    a fine-tuning folder (tagger.pt + .json); ``edit(tagger)`` runs before it is saved."""
    torch.manual_seed(seed)
    head = HeadConfig(heads=4, layers=1)
    config = backbone or BACKBONE_SIZES["tiny"]
    tagger = JetTagger(get_feature_set(feature_set), config, head, len(CLASS_NAMES))
    # Random weights give near-uniform scores; a larger output layer spreads them out.
    with torch.no_grad():
        tagger.head.classify.weight.mul_(20.0)
    if edit is not None:
        edit(tagger)
    save_tagger(tagger, out, list(CLASS_NAMES), list(range(len(CLASS_NAMES))), head, extra)
    return out
