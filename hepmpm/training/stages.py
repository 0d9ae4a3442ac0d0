"""Stage configs resolved up front: a study or the quickstart names a training config and its
``key=value`` overrides for every stage; :func:`check_stage` resolves one exactly as the stage
will when it runs, so a mistyped key fails in the first second, not after minutes of
generation and skimming."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hepmpm.config import StrictModel, load_config, resolve_config_path
from hepmpm.errors import ConfigError

StageKind = Literal["tokenizer", "pretrain", "finetune"]


class Stage(StrictModel):
    """A training stage of a study or the quickstart: a packaged config name (``tiny``,
    ``compact``) or YAML path, and ``key=value`` overrides of it."""

    config: str
    overrides: list[str] = Field(default_factory=list)


def check_stage(kind: StageKind, config: str, overrides: list[str], where: str) -> None:
    """Resolve the ``kind`` config ``config`` with ``overrides``; a :class:`ConfigError`
    naming ``where`` (e.g. ``arms[2].finetune``) when it does not."""
    try:
        if kind == "tokenizer":
            from hepmpm.training.tokenizer import load_tokenizer_config

            load_tokenizer_config(config, overrides)
        elif kind == "pretrain":
            from hepmpm.training.pretrain import PretrainConfig

            load_config(PretrainConfig, resolve_config_path(config, "pretrain"), overrides)
        else:
            from hepmpm.training.finetune import load_finetune_config

            load_finetune_config(config, overrides)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
