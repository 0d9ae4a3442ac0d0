"""What every hepmpm training run (pre-training, fine-tuning, the VQ-VAE tokenizer) shares: the
trainer settings and the Lightning ``Trainer`` made from them, the one rule by which a run claims
its folder and resumes (:func:`claim_run_folder`), the folder's records and loggers, and the
Lightning warnings that say nothing about a run."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from pydantic import BaseModel, Field

from hepmpm.atomic import atomic_path, write_json_atomic
from hepmpm.config import StrictModel
from hepmpm.errors import HepmpmError
from hepmpm.folder_lock import folder_is_empty, holding_folder
from hepmpm.training.devices import resolve_precision, torch_threads
from hepmpm.training.progress import progress_callbacks
from hepmpm.weights import read_torch_file


class TrainerConfig(StrictModel):
    """Steps, validation cadence, devices, precision and threads of a training run."""

    max_steps: int = Field(2000, ge=1)
    schedule_steps: int | None = Field(
        None, ge=1, description="steps the LR schedule spans (None: max_steps)"
    )
    val_every_steps: int = Field(200, ge=1)
    val_batches: int = Field(20, ge=1, description="validation batches per check")
    seed: int = Field(0, ge=0)
    accelerator: str = Field("auto", description="auto, cpu, gpu")
    devices: int | str = Field(1, description="number of devices, or 'auto'")
    num_nodes: int = Field(1, ge=1)
    strategy: str = Field("auto", description="auto (DDP when devices > 1), ddp, ...")
    precision: str = Field("auto", description="auto: bf16-mixed on CUDA, else 32-true")
    log_every_steps: int = Field(10, ge=1)
    cpu_threads: int | None = Field(
        None, ge=1, description="torch CPU threads during the run (None: torch's default)"
    )


def step_seed(seed: int, step: int, rank: int) -> int:
    """The random seed of training step ``step`` on ``rank``: what a step draws (masks, dropout)
    then depends on the step alone, so a resumed run draws what the uninterrupted one drew."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0]
    return int(state) & 0x7FFF_FFFF_FFFF_FFFF


def last_checkpoint(out: Path) -> Path:
    """Where a run in ``out`` keeps the checkpoint ``--resume`` continues from."""
    return Path(out) / "checkpoints" / "last.ckpt"


RUN_RECORD = "run.json"  #: what a run was made with: compared on ``--resume``


def holding_run_folder(out: Path, what: str) -> contextlib.AbstractContextManager[Path]:
    """Hold ``out`` for a training run (:func:`~hepmpm.folder_lock.holding_folder`); rank 0
    only: the other processes of a distributed run write where rank 0 claimed."""
    return holding_folder(out, what, enabled=rank_zero_only.rank == 0)


def claim_run_folder(
    out: Path, what: str, record: dict[str, Any], compared: Sequence[str], resume: bool
) -> Path | None:
    """The one rule of every training command's output folder; returns the checkpoint to
    resume from (``None``: the run starts afresh).

    A new or empty folder starts afresh. One that holds anything is refused without ``resume``
    (``what`` names the run in the message). With ``resume`` its :data:`RUN_RECORD` must agree
    with ``record`` on every key of ``compared``: the first difference is the error, by dotted
    key; a folder with a checkpoint but no record is refused; one without a checkpoint (a run
    stopped before its first) starts afresh in place. Only rank 0 claims: the other processes
    of a DDP run start after it has written into the folder, and follow its choice."""
    out = Path(out)
    if rank_zero_only.rank != 0:
        return last_checkpoint(out) if resume and last_checkpoint(out).is_file() else None
    if out.exists() and not out.is_dir():
        raise HepmpmError(f"{out} is a file, not a folder; choose another --out")
    if folder_is_empty(out):
        return None
    # Held by this run (holding_run_folder): temporary files are a killed run's half-writes.
    for stale in out.rglob(".*.tmp"):
        stale.unlink()
    if not resume:
        raise HepmpmError(
            f"{out} already holds a {what} run; add --resume to continue it, "
            "or choose another --out"
        )
    last = last_checkpoint(out)
    saved = out / RUN_RECORD
    if not saved.is_file():
        if last.is_file():
            raise HepmpmError(
                f"cannot resume {last}: {saved} (what the run was made with) is missing"
            )
        return None
    previous = json.loads(saved.read_text())
    for key in compared:
        for name, before, now in config_differences(key, previous.get(key), record.get(key)):
            raise HepmpmError(
                f"cannot resume in {out}: it was run with {name} = {before!r}, "
                f"this run has {name} = {now!r}"
            )
    if not last.is_file():
        return None
    # Read here, before a trainer makes logs/version_N for a run that cannot start.
    checkpoint = read_torch_file(last, "checkpoint")
    if not isinstance(checkpoint, dict) or not {"state_dict", "loops"} <= checkpoint.keys():
        raise HepmpmError(f"cannot resume {last}: not a Lightning checkpoint of a hepmpm run")
    return last


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary sibling and renamed into place: a full disk or a kill
    never leaves a truncated ``best.ckpt``/``last.ckpt``; a failed write is a one-line error
    naming the file."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        buffer = io.BytesIO()  # serialised in memory: a failed write is then the OS's error
        torch.save(checkpoint, buffer)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(buffer.getbuffer())
        except OSError as err:
            raise HepmpmError(f"cannot write the checkpoint {path}: {err.strerror}") from None


