"""hepmpm.data: split, index, and the streaming dataset, on the real skim of generated jets.

The reference every check compares with is read straight from the shards with pyarrow. Cases
the skim fixture cannot cover (several domains, many row groups and shards) use a copy of its
rows re-written with ``write_shard``: small row groups, jets of odd event number as domain
``data`` with unknown label.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from hepmpm.data import JetBatch, JetDataset, JetIndex, make_dataloader, pad_particles
from hepmpm.data import shards as shards_module
from hepmpm.data.shards import JET_COLUMNS, JetRows, particle_features, write_shard
from hepmpm.data.split import assign_splits, check_fractions, jet_hash, splitmix64
from hepmpm.errors import HepmpmError

ID_COLUMNS = ("run", "luminosityBlock", "event", "jet_index")
N_CLASSES = 10
JETS_PER_CLASS = 48


def read_rows(skim: Path) -> JetRows:
    """All rows of a skim folder's shards, in manifest order, read with pyarrow only."""
    manifest = json.loads((skim / "manifest.json").read_text())
    tables = [pq.read_table(skim / s["path"]) for s in manifest["shards"]]
    columns = {
        c: np.concatenate([t.column(c).to_numpy(zero_copy_only=False) for t in tables])
        for c in JET_COLUMNS
    }
    parts = [particle_features(t.column("particles")) for t in tables]
    features = np.concatenate([flat for flat, _ in parts])
    counts = np.concatenate([np.diff(offsets) for _, offsets in parts])
    return JetRows(columns=columns, features=features, counts=counts)


class Reference:
    """Per-jet truth of a skim folder, keyed by (run, luminosityBlock, event, jet_index)."""

    def __init__(self, skim: Path) -> None:
        rows = read_rows(skim)
        self.rows = rows
        ids = np.stack([rows.columns[c].astype(np.int64) for c in ID_COLUMNS], axis=1)
        self.keys = [tuple(k) for k in ids.tolist()]
        self.row_of = {k: i for i, k in enumerate(self.keys)}
        self.offsets = np.concatenate([[0], np.cumsum(rows.counts)])
        ids = [rows.columns[c] for c in ID_COLUMNS]
        self.split = assign_splits(jet_hash(*ids))

    def particles(self, key: tuple) -> np.ndarray:
        i = self.row_of[key]
        return self.rows.features[self.offsets[i] : self.offsets[i + 1]]

    def column(self, key: tuple, name: str):
        return self.rows.columns[name][self.row_of[key]]

    def keys_where(self, mask: np.ndarray) -> list[tuple]:
        return [k for k, m in zip(self.keys, mask, strict=True) if m]


def rewrite_skim(src: Path, out: Path, n_shards: int, row_group_size: int) -> Path:
    """Copy of a skim with its rows in ``n_shards`` shards of small row groups; jets of odd
    event number become domain ``data`` with unknown label (-1)."""
    rows = read_rows(src)
    columns = dict(rows.columns)
    odd = columns["event"] % 2 == 1
    columns["domain"] = np.where(odd, "data", columns["domain"]).astype(object)
    columns["label"] = np.where(odd, -1, columns["label"]).astype(np.int32)
    manifest = json.loads((src / "manifest.json").read_text())
    offsets = np.concatenate([[0], np.cumsum(rows.counts)])
    bounds = np.linspace(0, len(rows), n_shards + 1).astype(int)
    manifest["shards"] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shards_module, "ROW_GROUP_SIZE", row_group_size)
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            part = JetRows(
                columns={c: v[lo:hi] for c, v in columns.items()},
                features=rows.features[offsets[lo] : offsets[hi]],
                counts=rows.counts[lo:hi],
            )
            path = f"shards/mixed/part{i}.parquet"
            write_shard(out / path, part)
            manifest["shards"].append({"path": path, "dataset": "mixed", "jets": int(hi - lo)})
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def reference(skim_dir) -> Reference:
    return Reference(skim_dir)


@pytest.fixture(scope="module")
def mixed_dir(skim_dir, tmp_path_factory) -> Path:
    return rewrite_skim(skim_dir, tmp_path_factory.mktemp("mixed"), n_shards=3, row_group_size=16)


