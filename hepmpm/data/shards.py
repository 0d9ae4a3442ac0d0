"""Parquet training shards: one file per skimmed chunk, one row per jet.

Columns (see :data:`JET_COLUMNS`): ``run``, ``luminosityBlock``, ``event``, ``jet_index`` (the
jet's position in the event's FatJet collection), ``dataset``, ``domain`` (e.g. ``sim``/``data``),
``label`` (class index, −1 when unknown), ``jet_pt``/``jet_mass`` in GeV, ``jet_eta``,
``jet_phi``, ``n_particles``, and ``particles``: ``var * F * float32``, the jet's particles sorted
by pT (descending), each with the **raw** features of the skim's feature set in its order.
Shards are written with pyarrow (row groups of :data:`ROW_GROUP_SIZE` jets so that readers can
take part of a shard) and read equally well with ``ak.from_parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hepmpm.atomic import atomic_path

ROW_GROUP_SIZE = 2048

#: Per-jet columns and their arrow types, in file order (``particles`` comes last).
JET_COLUMNS: dict[str, pa.DataType] = {
    "run": pa.uint32(),
    "luminosityBlock": pa.uint32(),
    "event": pa.uint64(),
    "jet_index": pa.int32(),
    "dataset": pa.string(),
    "domain": pa.string(),
    "label": pa.int32(),
    "jet_pt": pa.float32(),
    "jet_eta": pa.float32(),
    "jet_phi": pa.float32(),
    "jet_mass": pa.float32(),
    "n_particles": pa.int32(),
}


@dataclass(frozen=True)
class JetRows:
    """The rows of one shard: per-jet columns [n_jets] and particle features [n_particles, F]."""

    columns: dict[str, np.ndarray]
    features: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.counts)


def particles_type(n_features: int) -> pa.ListType:
    """Arrow type of the ``particles`` column: ``var * F * float32``, no missing values."""
    per_particle = pa.list_(pa.field("element", pa.float32(), nullable=False), n_features)
    return pa.list_(pa.field("element", per_particle, nullable=False))


def particles_array(features: np.ndarray, counts: np.ndarray) -> pa.ListArray:
    """``var * F * float32`` arrow array from flat features [n_particles, F] and counts [n_jets]."""
    kind = particles_type(features.shape[1])
    values = pa.array(np.ascontiguousarray(features, dtype=np.float32).reshape(-1))
    per_particle = pa.FixedSizeListArray.from_arrays(values, type=kind.value_type)
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), per_particle, type=kind)


def write_shard(path: Path, rows: JetRows, metadata: dict[str, str] | None = None) -> None:
    """Write ``rows`` to ``path`` atomically (temporary name, then rename)."""
    arrays = [
        pa.array(np.asarray(rows.columns[name]), type=kind) for name, kind in JET_COLUMNS.items()
    ]
    particles = particles_array(rows.features, rows.counts)
    # Non-nullable fields: readers get plain types (awkward: ``var * F * float32``, not options),
    # and the writer skips definition levels (~30% faster for the particles).
    schema = pa.schema(
        [pa.field(name, kind, nullable=False) for name, kind in JET_COLUMNS.items()]
        + [pa.field("particles", particles.type, nullable=False)]
    )
    table = pa.Table.from_arrays([*arrays, particles], schema=schema)
    if metadata:
        table = table.replace_schema_metadata({f"hepmpm.{k}": v for k, v in metadata.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        # Dictionary-encode only the repeated strings: on float particles it costs time and bytes.
        pq.write_table(
            table,
            tmp,
            row_group_size=ROW_GROUP_SIZE,
            # lz4: half of zstd's write and read time for ~15% more bytes (floats barely compress)
            compression="lz4",
            use_dictionary=["dataset", "domain"],
        )


def particle_features(column: pa.ChunkedArray | pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    """Flat features [n_particles, F] float32 and offsets [n_jets + 1] of a ``particles`` column."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n_features = array.type.value_type.list_size
    offsets = array.offsets.to_numpy()
    flat = array.values.values.to_numpy(zero_copy_only=False).reshape(-1, n_features)
    # A sliced array keeps the parent's offsets: rebase so that the first jet starts at 0.
    start = offsets[0]
    return flat[start : offsets[-1]], offsets - start


def read_skim_particles(shards: list[Path], limit: int = 200_000) -> np.ndarray:
    """Flat raw particle features [n, F] of the first shards, at most ``limit`` particles
    (for plots and comparisons; training streams through :mod:`hepmpm.data.loader`)."""
    parts, total = [], 0
    for path in shards:
        flat, _ = particle_features(pq.read_table(path, columns=["particles"])["particles"])
        parts.append(flat[: limit - total])
        total += len(parts[-1])
        if total >= limit:
            break
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
