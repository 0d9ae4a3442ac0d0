"""``hepmpm tag``: run :class:`~hepmpm.processors.tagger.TaggerProcessor` over a fileset.

Writes into ``OUT``:

- ``scores/<dataset>/*.parquet``: per-jet scores, one file per chunk (see the processor);
- ``hists.json``: the histograms in the UHI JSON serialisation (``uhi.io.json``; read back with
  ``hist.Hist(json.load(f, object_hook=uhi.io.json.object_hook)["score"])``), never a pickle;
- ``summary.json`` (last): the model's metadata and the SHA-256 of its file, counts per
  dataset, the chunks, missing inputs.

Everything is written to a staging folder and moved into place only when every chunk succeeded,
``summary.json`` last: a failed or killed run leaves no ``summary.json``, and the next run into
the folder removes what it left.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uhi.io.json

from hepmpm.atomic import atomic_path, write_json_atomic
from hepmpm.errors import HepmpmError
from hepmpm.folder_lock import holding_folder
from hepmpm.processors.jet_selection import JetSelection
from hepmpm.processors.running import build_fileset, make_runner
from hepmpm.processors.tagger import SCORES_SUBDIR, TaggerProcessor

SUMMARY_NAME, HISTS_NAME = "summary.json", "hists.json"
STAGING_NAME = ".staging"  #: the run in progress, inside OUT/


@dataclass(frozen=True)
class TagRequest:
    """What to tag with which model, and how the work is spread."""

    model: Path
    inputs: Sequence[str | Path]
    out: Path
    selection: JetSelection | None = None
    executor: str = "iterative"
    workers: int = 1
    chunksize: int = 100_000
    scheduler: str | None = None
    write_scores: bool = True
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def write_hists(path: Path, hists: dict[str, Any]) -> None:
    """``hist.Hist`` objects as UHI JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(hists, default=uhi.io.json.default) + "\n")


def read_hists(path: Path) -> dict[str, Any]:
    """The histograms of a ``hists.json`` as ``hist.Hist``."""
    import hist

    data = json.loads(Path(path).read_text(), object_hook=uhi.io.json.object_hook)
    return {name: hist.Hist(h) for name, h in data.items()}


def run_tag(request: TagRequest, show_progress: bool = True) -> tuple[dict[str, Any], dict]:
    """Tag ``request.inputs``; returns (summary, histograms) and writes them to ``request.out``.

    Everything is written into ``OUT/.staging`` and moved into place at the end, the summary
    last; the folder is held for the run (:func:`~hepmpm.folder_lock.holding_folder`), so what
    a killed or failed run left there is removed by the next one."""
    out = Path(request.out)
    with holding_folder(out, "tagging"):
        if (out / SUMMARY_NAME).exists():
            raise HepmpmError(f"{out} already holds a tagging run; choose another --out")
        for leftover in (out / STAGING_NAME, out / SCORES_SUBDIR, out / HISTS_NAME):
            _remove(leftover)  # of a run that did not complete (no summary)
        staging = out / STAGING_NAME
        staging.mkdir()
        try:
            summary, hists = _tag_into(staging, request, show_progress)
            for name in (SCORES_SUBDIR, HISTS_NAME, SUMMARY_NAME):  # the summary last
                if (staging / name).exists():
                    (staging / name).replace(out / name)
        finally:
            _remove(staging)
    return summary, hists


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _tag_into(
    staging: Path, request: TagRequest, show_progress: bool
) -> tuple[dict[str, Any], dict]:
    """Tag into ``staging``: ``scores/``, ``hists.json`` and ``summary.json``."""
    fileset = build_fileset(request.inputs)
    tagger = TaggerProcessor(
        request.model,
        selection=request.selection,
        scores_dir=staging if request.write_scores else None,
        threads=request.threads,
    )
    with make_runner(
        request.executor, request.workers, request.chunksize, request.scheduler, show_progress
    ) as runner:
        output = runner(fileset, processor_instance=tagger)
    info = tagger.tagger.info
    summary = {
        "model": str(Path(request.model).resolve()),
        # what `hepmpm calibrate` checks: two tagging runs of the same model file
        "model_sha256": hashlib.sha256(Path(request.model).read_bytes()).hexdigest(),
        "layout": info.layout,
        "feature_set": info.feature_set,
        "class_names": list(info.class_names),
        "config_hash": info.config_hash,
        "selection": tagger.selection.model_dump(),
        "counts": output["counts"],
        "chunks": sorted(
            output["chunks"], key=lambda c: (c["dataset"], c["file"], c["entrystart"])
        ),
        "missing_inputs": {f: sorted(names) for f, names in output["missing_inputs"].items()},
        **request.extra,
    }
    write_hists(staging / HISTS_NAME, output["hists"])
    write_json_atomic(staging / SUMMARY_NAME, summary)
    return summary, output["hists"]