@pytest.fixture(scope="module")
def mixed_reference(mixed_dir) -> Reference:
    return Reference(mixed_dir)


@pytest.fixture(scope="module")
def mixed_index(mixed_dir) -> JetIndex:
    return JetIndex.from_skim(mixed_dir)


def batch_keys(dataset: JetDataset, batch: JetBatch) -> list[tuple]:
    ids = dataset.subset.index.ids(batch.jet_id.numpy())
    return [tuple(int(v) for v in row) for row in ids]


def epoch_keys(dataset: JetDataset, loader=None) -> list[list[tuple]]:
    """Jet identities of every batch of one epoch."""
    return [batch_keys(dataset, b) for b in (loader if loader is not None else dataset)]


# ---------------------------------------------------------------- split


def test_splitmix64_matches_reference_values():
    # Reference outputs of splitmix64 (Vigna) seeded with 0: successive states k * golden ratio.
    golden = np.uint64(0x9E3779B97F4A7C15)
    states = np.arange(3, dtype=np.uint64) * golden
    assert splitmix64(states).tolist() == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]


def test_split_is_deterministic_and_follows_fractions():
    n = 200_000
    run = np.full(n, 1, dtype=np.uint32)
    lumi = np.repeat(np.arange(n // 100, dtype=np.uint32), 100)
    event = np.arange(n, dtype=np.uint64) * 7
    jet = (np.arange(n) % 2).astype(np.int32)
    h = jet_hash(run, lumi, event, jet)
    assert h.dtype == np.uint64
    assert len(np.unique(h)) == n
    np.testing.assert_array_equal(h, jet_hash(run, lumi, event, jet))
    codes = assign_splits(h)
    np.testing.assert_allclose(np.bincount(codes) / n, [0.8, 0.1, 0.1], atol=0.005)
    codes = assign_splits(h, {"train": 0.5, "val": 0.0, "test": 0.5})
    np.testing.assert_allclose(np.bincount(codes, minlength=3) / n, [0.5, 0.0, 0.5], atol=0.005)
    # Changing any one part of the identity moves the hash.
    assert not np.any(jet_hash(run, lumi, event, jet + 1) == h)
    assert not np.any(jet_hash(run + 1, lumi, event, jet) == h)
    # One jet's split does not depend on which other jets are hashed with it.
    np.testing.assert_array_equal(assign_splits(h[::7]), assign_splits(h)[::7])


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.8, 0.1), "3 numbers"),
        ((0.8, 0.3, 0.1), "sum to 1"),
        ((1.1, -0.1, 0.0), ">= 0"),
        ({"train": 0.9, "valid": 0.1, "test": 0.0}, "keys"),
    ],
)
def test_bad_split_fractions_are_refused(fractions, message):
    with pytest.raises(HepmpmError, match=message):
        check_fractions(fractions)


# ---------------------------------------------------------------- index


def test_index_matches_shards_and_splits_partition_it(skim_dir, reference):
    index = JetIndex.from_skim(skim_dir)
    assert len(index) == len(reference.keys) == N_CLASSES * JETS_PER_CLASS
    assert [tuple(int(v) for v in k) for k in index.ids()] == reference.keys
    for name in ("label", "n_particles", "jet_pt", "jet_mass"):
        np.testing.assert_array_equal(index.columns[name], reference.rows.columns[name])
    assert index.domains == ("sim",)
    assert np.bincount(index.labels).tolist() == [JETS_PER_CLASS] * N_CLASSES

    parts = {s: index.select(s).positions for s in ("train", "val", "test")}
    together = np.concatenate(list(parts.values()))
    assert len(together) == len(np.unique(together)) == len(index)  # disjoint, complete
    for s, code in (("train", 0), ("val", 1), ("test", 2)):
        np.testing.assert_array_equal(parts[s], np.flatnonzero(reference.split == code))
    fractions = np.array([len(p) for p in parts.values()]) / len(index)
    np.testing.assert_allclose(fractions, [0.8, 0.1, 0.1], atol=0.05)
    assert len(index.select(None)) == len(index)

    other = JetIndex.from_skim(skim_dir, fractions=(0.5, 0.25, 0.25))
    assert abs(len(other.select("train")) / len(index) - 0.5) < 0.06
    # A jet in val at 0.8/0.1/0.1 has u in [0.8, 0.9): train cannot hold it at 0.5/0.25/0.25.
    assert not set(parts["val"]) & set(other.select("train").positions)