class LastCheckpoint(L.Callback):
    """``last.ckpt`` (the full state: what ``--resume`` continues from) at every validation and
    when training ends. Lightning's own ``save_last`` writes it only when the best checkpoint
    changes, so a run stopped after a worse validation resumed from an older step."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run that stops between two validations resumes from where it stopped.
        trainer.save_checkpoint(self.path, weights_only=False)


def make_trainer(
    config: TrainerConfig,
    out: Path,
    grad_clip: float | None,
    show_progress: bool,
    log_every_steps: int | None = None,
    callbacks: list[L.Callback] | None = None,
) -> L.Trainer:
    """A step-based Lightning ``Trainer`` writing checkpoints (last, best by ``val/loss``) and
    logs into ``out``, with ``callbacks`` besides; a resumed run logs to the next
    ``version_N``."""
    return L.Trainer(
        max_steps=config.max_steps,
        val_check_interval=config.val_every_steps,
        check_val_every_n_epoch=None,
        limit_val_batches=config.val_batches,
        num_sanity_val_steps=0,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=resolve_precision(config.accelerator, config.precision),
        gradient_clip_val=grad_clip,
        log_every_n_steps=log_every_steps or config.log_every_steps,
        enable_progress_bar=show_progress,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
        logger=make_loggers(out),
        callbacks=[
            ModelCheckpoint(
                dirpath=last_checkpoint(out).parent,
                filename="best",
                monitor="val/loss",
                # One run per folder (held): best.ckpt and last.ckpt are always this run's.
                enable_version_counter=False,
            ),
            LearningRateMonitor(logging_interval="step"),
            LastCheckpoint(last_checkpoint(out)),
            *progress_callbacks(show_progress),  # steps of max_steps, not epochs
            *(callbacks or []),
        ],
    )


def start_run_folder(out: Path, record: dict[str, Any], config: BaseModel) -> None:
    """:data:`RUN_RECORD` (what must match on ``--resume``) and ``config.yaml`` (the resolved
    config)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / RUN_RECORD, record)
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def fit(
    trainer: L.Trainer,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: Path | None,
    cpu_threads: int | None,
    validate_first: bool = False,
) -> dict[str, float] | None:
    """``trainer.fit`` (resuming from ``ckpt_path``, read without pickle) with ``cpu_threads``
    torch threads and without the warnings of :data:`EXPECTED_WARNINGS`. ``validate_first``:
    validate the starting weights before the first step (logged at step 0) and return those
    metrics (a continued pre-training: where it started, so that a reader sees it move)."""
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        with torch_threads(cpu_threads):
            start = None
            if validate_first:
                found = trainer.validate(module, datamodule=datamodule, verbose=False)
                start = {k: float(v) for k, v in found[0].items()}
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    return start


def config_differences(name: str, before: Any, now: Any) -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, old, new) of each leaf where two config records differ."""
    if isinstance(before, dict) and isinstance(now, dict):
        for key in sorted(set(before) | set(now)):
            yield from config_differences(f"{name}.{key}", before.get(key), now.get(key))
    elif before != now:
        yield name, before, now


def make_loggers(out: Path) -> list[Logger]:
    """CSV logs always, TensorBoard's too when it is installed (each run: a new version_N)."""
    loggers: list[Logger] = [CSVLogger(out, name="logs")]
    if any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
        loggers.append(TensorBoardLogger(out, name="tensorboard", default_hp_metric=False))
    return loggers


# Lightning warnings that say nothing about a hepmpm run: the loader is an IterableDataset
# with a length, the frozen tokenizer is in eval mode on purpose, few batches per epoch.
EXPECTED_WARNINGS = (
    r".*does not have many workers.*",
    r".*IterableDataset.*__len__.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*module\(s\) in eval mode.*",
    r".*smaller than the logging interval.*",
    r".*sync_dist=True.*",  # validation sums are reduced over ranks before logging
    r"Checkpoint directory .* exists and is not empty",  # --resume (otherwise refused)
)
