"""JSON records that say what a folder holds (a skim's manifest, a tokenizer, a backbone, a
tagger), read back with errors that name the file and what was wrong with it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hepmpm.errors import HepmpmError


def read_record(
    path: Path, expected_format: str, required: Sequence[str], absent: str
) -> dict[str, Any]:
    """The JSON object in ``path``, of ``"format": expected_format``, with the ``required``
    keys; ``absent`` is the message when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        raise HepmpmError(absent)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HepmpmError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(record, dict) or record.get("format") != expected_format:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise HepmpmError(f"{path}: format is {found!r}, expected {expected_format!r}")
    missing = [k for k in required if k not in record]
    if missing:
        raise HepmpmError(f"{path}: missing key(s) {missing}")
    return record