def test_index_refuses_inconsistent_manifest(skim_dir, tmp_path):
    manifest = json.loads((skim_dir / "manifest.json").read_text())
    n = manifest["shards"][0]["jets"]
    manifest["shards"] = [dict(manifest["shards"][0], jets=n + 1)]
    shard = skim_dir / manifest["shards"][0]["path"]
    (tmp_path / manifest["shards"][0]["path"]).parent.mkdir(parents=True)
    (tmp_path / manifest["shards"][0]["path"]).symlink_to(shard)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        HepmpmError, match=rf"\.parquet: {n} jets, but .*manifest.json lists {n + 1}"
    ):
        JetIndex.from_skim(tmp_path)


# ---------------------------------------------------------------- batches


def check_batch(batch: JetBatch, keys: list[tuple], ref: Reference, pad_to: int | None) -> None:
    n_features = ref.rows.features.shape[1]
    size, width = batch.mask.shape
    assert batch.features.shape == (size, width, n_features)
    assert batch.features.dtype == torch.float32 and batch.mask.dtype == torch.bool
    assert batch.labels.dtype == torch.int64 and batch.labels.shape == (size,)
    counts = np.array([len(ref.particles(k)) for k in keys])
    if pad_to is None:
        assert width == counts.max()
    else:
        assert width == pad_to
    kept = np.minimum(counts, width)
    expected_mask = np.arange(width)[None, :] < kept[:, None]
    np.testing.assert_array_equal(batch.mask.numpy(), expected_mask)
    features = batch.features.numpy()
    assert not features[~expected_mask].any()  # padding is exactly 0
    for i, key in enumerate(keys):
        np.testing.assert_array_equal(features[i, : kept[i]], ref.particles(key)[: kept[i]])
    assert batch.labels.tolist() == [ref.column(k, "label") for k in keys]
    np.testing.assert_array_equal(batch.jet_pt.numpy(), [ref.column(k, "jet_pt") for k in keys])


def test_batches_hold_the_shards_particles(skim_dir, reference):
    dataset = JetDataset(skim_dir, "train", batch_size=100)
    batches = list(dataset)
    assert len(batches) == len(dataset) == 4  # 383 jets
    assert [len(b.labels) for b in batches] == [100, 100, 100, 83]
    keys = []
    for batch in batches:
        keys += batch_keys(dataset, batch)
        check_batch(batch, batch_keys(dataset, batch), reference, pad_to=None)
    assert keys == reference.keys_where(reference.split == 0)  # no shuffle: shard order


def test_pad_to_keeps_the_hardest_particles(skim_dir, reference):
    dataset = JetDataset(skim_dir, None, batch_size=128, pad_to=24)
    assert reference.rows.counts.max() > 24 > reference.rows.counts.min()
    for batch in dataset:
        check_batch(batch, batch_keys(dataset, batch), reference, pad_to=24)
        log_pt = batch.features[..., 0]  # part_pt_log: sorted by pT, hardest first
        assert torch.all((log_pt[:, 1:] <= log_pt[:, :-1]) | ~batch.mask[:, 1:])


def test_pad_particles_by_hand():
    flat = np.arange(12, dtype=np.float32).reshape(6, 2)
    features, mask = pad_particles(flat, np.array([4, 0, 6]), np.array([2, 3, 0]))
    assert mask.tolist() == [[True, True, False], [True, True, True], [False, False, False]]
    assert features.tolist() == [
        [[8, 9], [10, 11], [0, 0]],
        [[0, 1], [2, 3], [4, 5]],
        [[0, 0], [0, 0], [0, 0]],
    ]
    features, mask = pad_particles(flat, np.array([0]), np.array([6]), pad_to=2)
    assert features.tolist() == [[[0, 1], [2, 3]]] and mask.all()


