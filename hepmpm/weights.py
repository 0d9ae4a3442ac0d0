"""Model weights on disk: plain ``state_dict`` files, written atomically, read without pickle.

Every hepmpm model file (tokenizer, backbone, tagger) goes through these two functions, so that
none is ever unpickled (``torch.load(..., weights_only=True)``) and a half-written file never
appears under its final name.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hepmpm.atomic import atomic_path
from hepmpm.errors import HepmpmError, one_line_reason


def read_torch_file(path: Path, what: str = "weights") -> Any:
    """The content of the torch file ``path`` (tensors and plain containers only: never
    unpickled), or a one-line error naming the file and what is wrong with it."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch's remarks on a foreign file: the error says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False: the wrong advice for a file nobody
        # should unpickle.
        raise HepmpmError(
            f"{path}: cannot read the {what}: it holds Python objects other than tensors, "
            "which hepmpm never unpickles (was it written by hepmpm?)"
        ) from None
    except Exception as err:  # a truncated, empty or foreign file: say which one
        raise HepmpmError(f"{path}: cannot read the {what} ({one_line_reason(err)})") from None


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
    state = read_torch_file(path)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise HepmpmError(
            f"{path} does not fit the model described by {described_by}: {err}"
        ) from None
    return module
