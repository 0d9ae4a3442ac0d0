"""Keep command-line output about the run: Lightning's per-run notes ("GPU available: False",
"TPU available", the LitLogger tip) say nothing a hepmpm user acts on, so they are hidden.
Warnings and errors still show. Needs no import of Lightning (loggers exist by name)."""

from __future__ import annotations

import logging

_NOTES = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def quiet_lightning() -> None:
    """Raise Lightning's rank-zero note loggers to WARNING."""
    for name in _NOTES:
        logging.getLogger(name).setLevel(logging.WARNING)