# ---------------------------------------------------------------- sharding and shuffling


@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_jet_once_per_epoch(mixed_dir, mixed_reference, mixed_index, num_workers):
    dataset = JetDataset(
        mixed_index, "train", batch_size=32, shuffle=True, shuffle_buffer=50, seed=3
    )
    assert len(mixed_index.row_groups) == 30 and len(mixed_index.shard_paths) == 3
    loader = make_dataloader(dataset, num_workers=num_workers)
    expected = Counter(mixed_reference.keys_where(mixed_reference.split == 0))
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(dataset) == -(-len(expected) // 32)
        assert sorted(len(b.labels) for b in batches)[1:] == [32] * (len(batches) - 1)
        keys = [k for b in batches for k in batch_keys(dataset, b)]
        assert Counter(keys) == expected
        for batch in batches[:2]:
            check_batch(batch, batch_keys(dataset, batch), mixed_reference, pad_to=None)


def test_batches_do_not_depend_on_worker_count(mixed_index):
    def batches(num_workers, epoch):
        dataset = JetDataset(mixed_index, None, batch_size=20, shuffle=True, shuffle_buffer=70)
        dataset.set_epoch(epoch)
        loader = make_dataloader(dataset, num_workers=num_workers)
        return {frozenset(b.jet_id.tolist()) for b in loader}

    for epoch in (0, 2):
        assert batches(0, epoch) == batches(2, epoch)
    assert batches(0, 0) != batches(0, 2)


def test_persistent_workers_follow_set_epoch(mixed_index):
    dataset = JetDataset(mixed_index, "train", batch_size=16, shuffle=True, shuffle_buffer=40)
    loader = make_dataloader(dataset, num_workers=2)
    assert loader.persistent_workers and loader.batch_size is None
    seen = []
    for epoch in (0, 1, 0):
        dataset.set_epoch(epoch)
        seen.append(sorted(tuple(b.jet_id.tolist()) for b in loader))
    assert seen[0] == seen[2] and seen[0] != seen[1]


@pytest.mark.parametrize(("world_size", "num_workers"), [(2, 0), (3, 2)])
def test_ranks_share_the_jets(mixed_index, mixed_reference, world_size, num_workers):
    expected = Counter(mixed_reference.keys_where(mixed_reference.split == 0))
    keys, sizes = Counter(), []
    for rank in range(world_size):
        dataset = JetDataset(
            mixed_index, "train", batch_size=24, shuffle=True, shuffle_buffer=64, seed=5,
            rank=rank, world_size=world_size,
        )  # fmt: skip
        dataset.set_epoch(1)
        batches = list(make_dataloader(dataset, num_workers=num_workers))
        assert len(batches) == len(dataset)
        rank_keys = [k for b in batches for k in batch_keys(dataset, b)]
        sizes.append(len(rank_keys))
        keys.update(rank_keys)
    assert keys == expected
    assert max(sizes) - min(sizes) <= 1


def test_rank_comes_from_torch_distributed_also_in_workers(mixed_index, monkeypatch):
    # DataLoader workers are not in the process group: only the main process sees rank 1 of 2.
    main = os.getpid()
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: os.getpid() == main)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    dataset = JetDataset(mixed_index, "train", batch_size=16, shuffle=True)
    explicit = JetDataset(mixed_index, "train", batch_size=16, shuffle=True, rank=1, world_size=2)
    assert len(dataset) == len(explicit) < len(mixed_index.select("train")) / 16
    got = {frozenset(b.jet_id.tolist()) for b in make_dataloader(dataset, num_workers=2)}
    assert got == {frozenset(b.jet_id.tolist()) for b in explicit}


def test_drop_last_gives_every_rank_the_same_full_batches(mixed_index):
    n = len(mixed_index.select("train"))
    seen, counts = Counter(), []
    for rank in range(2):
        dataset = JetDataset(
            mixed_index, "train", batch_size=50, shuffle=True, drop_last=True,
            rank=rank, world_size=2,
        )  # fmt: skip
        batches = list(dataset)
        assert len(batches) == len(dataset) == n // 2 // 50
        assert all(len(b.labels) == 50 for b in batches)
        counts.append(len(batches))
        seen.update(j for b in batches for j in b.jet_id.tolist())
    assert counts[0] == counts[1] and max(seen.values()) == 1
    assert n - 2 * 50 < sum(seen.values()) <= n


