"""``manifest.json``: what a skim folder holds, written once the skim is complete.

It names the feature set and its ordered features, lists the shards with their jet counts and
source entry ranges, the per-feature statistics, the skim's counts and settings, and the inputs
that were absent and replaced (e.g. impact parameters of central NanoAOD). Readers use only the
shards listed here, so leftovers of an interrupted run are never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hepmpm.errors import HepmpmError
from hepmpm.features import FeatureSet, get_feature_set
from hepmpm.records import read_record

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "hepmpm-skim"


@dataclass(frozen=True)
class ShardInfo:
    """One shard: its absolute path, dataset and number of jets."""

    path: Path
    dataset: str
    jets: int


@dataclass(frozen=True)
class SkimManifest:
    """The parsed manifest of a skim folder."""

    directory: Path
    feature_set: FeatureSet
    shards: tuple[ShardInfo, ...]
    statistics: dict[str, dict[str, Any]]
    raw: dict[str, Any]

    @property
    def n_jets(self) -> int:
        return sum(s.jets for s in self.shards)


def load_manifest(directory: Path) -> SkimManifest:
    """Read and check ``directory/manifest.json``; errors say what is missing or inconsistent."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    raw = read_record(
        path,
        MANIFEST_FORMAT,
        ("feature_set", "features", "shards"),
        absent=f"{directory} is not a skim folder: no {MANIFEST_NAME} "
        "(make one with `hepmpm skim ... --out DIR`; an interrupted skim writes none)",
    )
    feature_set = get_feature_set(raw["feature_set"])
    if tuple(raw["features"]) != feature_set.names:
        raise HepmpmError(
            f"{path}: features {raw['features']} differ from feature set "
            f"{feature_set.name!r} of this hepmpm version {list(feature_set.names)}"
        )
    shards = tuple(
        ShardInfo(path=directory / s["path"], dataset=s["dataset"], jets=int(s["jets"]))
        for s in raw["shards"]
    )
    missing = [str(s.path) for s in shards if not s.path.is_file()]
    if missing:
        raise HepmpmError(f"{path}: {len(missing)} listed shard(s) missing, e.g. {missing[0]}")
    return SkimManifest(
        directory=directory,
        feature_set=feature_set,
        shards=shards,
        statistics=raw.get("statistics", {}),
        raw=raw,
    )
