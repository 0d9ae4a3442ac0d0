"""``hepmpm skim``: run :class:`~hepmpm.processors.ConstituentSkim` over a fileset.

The shards of a run are written to a staging folder and moved into ``OUT/shards`` only when
every chunk succeeded, and ``OUT/manifest.json`` is written last: a failed or interrupted run
leaves no shard and no manifest behind. A folder already holding a complete skim with the
same settings is kept as it is (the step is skipped); one made with other settings is refused.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hepmpm import __version__
from hepmpm.atomic import write_json_atomic
from hepmpm.data.manifest import MANIFEST_FORMAT, MANIFEST_NAME
from hepmpm.errors import HepmpmError
from hepmpm.features import IMPACT_PARAMETER_INPUTS, get_feature_set
from hepmpm.folder_lock import holding_folder
from hepmpm.processors.constituent_skim import ConstituentSkim
from hepmpm.processors.jet_selection import JetSelection
from hepmpm.processors.running import build_fileset, make_runner
from hepmpm.records import settings_hash

SHARDS_DIR = "shards"
STAGING_PREFIX = ".staging-"  #: a run's work in progress inside OUT


@dataclass(frozen=True)
class SkimRequest:
    """What to skim and how; momenta in GeV."""

    inputs: Sequence[str | Path]
    out: Path
    feature_set: str = "part17"
    selection: JetSelection = field(default_factory=JetSelection)
    executor: str = "iterative"
    workers: int = 1
    chunksize: int = 100_000
    scheduler: str | None = None
    domain: str | None = None
    require_impact_parameters: bool = False

    def settings(self, fileset: dict[str, Any]) -> dict[str, Any]:
        """Everything that determines the shards' content (not how the work is spread)."""
        return {
            "feature_set": self.feature_set,
            "selection": self.selection.model_dump(),
            "chunksize": self.chunksize,
            "require_impact_parameters": self.require_impact_parameters,
            "fileset": fileset,
        }


def _existing_manifest(out: Path, digest: str) -> dict[str, Any] | None:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("settings_hash") != digest:
        raise HepmpmError(
            f"{out} already holds a skim made with other settings (inputs, feature set or "
            "selection); choose another --out or delete that folder"
        )
    return manifest


def _missing_inputs_record(missing: dict[str, set[str]]) -> dict[str, Any]:
    """Which inputs were absent, in which files, and what replaced them (never a silent zero)."""
    record = {}
    impact = sorted(f for f, names in missing.items() if names & set(IMPACT_PARAMETER_INPUTS))
    if impact:
        record["impact_parameters"] = {
            "replaced_by": "zeros (as for neutral particles)",
            "features": ["d0", "d0Err", "dz", "dzErr"],
            "files": impact,
        }
    charge = sorted(f for f, names in missing.items() if "charge" in names)
    if charge:
        record["charge"] = {"replaced_by": "derived from pdgId (exact)", "files": charge}
    return record


def _build_manifest(
    request: SkimRequest, settings: dict[str, Any], output: dict[str, Any]
) -> dict[str, Any]:
    feature_set = get_feature_set(request.feature_set)
    chunks = sorted(output["chunks"], key=lambda c: (c["dataset"], c["file"], c["entrystart"]))
    shards = [
        {
            "path": c["shard"],
            "dataset": c["dataset"],
            "domain": c["domain"],
            "jets": c["jets"],
            "source": {k: c[k] for k in ("file", "entrystart", "entrystop")},
        }
        for c in chunks
        if c["jets"]
    ]
    return {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "hepmpm_version": __version__,
        "feature_set": feature_set.name,
        "features": list(feature_set.names),
        "feature_descriptions": {f.name: f.description for f in feature_set.features},
        "settings_hash": settings_hash(settings),
        "settings": settings,
        "datasets": {
            name: {
                "domain": spec["metadata"].get("domain", "unknown"),
                "files": spec["files"],
                "jets": sum(s["jets"] for s in shards if s["dataset"] == name),
            }
            for name, spec in settings["fileset"].items()
        },
        "shards": shards,
        "sources": [
            {k: c[k] for k in ("dataset", "file", "entrystart", "entrystop", "jets")}
            for c in chunks
        ],
        "counts": output["counts"],
        "missing_inputs": _missing_inputs_record(output["missing_inputs"]),
        "statistics": output["statistics"].summary(feature_set.names),
    }


def _remove_stale_shards(folder: Path) -> None:
    """Remove shards a failed older run left in ``folder``, refusing if it holds anything else."""
    if not folder.exists():
        return
    foreign = [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    if foreign:
        raise HepmpmError(
            f"{folder} holds files that are not shards (e.g. {foreign[0]}); move them"
        )
    shutil.rmtree(folder)


def run_skim(request: SkimRequest, show_progress: bool = True) -> tuple[dict[str, Any], dict]:
    """Skim ``request.inputs`` into ``request.out``; returns (manifest, histograms).

    The histograms (``hist.Hist`` of jet pT, mass and multiplicity per dataset) are empty when
    an existing complete skim was kept.
    """
    get_feature_set(request.feature_set)
    fileset = build_fileset(request.inputs, request.domain)
    settings = request.settings(fileset)
    out = Path(request.out)
    with holding_folder(out, "skim"):
        existing = _existing_manifest(out, settings_hash(settings))
        if existing is not None:
            return existing, {}
        # Held, the folder is ours: a staging folder in it is a killed run's, never a live one's.
        for stale in out.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        return _skim_into(out, request, settings, fileset, show_progress)


def _skim_into(
    out: Path,
    request: SkimRequest,
    settings: dict[str, Any],
    fileset: dict[str, Any],
    show_progress: bool,
) -> tuple[dict[str, Any], dict]:
    """Run the skim into a staging folder of ``out`` and move its shards, then the manifest,
    into place."""
    staging = out / f"{STAGING_PREFIX}{settings_hash(settings)}"
    skim = ConstituentSkim(
        staging,
        feature_set=request.feature_set,
        selection=request.selection,
        require_impact_parameters=request.require_impact_parameters,
    )
    try:
        with make_runner(
            request.executor, request.workers, request.chunksize, request.scheduler, show_progress
        ) as runner:
            output = runner(fileset, processor_instance=skim)
        if not any(c["jets"] for c in output["chunks"]):
            counts = json.dumps(output["counts"])
            raise HepmpmError(f"no jet passed the selection; nothing written (counts: {counts})")
        manifest = _build_manifest(request, settings, output)
        # Everything is written in staging first; then two renames, which need no space.
        write_json_atomic(staging / MANIFEST_NAME, manifest)
        _remove_stale_shards(out / SHARDS_DIR)
        (staging / SHARDS_DIR).replace(out / SHARDS_DIR)
        (staging / MANIFEST_NAME).replace(out / MANIFEST_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest, output["hists"]