def test_shuffle_is_deterministic_per_seed_and_epoch(mixed_index):
    def order(seed, epoch, shuffle=True):
        dataset = JetDataset(
            mixed_index, "train", batch_size=40, shuffle=shuffle, shuffle_buffer=100, seed=seed
        )
        dataset.set_epoch(epoch)
        return [j for b in dataset for j in b.jet_id.tolist()]

    first = order(1, 0)
    assert first == order(1, 0)
    dataset = JetDataset(mixed_index, "train", shuffle=True, shuffle_buffer=100, seed=1)
    assert dataset.subset.positions[dataset.epoch_order(0)].tolist() == first
    assert first != order(1, 1) and first != order(2, 0)
    assert sorted(first) == sorted(order(1, 1)) == order(1, 0, shuffle=False)
    assert order(1, 0, shuffle=False) == order(1, 5, shuffle=False)
    # Shuffled well beyond one row group of 16 jets: early batches mix many row groups.
    groups = mixed_index.row_group[first[:40]]
    assert len(np.unique(groups)) >= 4


def test_cached_and_pickled_datasets_yield_the_same(mixed_index):
    kwargs = {"batch_size": 30, "shuffle": True, "shuffle_buffer": 60, "labels": [2, 5, 7]}
    plain = JetDataset(mixed_index, "train", **kwargs)
    cached = JetDataset(mixed_index, "train", cache=True, **kwargs)
    copied = pickle.loads(pickle.dumps(plain))
    for epoch in (0, 1):
        for dataset in (plain, cached, copied):
            dataset.set_epoch(epoch)
        reference = [(b.jet_id, b.features) for b in plain]
        for other in (list(cached), list(cached), list(copied)):
            assert len(other) == len(reference)
            for (ids, features), batch in zip(reference, other, strict=True):
                assert torch.equal(ids, batch.jet_id) and torch.equal(features, batch.features)


def test_cache_reads_each_row_group_once_over_epochs(mixed_index, monkeypatch):
    from hepmpm.data import loader

    reads = []
    original = loader._GroupReader._read

    def counted(self, group):
        reads.append(group)
        return original(self, group)

    monkeypatch.setattr(loader._GroupReader, "_read", counted)
    cached = JetDataset(mixed_index, "train", batch_size=30, shuffle=True, cache=True)
    first = [b.jet_id for b in cached]
    n_groups = len(reads)
    assert n_groups == len(set(reads)) > 0
    cached.set_epoch(1)
    second = [b.jet_id for b in cached]
    assert len(reads) == n_groups  # the second epoch came from memory
    assert sorted(torch.cat(first).tolist()) == sorted(torch.cat(second).tolist())
    copied = pickle.loads(pickle.dumps(cached))  # the reader (open files) is not pickled
    assert copied._cache_reader is None


# ---------------------------------------------------------------- selections


def test_label_and_domain_filters(mixed_index, mixed_reference):
    ref = mixed_reference
    labels = ref.rows.columns["label"]
    domains = ref.rows.columns["domain"]
    dataset = JetDataset(mixed_index, "train", batch_size=1000, labels=[1, 3])
    (batch,) = list(dataset)
    assert sorted(batch_keys(dataset, batch)) == sorted(
        ref.keys_where((ref.split == 0) & np.isin(labels, [1, 3]))
    )
    assert set(batch.labels.tolist()) == {1, 3}

    data = JetDataset(mixed_index, "train", batch_size=1000, domains=["data"])
    (batch,) = list(data)
    assert sorted(batch_keys(data, batch)) == sorted(
        ref.keys_where((ref.split == 0) & (domains == "data"))
    )
    assert set(batch.labels.tolist()) == {-1}
    assert set(batch.domain.tolist()) == {data.domains.index("data")}
    assert sorted(mixed_index.domains) == ["data", "sim"]

    both = mixed_index.select("train", labels=[4], domains=["sim", "data"])
    assert set(mixed_index.labels[both.positions]) == {4}
    assert len(both) == np.sum((ref.split == 0) & (labels == 4))

    with pytest.raises(
        HepmpmError, match=r"label\(s\) \[42\] not in skim .*labels there: \[-1, 0,"
    ):
        mixed_index.select("train", labels=[0, 42])
    with pytest.raises(HepmpmError, match=r"domain\(s\) \['mc'\] not in skim .*'data', 'sim'"):
        mixed_index.select("train", domains=["mc"])
    with pytest.raises(HepmpmError, match="unknown split 'training'"):
        mixed_index.select("training")


