"""JSON records that say what a folder holds (a skim's manifest, a tokenizer, a backbone, a
tagger), read back with errors that name the file and what was wrong with it; and the one rule
by which a job claims its output folder (:func:`claim_folder`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hepmpm.atomic import write_json_atomic
from hepmpm.errors import HepmpmError
from hepmpm.folder_lock import folder_is_empty


def settings_hash(settings: Any) -> str:
    """16 hex digits of the SHA-256 of ``settings`` as sorted JSON: the identity of what a folder
    was made with (a skim's, a sample's, a study's, a run's settings)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def claim_folder(
    out: Path,
    record_name: str,
    kind: str,
    settings: dict[str, Any],
    conflict: Callable[[dict[str, Any], dict[str, Any]], str | None] | None = None,
) -> bool:
    """Claim the folder ``out`` for a job of ``kind`` (e.g. ``quickstart``, ``study cwola``)
    made with ``settings``; True when it already holds that job (its work goes on there).

    A new or empty folder gets ``record_name`` (``{"kind", "settings_hash", "settings"}``); one
    whose record names the same kind and settings hash is kept; one made by another job or with
    other settings, or a non-empty folder without the record, is an error (nothing is touched).
    ``conflict(previous, settings)``: None when the job may go on with other settings (they only
    add work, e.g. a study's further seeds: the record then holds the new ones), else the key
    that may not change, named in the error.
    """
    out = Path(out)
    record = out / record_name
    digest = settings_hash(settings)
    if record.is_file():
        previous = json.loads(record.read_text())
        found = (previous.get("kind"), previous.get("settings_hash"))
        if found == (kind, digest):
            return True
        if found[0] != kind or conflict is None:
            why = f"{found[1]} vs {digest}"
        else:
            key = conflict(previous.get("settings", {}), settings)
            why = None if key is None else f"{key} differs"
        if why is not None:
            raise HepmpmError(
                f"{out} holds a {found[0]} made with other settings ({why}); choose another --out"
            )
        write_json_atomic(record, {"kind": kind, "settings_hash": digest, "settings": settings})
        return True
    if not folder_is_empty(out):
        raise HepmpmError(f"{out} exists and is not a {kind} folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, {"kind": kind, "settings_hash": digest, "settings": settings})
    return False


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
