"""An in-memory index of the jets of a skim folder, and subsets of them.

:class:`JetIndex` reads only the small per-jet columns of every shard listed in ``manifest.json``
(identity, label, domain, jet kinematics, particle count; never ``particles``) together with
the shards' row-group layout, and assigns each jet its train/val/test split
(:mod:`hepmpm.data.split`). :meth:`JetIndex.select` filters by split, label and domain and can
take an exact, deterministic number of jets (optionally balanced over classes), which is what
label-size scans need. The result, a :class:`JetSubset`, says which rows of which shard
(and row group) to read; :class:`hepmpm.data.loader.JetDataset` streams them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hepmpm.data.manifest import SkimManifest, load_manifest
from hepmpm.data.split import SPLITS, assign_splits, check_fractions, jet_hash, splitmix64
from hepmpm.errors import HepmpmError

#: Per-jet columns the index reads (everything in a shard but ``dataset`` and ``particles``).
INDEX_COLUMNS: tuple[str, ...] = (
    "run",
    "luminosityBlock",
    "event",
    "jet_index",
    "domain",
    "label",
    "jet_pt",
    "jet_eta",
    "jet_phi",
    "jet_mass",
    "n_particles",
)

#: Value of ``label`` for jets of unknown class (e.g. collision data).
UNKNOWN_LABEL = -1

_NUMERIC_COLUMNS = tuple(c for c in INDEX_COLUMNS if c != "domain")
#: Distinguishes the limit priority hash from the split hash.
_LIMIT_SALT = 0x6C696D6974  # "limit"


@dataclass(frozen=True)
class RowGroups:
    """The parquet row groups of all shards, numbered globally in shard order [G each]."""

    shard: np.ndarray  #: int32 [G], position of the shard in ``JetIndex.shard_paths``
    number: np.ndarray  #: int32 [G], the row group's number inside its shard
    rows: np.ndarray  #: int64 [G], jets in the row group

    def __len__(self) -> int:
        return len(self.shard)


class JetIndex:
    """Per-jet columns of a whole skim folder, in shard order, with split and row-group position.

    Arrays are [n_jets], jet ``i`` is row ``row_in_group[i]`` of row group ``row_group[i]``.
    ``columns`` holds the shard columns of :data:`INDEX_COLUMNS` but ``domain`` (as numpy,
    momenta/masses in GeV); the domain is ``domains[domain_code[i]]``.
    """

    def __init__(
        self,
        *,
        directory: Path,
        shard_paths: tuple[Path, ...],
        feature_names: tuple[str, ...],
        columns: dict[str, np.ndarray],
        domains: tuple[str, ...],
        domain_code: np.ndarray,
        row_groups: RowGroups,
        row_group: np.ndarray,
        row_in_group: np.ndarray,
        fractions: tuple[float, float, float],
    ) -> None:
        self.directory = directory
        self.shard_paths = shard_paths
        self.feature_names = feature_names
        self.columns = columns
        self.domains = domains
        self.domain_code = domain_code
        self.row_groups = row_groups
        self.row_group = row_group
        self.row_in_group = row_in_group
        self.fractions = fractions
        self.jet_hash = jet_hash(
            columns["run"], columns["luminosityBlock"], columns["event"], columns["jet_index"]
        )
        self.split_code = assign_splits(self.jet_hash, fractions)

    @classmethod
    def from_skim(
        cls,
        source: str | Path | SkimManifest,
        fractions: Sequence[float] | Mapping[str, float] | None = None,
    ) -> JetIndex:
        """Index the skim folder ``source`` (or its manifest); ``fractions``: train/val/test."""
        manifest = source if isinstance(source, SkimManifest) else load_manifest(Path(source))
        fractions = check_fractions(fractions)
        n_features = manifest.feature_set.n_features
        domains: dict[str, int] = {}
        per_shard: list[dict[str, np.ndarray]] = []
        codes: list[np.ndarray] = []
        rg_shard, rg_number, rg_rows = [], [], []
        for i, shard in enumerate(manifest.shards):
            parquet = pq.ParquetFile(shard.path)
            _check_schema(shard.path, parquet.schema_arrow, n_features)
            table = parquet.read(columns=list(INDEX_COLUMNS), use_threads=False)
            if table.num_rows != shard.jets:
                raise HepmpmError(
                    f"{shard.path}: {table.num_rows} jets, but {manifest.directory}/manifest.json "
                    f"lists {shard.jets}"
                )
            per_shard.append({c: table.column(c).to_numpy() for c in _NUMERIC_COLUMNS})
            codes.append(_domain_codes(table.column("domain"), domains, shard.path))
            meta = parquet.metadata
            rg_shard.append(np.full(meta.num_row_groups, i, dtype=np.int32))
            rg_number.append(np.arange(meta.num_row_groups, dtype=np.int32))
            rg_rows.append(
                np.array([meta.row_group(g).num_rows for g in range(meta.num_row_groups)], np.int64)
            )
        row_groups = RowGroups(
            shard=_concat(rg_shard, np.int32),
            number=_concat(rg_number, np.int32),
            rows=_concat(rg_rows, np.int64),
        )
        row_group = np.repeat(np.arange(len(row_groups), dtype=np.int32), row_groups.rows)
        first_row = np.cumsum(row_groups.rows) - row_groups.rows
        row_in_group = (np.arange(len(row_group)) - first_row[row_group]).astype(np.int32)
        columns = {c: _concat([s[c] for s in per_shard], _numpy_type(c)) for c in _NUMERIC_COLUMNS}
        return cls(
            directory=manifest.directory,
            shard_paths=tuple(s.path for s in manifest.shards),
            feature_names=manifest.feature_set.names,
            columns=columns,
            domains=tuple(domains),
            domain_code=_concat(codes, np.int16),
            row_groups=row_groups,
            row_group=row_group,
            row_in_group=row_in_group,
            fractions=fractions,
        )

    def __len__(self) -> int:
        return len(self.row_group)

    @property
    def labels(self) -> np.ndarray:
        """Class index per jet, int32 [n_jets] (:data:`UNKNOWN_LABEL` when unknown)."""
        return self.columns["label"]

    def ids(self, positions: np.ndarray | None = None) -> np.ndarray:
        """``(run, luminosityBlock, event, jet_index)`` at ``positions`` -> uint64 [n, 4]."""
        names = ("run", "luminosityBlock", "event", "jet_index")
        take = slice(None) if positions is None else np.asarray(positions)
        return np.stack([self.columns[c][take].astype(np.uint64) for c in names], axis=1)

    def split_counts(self) -> dict[str, int]:
        """Number of jets in each split."""
        counts = np.bincount(self.split_code, minlength=len(SPLITS))
        return {name: int(n) for name, n in zip(SPLITS, counts, strict=True)}

    def select(
        self,
        split: str | None = "train",
        labels: Iterable[int] | None = None,
        domains: Iterable[str] | None = None,
        limit: int | None = None,
        balanced: bool = False,
        seed: int = 0,
    ) -> JetSubset:
        """Jets of ``split`` (``None``: all splits) passing the filters, in shard/row order.

        ``labels``: keep these class indices; ``domains``: keep these domains (``"sim"``, ...).
        ``limit``: keep exactly this many jets, chosen by a hash of (``seed``, jet identity), so
        the same seed gives the same jets and a smaller limit gives a subset of a larger one.
        ``balanced``: the limit is split evenly over the classes (``labels``, or all classes
        present), the first ``limit % n_classes`` classes in index order taking one jet more;
        without a limit, every class is cut to the size of the smallest.
        Asking for more jets than exist, or for labels/domains that the skim lacks, raises
        :class:`HepmpmError` with the numbers available.
        """
        where = f"split {split!r}" if split is not None else "all splits"
        mask = np.ones(len(self), dtype=bool)
        if split is not None:
            if split not in SPLITS:
                raise HepmpmError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
            mask &= self.split_code == SPLITS.index(split)
        label_list = None
        if labels is not None:
            label_list = sorted({int(v) for v in ([labels] if np.isscalar(labels) else labels)})
            present = np.unique(self.labels)
            unknown = sorted(set(label_list) - set(present.tolist()))
            if unknown:
                raise HepmpmError(
                    f"label(s) {unknown} not in skim {self.directory} "
                    f"(labels there: {present.tolist()})"
                )
            mask &= np.isin(self.labels, label_list)
            where += f", labels {label_list}"
        if domains is not None:
            domain_list = [domains] if isinstance(domains, str) else sorted(set(domains))
            unknown = [d for d in domain_list if d not in self.domains]
            if unknown:
                raise HepmpmError(
                    f"domain(s) {unknown} not in skim {self.directory} "
                    f"(domains there: {list(self.domains)})"
                )
            codes = [self.domains.index(d) for d in domain_list]
            mask &= np.isin(self.domain_code, codes)
            where += f", domains {domain_list}"
        positions = np.flatnonzero(mask)
        if len(positions) == 0:
            raise HepmpmError(f"no jet of {where} in skim {self.directory}")
        if limit is not None or balanced:
            positions = self._limit(positions, label_list, limit, balanced, seed, where)
        return JetSubset(index=self, positions=positions, description=where)

    def _limit(
        self,
        positions: np.ndarray,
        label_list: list[int] | None,
        limit: int | None,
        balanced: bool,
        seed: int,
        where: str,
    ) -> np.ndarray:
        """Exactly ``limit`` of ``positions`` (sorted), lowest priority hash first."""
        if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 1):
            raise HepmpmError(f"limit must be a positive whole number of jets, got {limit!r}")
        seed_key = splitmix64(np.array([int(seed) ^ _LIMIT_SALT], dtype=np.uint64))
        priority = splitmix64(self.jet_hash[positions] ^ seed_key)
        if not balanced:
            limit = int(limit)
            if limit > len(positions):
                raise HepmpmError(
                    f"asked for {limit} jets, but {where} has only {len(positions)} "
                    f"in skim {self.directory}"
                )
            if limit == len(positions):
                return positions
            keep = np.argpartition(priority, limit - 1)[:limit]
            return np.sort(positions[keep])
        labels = self.labels[positions]
        classes, available = np.unique(labels, return_counts=True)
        if label_list is not None:
            # Classes asked for but absent from this split count as 0 available.
            available = np.array([available[classes == c].sum() for c in label_list])
            classes = np.array(label_list)
        if UNKNOWN_LABEL in classes:
            raise HepmpmError(
                f"balanced=True needs labelled jets, but {where} has jets of unknown class "
                f"(label {UNKNOWN_LABEL}); choose labels=[...] or a labelled domain"
            )
        detail = ", ".join(f"class {c}: {a}" for c, a in zip(classes, available, strict=True))
        if limit is None:
            quota = np.full(len(classes), available.min())
            if quota[0] == 0:
                raise HepmpmError(f"balanced: a class has no jets in {where} ({detail})")
        else:
            quota = np.full(len(classes), int(limit) // len(classes))
            quota[: int(limit) % len(classes)] += 1
        short = quota > available
        if short.any():
            raise HepmpmError(
                f"asked for {limit} jets balanced over {len(classes)} classes "
                f"({quota.max()} per class), but {where} has fewer for class(es) "
                f"{classes[short].tolist()} (available per class: {detail})"
            )
        # Rank every jet within its class by priority; keep the ``quota`` lowest of each.
        order = np.lexsort((priority, labels))
        sorted_labels = labels[order]
        class_start = np.searchsorted(sorted_labels, classes)
        class_of = np.searchsorted(classes, sorted_labels)
        rank = np.arange(len(order)) - class_start[class_of]
        keep = order[rank < quota[class_of]]
        return np.sort(positions[keep])


@dataclass(frozen=True)
class JetSubset:
    """A set of jets of a :class:`JetIndex`: ``positions`` int64 [n], ascending (shard order)."""

    index: JetIndex
    positions: np.ndarray
    description: str

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def labels(self) -> np.ndarray:
        """Class index per selected jet, int32 [n]."""
        return self.index.labels[self.positions]

    def ids(self) -> np.ndarray:
        """``(run, luminosityBlock, event, jet_index)`` per selected jet, uint64 [n, 4]."""
        return self.index.ids(self.positions)

    def class_counts(self) -> dict[int, int]:
        """Number of selected jets per class index."""
        classes, counts = np.unique(self.labels, return_counts=True)
        return {int(c): int(n) for c, n in zip(classes, counts, strict=True)}


def _check_schema(path: Path, schema: pa.Schema, n_features: int) -> None:
    missing = [c for c in (*INDEX_COLUMNS, "particles") if c not in schema.names]
    if missing:
        raise HepmpmError(
            f"{path}: not a hepmpm shard, column(s) {missing} missing (columns: {schema.names})"
        )
    kind = schema.field("particles").type
    ok = (
        pa.types.is_list(kind)
        and pa.types.is_fixed_size_list(kind.value_type)
        and kind.value_type.value_type == pa.float32()
    )
    if not ok or kind.value_type.list_size != n_features:
        raise HepmpmError(
            f"{path}: column 'particles' is {kind}, expected list<fixed_size_list<float, "
            f"{n_features}>> for the manifest's feature set"
        )


def _domain_codes(column: pa.ChunkedArray, vocabulary: dict[str, int], path: Path) -> np.ndarray:
    """Codes of a string column in a growing ``vocabulary`` -> int16 [n]."""
    if column.null_count:
        raise HepmpmError(f"{path}: column 'domain' has {column.null_count} missing value(s)")
    encoded = pc.dictionary_encode(column).combine_chunks()
    local = encoded.indices.to_numpy()
    lookup = np.array(
        [vocabulary.setdefault(str(v), len(vocabulary)) for v in encoded.dictionary.to_pylist()],
        dtype=np.int16,
    )
    return lookup[local] if len(lookup) else np.zeros(0, dtype=np.int16)


def _numpy_type(column: str) -> np.dtype:
    kinds = {
        "run": np.uint32,
        "luminosityBlock": np.uint32,
        "event": np.uint64,
        "jet_index": np.int32,
        "label": np.int32,
        "n_particles": np.int32,
    }
    return np.dtype(kinds.get(column, np.float32))


def _concat(parts: list[np.ndarray], dtype: type | np.dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
