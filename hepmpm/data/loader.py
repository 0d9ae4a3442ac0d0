"""Streaming torch dataset over the shards of a skim folder: padded, masked, shuffled, sharded.

:class:`JetDataset` is an :class:`~torch.utils.data.IterableDataset` that yields whole
:class:`JetBatch` es; use it with ``DataLoader(dataset, batch_size=None)`` (or
:func:`make_dataloader`). One epoch, in steps that are all vectorised with numpy:

1. **Order.** The row groups holding selected jets are shuffled with a generator seeded by
   ``(seed, epoch)``; the selected jets, read row group after row group, form the *read order*.
   The read order is cut into blocks of ``shuffle_buffer`` jets and each block is permuted
   (seeded by ``(seed, epoch, block)``): the *emission order*. Every jet appears once.
2. **Sharding.** The emission order is cut into one contiguous part per torch.distributed rank
   (sizes differ by at most one jet), each part into batches of ``batch_size`` jets, and the
   batches of a rank into one contiguous run per DataLoader worker. A worker reads (with
   ``ParquetFile.read_row_group``) only the row groups of its batches, block by block, so it
   holds about ``shuffle_buffer`` jets in memory. The batches are the same whatever the number
   of workers (only their interleaving differs); only the last batch of a rank can be short.
3. **Padding.** A batch's particles are gathered from the flat particle array into
   ``features`` [B, P, F] with ``P`` the longest jet of the batch, or ``pad_to`` (longer jets
   keep their ``pad_to`` hardest particles, as shards are sorted by pT). Padding is 0 with
   ``mask`` False.

``drop_last=True`` drops, per epoch, the jets that would make the ranks' batch counts differ or a
batch short (at most ``world_size * batch_size`` jets, different ones each epoch when shuffling),
so that every rank yields the same number of full batches: use it for DDP training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hepmpm.data.index import JetIndex, JetSubset
from hepmpm.data.manifest import SkimManifest
from hepmpm.data.shards import particle_features
from hepmpm.errors import HepmpmError

DEFAULT_SHUFFLE_BUFFER = 16384


class JetBatch(NamedTuple):
    """A batch of B jets padded to P particles with F raw features each (feature-set order)."""

    features: torch.Tensor  #: float32 [B, P, F], 0 at padded positions
    mask: torch.Tensor  #: bool [B, P], True on each jet's first min(n_particles, P) positions
    labels: torch.Tensor  #: int64 [B], class index (-1: unknown)
    jet_pt: torch.Tensor  #: float32 [B], GeV
    jet_mass: torch.Tensor  #: float32 [B], GeV
    domain: torch.Tensor  #: int64 [B], index into ``JetDataset.domains``
    jet_id: torch.Tensor  #: int64 [B], position in the JetIndex (``index.ids(jet_id)``)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> JetBatch:
        """The batch with every tensor on ``device``."""
        return JetBatch(*(t.to(device, non_blocking=non_blocking) for t in self))


class JetDataset(IterableDataset):
    """Padded batches of the jets of one split of a skim folder; see the module docstring.

    ``source``: a skim folder, its :class:`SkimManifest`, or a :class:`JetIndex` (to share one
    index between the train/val/test datasets). ``split``: ``train``, ``val``, ``test`` or
    ``None`` for all jets; ``labels``/``domains``/``limit``/``balanced``/``seed`` select jets
    as :meth:`JetIndex.select` does. ``pad_to``: fixed number of particle slots (``None``: the
    longest jet of each batch). ``shuffle``: shuffle per epoch (row groups, then blocks of
    ``shuffle_buffer`` jets), order fixed by ``(seed, epoch)``; call :meth:`set_epoch` before
    each epoch. ``bucket``: batch jets of similar multiplicity within each shuffle block (less
    padding; the batches then depend on the number of DataLoader workers); without ``shuffle``
    the batches come in order of multiplicity, so read ``batch.jet_id`` (with
    :meth:`order_of`) to put the jets back in the selection's order.
    ``cache``: keep the selected jets' particles in memory once read (each worker
    keeps what it read), for small subsets read for many epochs. ``rank``/``world_size``:
    this process's part (default: from ``torch.distributed`` if initialised, else 0 of 1).
    ``fractions``: train/val/test fractions when ``source`` is not a JetIndex.
    """

    def __init__(
        self,
        source: str | Path | SkimManifest | JetIndex,
        split: str | None = "train",
        batch_size: int = 256,
        *,
        pad_to: int | None = None,
        labels: Iterable[int] | None = None,
        domains: Iterable[str] | None = None,
        limit: int | None = None,
        balanced: bool = False,
        shuffle: bool = False,
        shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
        seed: int = 0,
        drop_last: bool = False,
        cache: bool = False,
        bucket: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        fractions: Sequence[float] | Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        _check_positive("batch_size", batch_size)
        _check_positive("shuffle_buffer", shuffle_buffer)
        if pad_to is not None:
            _check_positive("pad_to", pad_to)
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise HepmpmError(f"seed must be a whole number >= 0, got {seed!r}")
        if (rank is None) != (world_size is None):
            raise HepmpmError("give both rank and world_size, or neither (torch.distributed)")
        if world_size is not None:
            _check_positive("world_size", world_size)
            if not 0 <= rank < world_size:
                raise HepmpmError(f"rank must be in [0, {world_size}), got {rank}")
        if isinstance(source, JetIndex):
            if fractions is not None:
                raise HepmpmError("fractions are fixed by the JetIndex; give them to it")
            index = source
        else:
            index = JetIndex.from_skim(source, fractions=fractions)
        subset = index.select(split, labels, domains, limit, balanced, seed)

        self.subset: JetSubset = subset
        self.split = split
        self.batch_size = int(batch_size)
        self.pad_to = None if pad_to is None else int(pad_to)
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.cache = bool(cache)
        self.bucket = bool(bucket)
        self.rank = rank
        self.world_size = world_size
        self.domains: tuple[str, ...] = index.domains
        self.feature_names: tuple[str, ...] = index.feature_names
        self._distributed = _distributed_world()
        # Shared memory, so that set_epoch reaches persistent DataLoader workers too.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

        # What a worker needs, as plain arrays (picklable, no manifest): per selected jet [N],
        # in shard/row order, and per row group holding selected jets [G].
        pos = subset.positions
        self._shard_paths = tuple(str(p) for p in index.shard_paths)
        self._jet_id = pos.astype(np.int64)
        self._row = index.row_in_group[pos]
        self._label = index.labels[pos].astype(np.int64)
        self._jet_pt = index.columns["jet_pt"][pos]
        self._jet_mass = index.columns["jet_mass"][pos]
        self._domain = index.domain_code[pos].astype(np.int64)
        self._n_particles = index.columns["n_particles"][pos]
        groups, self._group_start, self._group_count = np.unique(
            index.row_group[pos], return_index=True, return_counts=True
        )
        self._group_shard = index.row_groups.shard[groups]
        self._group_number = index.row_groups.number[groups]
        self._group_rows = index.row_groups.rows[groups]
        self._group_of = np.repeat(np.arange(len(groups)), self._group_count)
        # With ``cache``, one reader per process keeps the jets from epoch to epoch.
        self._cache_reader: _GroupReader | None = None
        if self.drop_last and self.n_jets < self.batch_size:
            raise HepmpmError(
                f"drop_last=True with batch_size {self.batch_size}, but {subset.description} "
                f"has only {self.n_jets} jets: no batch would be yielded"
            )

    # ------------------------------------------------------------------ sizes and epochs

    @property
    def n_jets(self) -> int:
        """Number of selected jets (all ranks together)."""
        return len(self._jet_id)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def order_of(self, jet_id: np.ndarray) -> np.ndarray:
        """Position [n] in the selection's order (the order of an unshuffled, unbucketed
        epoch) of each jet of ``jet_id`` [n] (``JetBatch.jet_id`` values)."""
        sorter = np.argsort(self._jet_id, kind="stable")
        return sorter[np.searchsorted(self._jet_id, jet_id, sorter=sorter)]

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle order the next iteration uses (also in workers)."""
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def _world(self) -> tuple[int, int]:
        """(rank, world size): as given, else torch.distributed's, as the main process saw it.

        DataLoader worker processes are not part of the process group, so the main process
        remembers the answer (at construction, ``len``, ``iter`` and :func:`make_dataloader`)
        and workers, which start with a copy of the dataset, use that.
        """
        if self.world_size is not None:
            return int(self.rank), int(self.world_size)
        if get_worker_info() is None:
            self._distributed = _distributed_world()
        return self._distributed

    def _rank_range(self, rank: int, world_size: int) -> tuple[int, int]:
        """Start and number of jets of ``rank`` in the emission order."""
        n = self.n_jets
        if self.drop_last:
            per_rank = n // world_size
            used = per_rank // self.batch_size * self.batch_size
            return rank * per_rank, used
        per_rank, extra = divmod(n, world_size)
        return rank * per_rank + min(rank, extra), per_rank + (rank < extra)

    def rank_jets(self) -> int:
        """Number of jets this rank yields per epoch."""
        return self._rank_range(*self._world())[1]

    def __len__(self) -> int:
        """Number of batches this rank yields per epoch (all its DataLoader workers together)."""
        return math.ceil(self.rank_jets() / self.batch_size)

    # ------------------------------------------------------------------ the epoch's order

    def _group_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Row groups in read order -> (group ids [G], first read position of each [G + 1])."""
        groups = np.arange(len(self._group_count))
        if self.shuffle:
            groups = np.random.default_rng([self.seed, epoch, 0]).permutation(groups)
        starts = np.zeros(len(groups) + 1, dtype=np.int64)
        np.cumsum(self._group_count[groups], out=starts[1:])
        return groups, starts

    def _block(
        self, epoch: int, block: int, order: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, int]:
        """Selected-jet numbers of ``block`` in emission order [<= shuffle_buffer], and the row
        group of the block's last jet in read order (the one the next block may start with)."""
        groups, starts = order
        first = block * self.shuffle_buffer
        read = np.arange(first, min(first + self.shuffle_buffer, self.n_jets))
        at = np.searchsorted(starts, read, side="right") - 1
        jets = self._group_start[groups[at]] + (read - starts[at])
        if self.shuffle:
            jets = np.random.default_rng([self.seed, epoch, 1, block]).permutation(jets)
        return jets, int(groups[at[-1]])

    def epoch_order(self, epoch: int | None = None) -> np.ndarray:
        """Selected-jet numbers of the whole epoch in emission order [n_jets] (all ranks)."""
        epoch = self.epoch if epoch is None else epoch
        order = self._group_order(epoch)
        n_blocks = math.ceil(self.n_jets / self.shuffle_buffer)
        return np.concatenate([self._block(epoch, b, order)[0] for b in range(n_blocks)])

    def _worker_range(
        self, rank: int, world_size: int, worker: int, n_workers: int
    ) -> tuple[int, int]:
        """Emission positions [start, stop) of one worker of one rank."""
        first, n = self._rank_range(rank, world_size)
        n_batches = math.ceil(n / self.batch_size)
        per_worker, extra = divmod(n_batches, n_workers)
        b0 = worker * per_worker + min(worker, extra)
        b1 = b0 + per_worker + (worker < extra)
        return first + b0 * self.batch_size, first + min(b1 * self.batch_size, n)

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[JetBatch]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        rank, world_size = self._world()
        start, stop = self._worker_range(rank, world_size, worker, n_workers)
        return self._batches(self.epoch, start, stop)

    def __getstate__(self) -> dict:
        # Open parquet files and cached arrays stay in their process; workers make their own.
        return {**self.__dict__, "_cache_reader": None}

    def _reader(self) -> _GroupReader:
        if not self.cache:
            return _GroupReader(self)  # forgets each row group after use
        if self._cache_reader is None:
            self._cache_reader = _GroupReader(self)
        return self._cache_reader

    def _batches(self, epoch: int, start: int, stop: int) -> Iterator[JetBatch]:
        if start >= stop:
            return
        reader = self._reader()
        order = self._group_order(epoch)
        block_size = self.shuffle_buffer
        carry = _Pool.empty(self.n_features)
        for block in range(start // block_size, (stop - 1) // block_size + 1):
            jets, last_group = self._block(epoch, block, order)
            lo = max(start - block * block_size, 0)
            hi = min(stop - block * block_size, len(jets))
            # The block's last row group in read order may continue in the next block: keep it.
            pool = carry.extend(reader.load(jets[lo:hi], keep=last_group))
            n_full = len(pool) // self.batch_size * self.batch_size
            full = pool
            if self.bucket:
                full = pool.take(self._bucketed(pool.counts[:n_full], epoch, block))
            for b in range(0, n_full, self.batch_size):
                yield self._make_batch(full, b, b + self.batch_size)
            carry = pool.take(np.arange(n_full, len(pool)))
        if len(carry):
            yield self._make_batch(carry, 0, len(carry))

    def _bucketed(self, counts: np.ndarray, epoch: int, block: int) -> np.ndarray:
        """Order of a block's full batches of jets with ``counts`` particles [n] for ``bucket``:
        sorted by multiplicity, cut into batches, and the batches shuffled (with ``shuffle``;
        without it they stay in order of multiplicity: scoring, see :meth:`order_of`).

        Bucketing keeps which jets an epoch trains on and how many batches it has (so resume
        stays exact); each batch then holds jets of similar length and pads little: real jets
        (median ~48 particles, tail to 128) padded to the longest of a random batch are about
        half padding. The sort is stable over the already shuffled block, so jets of equal
        length still mix differently every epoch.
        """
        if len(counts) <= self.batch_size:
            return np.arange(len(counts))
        order = np.argsort(counts, kind="stable").reshape(-1, self.batch_size)
        if not self.shuffle:
            return order.reshape(-1)
        rng = np.random.default_rng([self.seed, epoch, 2, block])
        return order[rng.permutation(len(order))].reshape(-1)

    def _make_batch(self, pool: _Pool, lo: int, hi: int) -> JetBatch:
        jets = pool.jets[lo:hi]
        features, mask = pad_particles(
            pool.flat, pool.starts[lo:hi], pool.counts[lo:hi], self.pad_to
        )
        return JetBatch(
            features=torch.from_numpy(features),
            mask=torch.from_numpy(mask),
            labels=torch.from_numpy(self._label[jets]),
            jet_pt=torch.from_numpy(self._jet_pt[jets]),
            jet_mass=torch.from_numpy(self._jet_mass[jets]),
            domain=torch.from_numpy(self._domain[jets]),
            jet_id=torch.from_numpy(self._jet_id[jets]),
        )

    def __repr__(self) -> str:
        return (
            f"JetDataset({self.subset.description}, {self.n_jets} jets, "
            f"batch_size={self.batch_size}, pad_to={self.pad_to}, shuffle={self.shuffle})"
        )


def pad_particles(
    flat: np.ndarray, starts: np.ndarray, counts: np.ndarray, pad_to: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Padded features [B, P, F] float32 and mask [B, P] bool of B jets of a flat particle array.

    Jet ``i`` is ``flat[starts[i] : starts[i] + counts[i]]`` ([n_particles, F]); ``P`` is
    ``pad_to`` (jets truncated to their first ``pad_to`` particles) or the longest jet (>= 1).
    """
    counts = np.asarray(counts, dtype=np.int64)
    if pad_to is not None:
        counts = np.minimum(counts, pad_to)
        width = pad_to
    else:
        width = max(int(counts.max(initial=0)), 1)
    slots = np.arange(width)
    mask = slots < counts[:, None]
    source = (np.asarray(starts, dtype=np.int64)[:, None] + slots)[mask]
    features = np.zeros((len(counts), width, flat.shape[1]), dtype=np.float32)
    features[mask] = flat[source]
    return features, mask


class _Pool:
    """Particles of some selected jets: ``flat`` [n_particles, F]; per jet [n]: the jet's
    number in the selection, first particle row in ``flat``, and particle count."""

    def __init__(self, flat: np.ndarray, jets: np.ndarray, starts: np.ndarray, counts: np.ndarray):
        self.flat, self.jets, self.starts, self.counts = flat, jets, starts, counts

    @classmethod
    def empty(cls, n_features: int) -> _Pool:
        none = np.zeros(0, dtype=np.int64)
        return cls(np.zeros((0, n_features), np.float32), none, none, none)

    def __len__(self) -> int:
        return len(self.jets)

    def take(self, which: np.ndarray) -> _Pool:
        """A compact pool of the jets at ``which`` (their particles copied)."""
        flat, starts = gather_rows(self.flat, self.starts[which], self.counts[which])
        return _Pool(flat, self.jets[which], starts, self.counts[which])

    def extend(self, other: _Pool) -> _Pool:
        """This pool's jets, then ``other``'s."""
        if not len(self):
            return other
        return _Pool(
            np.concatenate([self.flat, other.flat]),
            np.concatenate([self.jets, other.jets]),
            np.concatenate([self.starts, other.starts + len(self.flat)]),
            np.concatenate([self.counts, other.counts]),
        )


def gather_rows(
    flat: np.ndarray, starts: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Copy ragged segments ``flat[starts[i] : starts[i] + counts[i]]`` into one compact array.

    Returns the compact [sum(counts), F] array and each segment's new start [n].
    """
    counts = np.asarray(counts, dtype=np.int64)
    new_starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=new_starts[1:])
    total = int(counts.sum())
    source = np.repeat(np.asarray(starts, dtype=np.int64) - new_starts, counts) + np.arange(total)
    return flat[source], new_starts


class _GroupReader:
    """Reads the particles of selected jets row group by row group, inside one worker."""

    def __init__(self, dataset: JetDataset) -> None:
        self.ds = dataset
        self.files: dict[int, pq.ParquetFile] = {}
        self.loaded: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # group -> flat, offsets
        self.cached: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # group -> selected rows

    def _read(self, group: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat features [n_particles, F] and offsets [rows + 1] of a whole row group."""
        ds = self.ds
        shard = int(ds._group_shard[group])
        if shard not in self.files:
            self.files[shard] = pq.ParquetFile(ds._shard_paths[shard])
        table = self.files[shard].read_row_group(
            int(ds._group_number[group]), columns=["particles"], use_threads=False
        )
        flat, offsets = particle_features(table.column("particles"))
        if len(offsets) - 1 != ds._group_rows[group]:
            raise HepmpmError(
                f"{ds._shard_paths[shard]}: row group {ds._group_number[group]} has "
                f"{len(offsets) - 1} jets, expected {ds._group_rows[group]}; was it rewritten?"
            )
        return flat, offsets

    def _group(self, group: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """(flat, offsets, compact) of a group; compact: rows are the selected jets only."""
        if group in self.cached:
            return (*self.cached[group], True)
        if group not in self.loaded:
            flat, offsets = self._read(group)
            if not self.ds.cache:
                self.loaded[group] = (flat, offsets)
                return flat, offsets, False
            first = self.ds._group_start[group]
            rows = self.ds._row[first : first + self.ds._group_count[group]]
            compact, starts = gather_rows(flat, offsets[rows], np.diff(offsets)[rows])
            offsets = np.append(starts, len(compact))
            self.cached[group] = (compact, offsets)
            return compact, offsets, True
        return (*self.loaded[group], False)

    def load(self, jets: np.ndarray, keep: int) -> _Pool:
        """A pool of ``jets`` (selected-jet numbers), in that order.

        Row groups are read once each and forgotten after use, but for ``keep``.
        """
        ds = self.ds
        if not len(jets):
            return _Pool.empty(ds.n_features)
        by_group = np.argsort(jets, kind="stable")  # jets are numbered in group order
        sorted_jets = jets[by_group]
        groups = ds._group_of[sorted_jets]
        bounds = np.flatnonzero(np.diff(groups)) + 1
        parts, starts, counts = [], np.empty(len(jets), np.int64), np.empty(len(jets), np.int64)
        base = 0
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(jets)], strict=True):
            group = int(groups[lo])
            flat, offsets, compact = self._group(group)
            members = sorted_jets[lo:hi]
            rows = members - ds._group_start[group] if compact else ds._row[members]
            first, last = offsets[rows], offsets[rows + 1]
            contiguous = rows[-1] - rows[0] + 1 == len(rows)
            if contiguous:  # a slice: no gather, and no copy before the concatenation below
                part = flat[first[0] : last[-1]]
                if 2 * len(part) < len(flat):  # do not keep a whole row group alive for a few jets
                    part = part.copy()
                local = first - first[0]
            else:
                part, local = gather_rows(flat, first, last - first)
            # Positions of these jets in the caller's order.
            where = by_group[lo:hi]
            starts[where] = local + base
            counts[where] = last - first
            parts.append(part)
            base += len(part)
            if group != keep:
                self.loaded.pop(group, None)
        self.loaded = {g: v for g, v in self.loaded.items() if g == keep}
        flat = np.concatenate(parts) if len(parts) > 1 else np.ascontiguousarray(parts[0])
        if not np.array_equal(counts, ds._n_particles[jets]):
            bad = int(np.flatnonzero(counts != ds._n_particles[jets])[0])
            group = int(ds._group_of[jets[bad]])
            raise HepmpmError(
                f"{ds._shard_paths[ds._group_shard[group]]}: a jet has {counts[bad]} particles "
                f"but its n_particles column says {ds._n_particles[jets[bad]]}"
            )
        return _Pool(flat, jets.astype(np.int64), starts, counts)


def _distributed_world() -> tuple[int, int]:
    """(rank, world size) of torch.distributed if initialised, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise HepmpmError(f"{name} must be a whole number >= 1, got {value!r}")


def make_dataloader(
    dataset: JetDataset, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """A DataLoader that passes the dataset's batches through (``batch_size=None``).

    With ``num_workers > 0`` the workers are persistent (started once, not every epoch) and
    :meth:`JetDataset.set_epoch` still reaches them. Make it after
    ``torch.distributed.init_process_group`` so that the workers know their rank.
    """
    dataset._world()  # remember the process group for the workers
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
