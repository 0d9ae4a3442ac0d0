"""Jet data: parquet shards of a skim folder, its index and splits, and a streaming torch dataset.

- :mod:`hepmpm.data.shards`, :mod:`hepmpm.data.manifest`: the skim folder's files.
- :mod:`hepmpm.data.split`: deterministic train/val/test split by a hash of each jet's identity.
- :mod:`hepmpm.data.index`: :class:`JetIndex` (per-jet columns of all shards) and
  :meth:`JetIndex.select` (split, labels, domains, exact and balanced limits).
- :mod:`hepmpm.data.loader`: :class:`JetDataset` yielding padded :class:`JetBatch` es, sharded
  over DataLoader workers and torch.distributed ranks; :func:`make_dataloader`.

The names below import on first use: a coffea worker that only writes shards
(:mod:`hepmpm.data.shards`) does not pay for importing torch.
"""

from __future__ import annotations

from hepmpm.lazy import lazy_attributes

_WHERE = {
    "JetIndex": "index",
    "JetSubset": "index",
    "JetBatch": "loader",
    "JetDataset": "loader",
    "make_dataloader": "loader",
    "pad_particles": "loader",
    "SkimManifest": "manifest",
    "load_manifest": "manifest",
    "DEFAULT_FRACTIONS": "split",
    "SPLITS": "split",
    "assign_splits": "split",
    "jet_hash": "split",
}

__all__ = sorted(_WHERE)

__getattr__ = lazy_attributes("hepmpm.data", _WHERE)
