"""Model weights on disk: plain ``state_dict`` files, written atomically, read without pickle.

Every hepmpm model file (tokenizer, backbone, tagger) goes through these two functions, so that
none is ever unpickled (``torch.load(..., weights_only=True)``) and a half-written file never
appears under its final name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hepmpm.atomic import atomic_path
from hepmpm.errors import HepmpmError


def save_weights(module: nn.Module, path: Path) -> None:
    """Write ``module.state_dict()`` (on the CPU) to ``path`` atomically."""
    state = {name: t.detach().cpu().clone() for name, t in module.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)


def load_weights(module: nn.Module, path: Path, described_by: Path | str) -> nn.Module:
    """Load ``path`` into ``module``; clear errors for a missing, corrupt or foreign file.

    ``described_by`` names the record (JSON) the module was built from, for the messages.
    """
    path = Path(path)
    if not path.is_file():
        raise HepmpmError(f"weights file {path} (named in {described_by}) is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which one
        raise HepmpmError(f"{path}: cannot read the weights ({err})") from None
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise HepmpmError(
            f"{path} does not fit the model described by {described_by}: {err}"
        ) from None
    return module
