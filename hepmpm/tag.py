"""``hepmpm tag``: run :class:`~hepmpm.processors.tagger.TaggerProcessor` over a fileset.

Writes into ``OUT``:

- ``scores/<dataset>/*.parquet``: per-jet scores, one file per chunk (see the processor);
- ``hists.json``: the histograms in the UHI JSON serialisation (``uhi.io.json``; read back with
  ``hist.Hist(json.load(f, object_hook=uhi.io.json.object_hook)["score"])``), never a pickle;
- ``summary.json`` (last): the model's metadata and the SHA-256 of its file, counts per
  dataset, the chunks, missing inputs.

The scores are written to a staging folder and moved into place only when every chunk
succeeded; a failed run leaves no ``summary.json`` and no ``scores`` folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uhi.io.json

from hepmpm.atomic import atomic_path, write_json_atomic
from hepmpm.errors import HepmpmError
from hepmpm.processors.jet_selection import JetSelection
from hepmpm.processors.running import build_fileset, make_runner
from hepmpm.processors.tagger import SCORES_SUBDIR, TaggerProcessor

SUMMARY_NAME, HISTS_NAME = "summary.json", "hists.json"


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
    """Tag ``request.inputs``; returns (summary, histograms) and writes them to ``request.out``."""
    out = Path(request.out)
    if (out / SUMMARY_NAME).exists() or (out / SCORES_SUBDIR).exists():
        raise HepmpmError(f"{out} already holds a tagging run; choose another --out")
    fileset = build_fileset(request.inputs)
    staging = out / f".staging-{os.getpid()}"
    tagger = TaggerProcessor(
        request.model,
        selection=request.selection,
        scores_dir=staging if request.write_scores else None,
        threads=request.threads,
    )
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with make_runner(
            request.executor, request.workers, request.chunksize, request.scheduler, show_progress
        ) as runner:
            output = runner(fileset, processor_instance=tagger)
        if (staging / SCORES_SUBDIR).exists():
            (staging / SCORES_SUBDIR).replace(out / SCORES_SUBDIR)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # before checking that out is empty
        if created and not any(out.iterdir()):
            out.rmdir()  # a failed run leaves no trace of itself
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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
    write_hists(out / HISTS_NAME, output["hists"])
    write_json_atomic(out / SUMMARY_NAME, summary)
    return summary, output["hists"]
