"""Jet data: parquet shards of a skim folder, its index and splits, and a streaming torch dataset.

- :mod:`hepmpm.data.shards`, :mod:`hepmpm.data.manifest`: the skim folder's files.
- :mod:`hepmpm.data.split`: deterministic train/val/test split by a hash of each jet's identity.
- :mod:`hepmpm.data.index`: :class:`JetIndex` (per-jet columns of all shards) and
  :meth:`JetIndex.select` (split, labels, domains, exact and balanced limits).
- :mod:`hepmpm.data.loader`: :class:`JetDataset` yielding padded :class:`JetBatch` es, sharded
  over DataLoader workers and torch.distributed ranks; :func:`make_dataloader`.
"""

from hepmpm.data.index import JetIndex, JetSelection
from hepmpm.data.loader import JetBatch, JetDataset, make_dataloader, pad_particles
from hepmpm.data.manifest import SkimManifest, load_manifest
from hepmpm.data.split import DEFAULT_FRACTIONS, SPLITS, assign_splits, jet_hash

__all__ = [
    "DEFAULT_FRACTIONS",
    "SPLITS",
    "JetBatch",
    "JetDataset",
    "JetIndex",
    "JetSelection",
    "SkimManifest",
    "assign_splits",
    "jet_hash",
    "load_manifest",
    "make_dataloader",
    "pad_particles",
]
