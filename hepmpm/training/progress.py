"""The training progress bar: optimizer steps out of ``max_steps``, one bar for the whole run.

hepmpm trains by steps (``max_steps``, ``max_epochs=-1``), and an epoch is only a pass over a
streamed corpus. Lightning's own bars count epochs: its Rich bar (the default whenever ``rich``
is installed, which coffea requires) prints ``Epoch 199/-2`` from ``max_epochs - 1``, and its
tqdm bar starts again at every epoch. :class:`StepProgressBar` shows what a run is made of:
``Training: 40%|████      | 1200/3000 [..., train/loss=...]``, continuing from the checkpoint's
step on ``--resume``.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

TRAIN_DESCRIPTION = "Training"


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting the run's optimizer steps (``trainer.global_step``) out
    of ``trainer.max_steps`` instead of the batches of each epoch."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps)
        bar.set_description(TRAIN_DESCRIPTION)
        self._show_step(trainer, pl_module)  # a resumed run starts at its checkpoint's step

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        """Nothing: an epoch boundary neither resets nor renames the bar."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any, **__: Any
    ) -> None:
        if self._should_update(trainer.global_step, self.train_progress_bar.total):
            self._show_step(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The parent would close the bar here when ``leave`` is set: one bar spans all epochs.
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def _show_step(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bar = self.train_progress_bar
        bar.n = trainer.global_step
        bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar


def progress_callbacks(show_progress: bool) -> list[L.Callback]:
    """The progress bar of a training run: :class:`StepProgressBar`, or none (a ``Trainer``
    with ``enable_progress_bar=False`` refuses a progress bar among its callbacks)."""
    return [StepProgressBar()] if show_progress else []