def test_limit_is_exact_deterministic_and_nested(skim_dir):
    index = JetIndex.from_skim(skim_dir)
    a = index.select("train", limit=100, seed=1).positions
    assert len(a) == 100 and len(np.unique(a)) == 100
    assert np.all(index.split_code[a] == 0)
    np.testing.assert_array_equal(a, index.select("train", limit=100, seed=1).positions)
    assert len(np.intersect1d(a, index.select("train", limit=100, seed=2).positions)) < 60
    assert set(index.select("train", limit=40, seed=1).positions) <= set(a)
    dataset = JetDataset(index, "train", batch_size=64, limit=100, seed=1)
    assert dataset.n_jets == 100 and len(dataset) == 2
    assert sorted(j for b in dataset for j in b.jet_id.tolist()) == a.tolist()

    n_train = len(index.select("train"))
    with pytest.raises(
        HepmpmError, match=rf"asked for 1000 jets, but split 'train' has only {n_train}"
    ):
        index.select("train", limit=1000)
    with pytest.raises(HepmpmError, match="positive whole number"):
        index.select("train", limit=0)


def test_balanced_limit(skim_dir, mixed_index):
    index = JetIndex.from_skim(skim_dir)
    chosen = index.select("train", limit=53, balanced=True, labels=[0, 2, 4, 6, 8], seed=4)
    assert chosen.class_counts() == {0: 11, 2: 11, 4: 11, 6: 10, 8: 10}
    everything = index.select("train", limit=200, balanced=True)
    assert everything.class_counts() == {c: 20 for c in range(N_CLASSES)}
    even = index.select("train", balanced=True)  # no limit: every class cut to the smallest
    per_class = np.bincount(index.labels[index.select("train").positions])
    assert even.class_counts() == {c: int(per_class.min()) for c in range(N_CLASSES)}

    with pytest.raises(HepmpmError) as err:
        index.select("val", limit=100, balanced=True)
    message = str(err.value)
    per_class = np.bincount(index.labels[index.split_code == 1], minlength=N_CLASSES)
    assert "asked for 100 jets balanced over 10 classes (10 per class)" in message
    assert f"class 0: {per_class[0]}, class 1: {per_class[1]}" in message
    # Unlabelled (data) jets cannot be balanced over classes.
    with pytest.raises(HepmpmError, match="balanced=True needs labelled jets"):
        mixed_index.select("train", limit=20, balanced=True)
    sim = mixed_index.select("train", limit=20, balanced=True, domains=["sim"], labels=[0, 1])
    assert sim.class_counts() == {0: 10, 1: 10}


def test_bad_options_are_refused(skim_dir):
    with pytest.raises(HepmpmError, match="batch_size must be a whole number >= 1"):
        JetDataset(skim_dir, batch_size=0)
    with pytest.raises(HepmpmError, match="rank and world_size"):
        JetDataset(skim_dir, rank=1)
    with pytest.raises(HepmpmError, match=r"rank must be in \[0, 2\)"):
        JetDataset(skim_dir, rank=2, world_size=2)
    with pytest.raises(HepmpmError, match="only 20 jets: no batch would be yielded"):
        JetDataset(skim_dir, batch_size=32, limit=20, drop_last=True)
    with pytest.raises(HepmpmError, match=r"no manifest\.json"):
        JetDataset(skim_dir / "shards")
