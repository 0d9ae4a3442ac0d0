"""``JetDataModule``: train/val/test :class:`~hepmpm.data.loader.JetDataset` s of a skim folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
from pydantic import Field

from hepmpm.config import StrictModel
from hepmpm.data.index import JetIndex
from hepmpm.data.loader import JetBatch, JetDataset, make_dataloader
from hepmpm.data.manifest import load_manifest
from hepmpm.errors import HepmpmError


class DataConfig(StrictModel):
    """How jets are read: batch size, particle slots, workers, which domains."""

    batch_size: int = Field(128, ge=1)
    pad_to: int | None = Field(None, ge=1, description="fixed particle slots (None: longest jet)")
    num_workers: int = Field(0, ge=0)
    shuffle_buffer: int = Field(8192, ge=1)
    domains: list[str] | None = Field(None, description="use only these domains (e.g. [data])")
    cache: bool = Field(True, description="keep read jets in memory (small skims, many epochs)")
    bucket: bool = Field(
        True,
        description="training batches of jets of similar multiplicity, drawn from each shuffle "
        "block (about half the padding of random batches on real jets)",
    )


class ResumableBatches:
    """Training batches of a shuffled :class:`JetDataset`, epoch after epoch, that resume
    mid-epoch.

    ``steps_done()`` says how many batches were trained so far (the trainer's global step).
    Each ``iter`` starts where that count points: epoch ``steps // len(self)`` (its shuffle
    order), skipping the batches of that epoch already trained. Lightning saves
    :meth:`state_dict` in its checkpoints (the loader is "stateful" for it), so it does not warn
    about resuming mid-epoch. Skipped batches are read, then dropped: resuming costs reading up
    to one epoch.
    """

    def __init__(
        self, dataset: JetDataset, num_workers: int, steps_done: Callable[[], int]
    ) -> None:
        if not dataset.drop_last:
            raise ValueError("ResumableBatches needs drop_last=True: equal epochs on every rank")
        self.dataset = dataset
        self.loader = make_dataloader(dataset, num_workers=num_workers)
        self.steps_done = steps_done

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[JetBatch]:
        epoch, skip = divmod(self.steps_done(), len(self))
        self.dataset.set_epoch(epoch)
        batches = iter(self.loader)
        for _ in range(skip):
            next(batches)
        return batches

    def state_dict(self) -> dict[str, int]:
        return {"steps_done": int(self.steps_done()), "batches_per_epoch": len(self)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("batches_per_epoch") != len(self):
            raise HepmpmError(
                f"cannot resume exactly: the checkpoint's epochs had "
                f"{state.get('batches_per_epoch')} batches, this run's have {len(self)} "
                "(other data, batch size or number of devices)"
            )


class JetDataModule(L.LightningDataModule):
    """Shuffled training batches (a new order every epoch) that resume mid-epoch
    (:class:`ResumableBatches`), and fixed validation batches."""

    def __init__(
        self, skim: Path, config: DataConfig, seed: int = 0, labels: list[int] | None = None
    ):
        super().__init__()
        self.skim = Path(skim)
        self.config = config
        self.seed = seed
        self.labels = labels
        self.manifest = load_manifest(self.skim)
        self.feature_set = self.manifest.feature_set
        self.index = JetIndex.from_skim(self.manifest)

    def _dataset(
        self, split: str, shuffle: bool, training: bool = True, limit: int | None = None
    ) -> JetDataset:
        c = self.config
        return JetDataset(
            self.index,
            split,
            c.batch_size,
            pad_to=c.pad_to,
            labels=self.labels,
            domains=c.domains,
            shuffle=shuffle,
            shuffle_buffer=c.shuffle_buffer,
            seed=self.seed,
            drop_last=shuffle and training,
            cache=c.cache,
            bucket=c.bucket and training,
            limit=limit,
        )

    def setup(self, stage: str | None = None) -> None:
        self.train_set = self._dataset("train", shuffle=True)
        # Validation reads a fixed shuffle (the epoch never advances): its first val_batches are
        # then a sample of every shard, not the jets of the first shards (often one class).
        self.val_set = self._dataset("val", shuffle=True, training=False)

    def set_epoch(self, epoch: int) -> None:
        self.train_set.set_epoch(epoch)

    def train_dataloader(self) -> ResumableBatches:
        return ResumableBatches(
            self.train_set, self.config.num_workers, lambda: self.trainer.global_step
        )

    def val_dataloader(self):  # noqa: ANN201
        return make_dataloader(self.val_set, num_workers=self.config.num_workers)
