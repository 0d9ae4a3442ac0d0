"""Fit a tokenizer on the training split of a skim folder: ``hepmpm tokenizer``'s library side.

:func:`run_tokenizer` reads the config's ``kind``:

- ``vqvae``: Lightning training (:class:`VQVAELightning`) of a :class:`VQVAETokenizer` on the
  ``train`` split, validated every ``trainer.val_every`` steps on the ``val`` split; AdamW with
  warm-up and cosine decay, seeded, CSV logs, checkpoints of the best (lowest ``val/loss``) and
  last step, progress bar; bf16 autocast on CUDA. The saved tokenizer is the best checkpoint.
- ``kmeans``: ``MiniBatchKMeans`` on up to ``fit.max_particles`` training particles.

Both report their metrics on the ``val`` split (for the VQ-VAE also before training). Everything
is written into a hidden sibling ``.OUT.partial`` of the output folder, which is renamed to ``OUT``
when the tokenizer is complete. An interrupted VQ-VAE run resumes from the partial folder's last
checkpoint when re-run with the same config and skim (from the start of that epoch's data).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from hepmpm.atomic import write_json_atomic
from hepmpm.data.index import JetIndex
from hepmpm.data.loader import JetBatch, JetDataset, make_dataloader
from hepmpm.data.manifest import SkimManifest, load_manifest
from hepmpm.errors import HepmpmError
from hepmpm.tokenizers.base import TokenCounts, Tokenizer
from hepmpm.tokenizers.config import (
    DataConfig,
    KMeansTrainingConfig,
    OptimiserConfig,
    TokenizerRunConfig,
    VQVAETrainingConfig,
)
from hepmpm.tokenizers.kmeans import (
    KMeansTokenizer,
    collect_vectors,
    evaluate_kmeans,
    fit_kmeans,
)
from hepmpm.tokenizers.store import TOKENIZER_FILE, save_tokenizer
from hepmpm.tokenizers.vqvae import VQVAETokenizer
from hepmpm.training.devices import resolve_precision, torch_threads, uses_cuda
from hepmpm.training.runs import last_checkpoint

RUN_FILE = "run.json"
LOSS_NAMES = ("loss", "reconstruction", "id", "commitment")


@dataclass
class TokenizerRun:
    """The outcome of :func:`run_tokenizer`: where it went, the tokenizer, its metrics."""

    out: Path
    tokenizer: Tokenizer
    metrics: dict[str, Any]
    resumed: bool = False
    #: False on the non-zero ranks of a multi-GPU run, which write nothing.
    written: bool = True
    files: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- VQ-VAE metrics


class VQVAEMeter:
    """Particle-weighted mean losses and code counts over many batches."""

    def __init__(self, n_tokens: int, device: torch.device | str = "cpu") -> None:
        # sum of each loss × particles, then the number of particles
        self.sums = torch.zeros(len(LOSS_NAMES) + 1, dtype=torch.float64, device=device)
        self.counts = TokenCounts(n_tokens, device)

    def update(self, losses: dict[str, torch.Tensor], codes: torch.Tensor) -> None:
        n = len(codes)
        values = torch.stack([losses[name].detach().double() for name in LOSS_NAMES])
        self.sums[:-1] += values.to(self.sums.device) * n
        self.sums[-1] += n
        self.counts.update(codes)

    def compute(self, reduce: Any = None) -> dict[str, float]:
        """Mean losses, ``usage``, ``perplexity``, ``used``, ``particles``; ``reduce`` sums a
        tensor over processes (multi-GPU)."""
        sums, counts = self.sums, self.counts
        if reduce is not None:
            sums = reduce(sums.clone())
            counts = TokenCounts(self.counts.n_tokens, sums.device)
            counts.counts = reduce(self.counts.counts.clone())
        n = float(sums[-1])
        metrics: dict[str, float] = {
            name: float(sums[i]) / max(n, 1.0) for i, name in enumerate(LOSS_NAMES)
        }
        return {**metrics, **counts.metrics(), "particles": int(n)}


@torch.no_grad()
def evaluate_vqvae(
    tokenizer: VQVAETokenizer, batches: Any, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Validation metrics of ``tokenizer`` over ``batches`` of :class:`JetBatch` (eval mode)."""
    was_training = tokenizer.training
    tokenizer.eval()
    meter = VQVAEMeter(tokenizer.n_tokens, device)
    try:
        for batch in batches:
            batch = batch.to(device)
            out = tokenizer(batch.features, batch.mask)
            meter.update(tokenizer.losses(out, batch.mask), out.codes)
    finally:
        tokenizer.train(was_training)
    return meter.compute()


# ---------------------------------------------------------------------------- Lightning


def lr_factor(step: int, config: OptimiserConfig, max_steps: int) -> float:
    """Learning rate / peak at ``step``: linear warm-up, then cosine to ``final_lr_fraction``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = min((step - config.warmup_steps) / max(max_steps - config.warmup_steps, 1), 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.final_lr_fraction + (1.0 - config.final_lr_fraction) * cosine


class VQVAELightning(L.LightningModule):
    """Trains a :class:`VQVAETokenizer`; logs ``train/*`` each step and ``val/*`` (losses,
    ``usage``, ``perplexity`` of the codes over the validation pass)."""

    def __init__(
        self, tokenizer: VQVAETokenizer, optimiser: OptimiserConfig, max_steps: int
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.optimiser_config = optimiser
        self.max_steps = max_steps
        self._train_counts: TokenCounts | None = None
        self._val_meter: VQVAEMeter | None = None

    def _sum_over_processes(self, t: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(t, reduce_op="sum")

    def on_train_epoch_start(self) -> None:
        self._train_counts = TokenCounts(self.tokenizer.n_tokens, self.device)

    def training_step(self, batch: JetBatch, batch_idx: int) -> torch.Tensor:
        out = self.tokenizer(batch.features, batch.mask)
        losses = self.tokenizer.losses(out, batch.mask)
        if self._train_counts is None:  # resumed in the middle of an epoch
            self._train_counts = TokenCounts(self.tokenizer.n_tokens, self.device)
        self._train_counts.update(out.codes)
        size = len(batch.features)
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=size)
        for name in LOSS_NAMES[1:]:
            self.log(f"train/{name}", losses[name], batch_size=size)
        return losses["loss"]

    def on_train_epoch_end(self) -> None:
        if self._train_counts is not None:
            counts = self._sum_over_processes(self._train_counts.counts.clone())
            self.log("train/usage", float((counts > 0).float().mean()))
        self._train_counts = None

    def on_validation_epoch_start(self) -> None:
        self._val_meter = VQVAEMeter(self.tokenizer.n_tokens, self.device)

    def validation_step(self, batch: JetBatch, batch_idx: int) -> None:
        out = self.tokenizer(batch.features, batch.mask)
        self._val_meter.update(self.tokenizer.losses(out, batch.mask), out.codes)

    def on_validation_epoch_end(self) -> None:
        metrics = self._val_meter.compute(self._sum_over_processes)
        for name, value in metrics.items():
            if name != "particles":
                self.log(f"val/{name}", value, prog_bar=name in ("loss", "usage"))

    def configure_optimizers(self) -> dict[str, Any]:
        c = self.optimiser_config
        optimiser = torch.optim.AdamW(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: lr_factor(step, c, self.max_steps)
        )
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class _ShuffleEachEpoch(Callback):
    """Gives the training :class:`JetDataset` the epoch number (its shuffle order)."""

    def __init__(self, dataset: JetDataset) -> None:
        self.dataset = dataset

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.dataset.set_epoch(trainer.current_epoch)


def at_most(index: JetIndex, split: str, limit: int | None, key: str) -> int | None:
    """``limit`` as an upper bound: the split's size when it has fewer jets (said in the log),
    since a packaged config's limit is meant for big skims, not as the experiment's number."""
    available = index.split_counts()[split]
    if limit is None or limit <= available:
        return limit
    logging.getLogger(__name__).warning(
        "%s = %d, but split %r of %s has %d jets: using them all",
        key, limit, split, index.directory, available,
    )  # fmt: skip
    return available


def _datasets(
    index: JetIndex, data: DataConfig, batch_size: int, seed: int
) -> tuple[JetDataset, JetDataset]:
    train_jets = at_most(index, "train", data.limit_train_jets, "data.limit_train_jets")
    val_jets = at_most(index, "val", data.limit_val_jets, "data.limit_val_jets")
    train = JetDataset(
        index, "train", batch_size, pad_to=data.pad_to, limit=train_jets,
        shuffle=True, seed=seed, drop_last=True, cache=data.cache,
    )  # fmt: skip
    val = JetDataset(index, "val", batch_size, pad_to=data.pad_to, limit=val_jets, cache=data.cache)
    if train.rank_jets() < batch_size:
        raise HepmpmError(
            f"{index.directory}: the train split has {train.n_jets} jets, fewer than one batch "
            f"(trainer.batch_size={batch_size}); use a smaller batch or a bigger skim"
        )
    if val.n_jets == 0:
        raise HepmpmError(f"{index.directory}: the val split holds no jets; use a bigger skim")
    return train, val


def _train_vqvae(
    config: VQVAETrainingConfig,
    manifest: SkimManifest,
    staging: Path,
    resume: bool,
    show_progress: bool,
) -> tuple[VQVAETokenizer, dict[str, Any], bool]:
    t = config.trainer
    index = JetIndex.from_skim(manifest)
    train, val = _datasets(index, config.data, t.batch_size, t.seed)
    workers = config.data.num_workers
    train_loader = make_dataloader(train, workers)
    val_loader = make_dataloader(val, workers)

    device = "cuda" if uses_cuda(t.accelerator) else "cpu"  # of the evaluations outside Lightning
    L.seed_everything(t.seed, workers=True, verbose=False)
    tokenizer = VQVAETokenizer(manifest.feature_set, config.model)
    run_record = json.loads((staging / RUN_FILE).read_text())
    if "initial" not in run_record:
        # Before training, on a copy: the copy's k-means codebook init must not touch the model.
        untrained = copy.deepcopy(tokenizer).to(device)
        run_record["initial"] = evaluate_vqvae(untrained, val_loader, device)
        del untrained
        write_json_atomic(staging / RUN_FILE, run_record)
    L.seed_everything(t.seed, workers=True, verbose=False)

    module = VQVAELightning(tokenizer, config.optimiser, t.max_steps)
    checkpoints = ModelCheckpoint(
        dirpath=staging / "checkpoints", filename="best", monitor="val/loss", mode="min",
        save_top_k=1, save_last=True, auto_insert_metric_name=False,
    )  # fmt: skip
    trainer = L.Trainer(
        max_steps=t.max_steps,
        max_epochs=-1,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=resolve_precision(t.accelerator, t.precision),
        logger=CSVLogger(staging, name="logs", version=""),
        callbacks=[checkpoints, _ShuffleEachEpoch(train), LearningRateMonitor("step")],
        val_check_interval=t.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=min(50, t.val_every, len(train)),
        gradient_clip_val=config.optimiser.grad_clip or None,
        enable_progress_bar=show_progress,
        enable_model_summary=False,
        default_root_dir=staging,
    )
    last = last_checkpoint(staging)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        trainer.fit(
            module,
            train_loader,
            val_loader,
            ckpt_path=last if resume else None,
            weights_only=True,
        )
    if not trainer.is_global_zero:
        return tokenizer, {}, False

    best = checkpoints.best_model_path
    if best:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    tokenizer.to(device)
    final = evaluate_vqvae(tokenizer, val_loader, device)
    tokenizer.cpu().eval()
    metrics = {
        "initial": run_record["initial"],
        "final": final,
        "steps": trainer.global_step,
        "best_checkpoint": Path(best).name if best else None,
        "best_val_loss": float(checkpoints.best_model_score)
        if checkpoints.best_model_score is not None
        else None,
        "train_jets": train.n_jets,
        "val_jets": val.n_jets,
    }
    return tokenizer, metrics, True


# ---------------------------------------------------------------------------- k-means


def _fit_kmeans(
    config: KMeansTrainingConfig, manifest: SkimManifest, show_progress: bool
) -> tuple[KMeansTokenizer, dict[str, Any]]:
    batch_size = 512  # jets per read; the k-means mini-batch is fit.batch_size particles
    index = JetIndex.from_skim(manifest)
    train_jets = at_most(index, "train", config.data.limit_train_jets, "data.limit_train_jets")
    val_jets = at_most(index, "val", config.data.limit_val_jets, "data.limit_val_jets")
    train = JetDataset(
        index, "train", batch_size, pad_to=config.data.pad_to, limit=train_jets,
        shuffle=True, seed=config.fit.seed,
    )  # fmt: skip
    val = JetDataset(index, "val", batch_size, pad_to=config.data.pad_to, limit=val_jets)
    if val.n_jets == 0:
        raise HepmpmError(f"{index.directory}: the val split holds no jets; use a bigger skim")
    workers = config.data.num_workers
    tokenizer = KMeansTokenizer(manifest.feature_set, config.model)
    vectors = collect_vectors(
        tokenizer, make_dataloader(train, workers), config.fit.max_particles, show_progress
    )
    fit = fit_kmeans(tokenizer, vectors, config.fit)
    final = evaluate_kmeans(tokenizer, make_dataloader(val, workers))
    metrics = {"fit": fit, "final": final, "train_jets": train.n_jets, "val_jets": val.n_jets}
    return tokenizer.eval(), metrics


# ---------------------------------------------------------------------------- the run


def _run_hash(config: TokenizerRunConfig, manifest: SkimManifest) -> str:
    what = {
        "config": config.model_dump(mode="json"),
        "skim": str(manifest.directory.resolve()),
        "settings_hash": manifest.raw.get("settings_hash"),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _check_out(out: Path) -> None:
    if (out / TOKENIZER_FILE).exists():
        raise HepmpmError(f"{out} already holds a tokenizer; choose another --out or delete it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HepmpmError(f"{out} exists and is not an empty folder; choose another --out")


def staging_path(out: Path) -> Path:
    """The hidden sibling folder a run writes into before it is renamed to ``out``."""
    return out.with_name(f".{out.name}.partial")


def run_tokenizer(
    config: TokenizerRunConfig, data: Path, out: Path, show_progress: bool = True
) -> TokenizerRun:
    """Fit the tokenizer ``config`` describes on the skim folder ``data``; write it to ``out``.

    ``out`` must not exist or be empty. It appears only once complete (``tokenizer.json``,
    ``weights.pt``; for a VQ-VAE also ``logs/metrics.csv`` and ``checkpoints/``).
    """
    out = Path(out)
    manifest = load_manifest(Path(data))
    _check_out(out)
    staging = staging_path(out)
    run_hash = _run_hash(config, manifest)
    resumed = False
    if staging.is_dir():
        try:
            previous = json.loads((staging / RUN_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            previous = {}
        # Same config and skim, and a checkpoint to go on from: resume; else start afresh.
        resumed = previous.get("run_hash") == run_hash and last_checkpoint(staging).is_file()
        if not resumed:
            shutil.rmtree(staging)
    if not resumed:
        staging.mkdir(parents=True)
        write_json_atomic(staging / RUN_FILE, {"run_hash": run_hash})

    if isinstance(config, VQVAETrainingConfig):
        with torch_threads(config.trainer.cpu_threads):
            tokenizer, metrics, is_writer = _train_vqvae(
                config, manifest, staging, resumed, show_progress
            )
        if not is_writer:
            return TokenizerRun(out, tokenizer, metrics, resumed, written=False)
    else:
        try:
            tokenizer, metrics = _fit_kmeans(config, manifest, show_progress)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # nothing to resume in a k-means fit
            raise

    skim = {
        "path": str(manifest.directory.resolve()),
        "settings_hash": manifest.raw.get("settings_hash"),
    }
    extra = {"skim": skim, "metrics": metrics, "training": config.model_dump(mode="json")}
    save_tokenizer(tokenizer, staging, extra=extra)
    (staging / RUN_FILE).unlink()
    if out.exists():
        out.rmdir()  # empty (checked above)
    staging.rename(out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return TokenizerRun(out, tokenizer, metrics, resumed, files=files)


def summary_lines(run: TokenizerRun) -> list[str]:
    """A few lines for the terminal: the metrics that matter and where the files are."""
    t, m = run.tokenizer, run.metrics
    final = m["final"]
    lines = [f"{t.kind} tokenizer, {t.n_tokens} tokens, feature set {t.feature_set.name}"]
    if run.resumed:
        lines.append("  (resumed from the last checkpoint of an interrupted run)")
    if t.kind == "vqvae":
        initial = m["initial"]
        lines.append(
            f"  val reconstruction loss {initial['reconstruction']:.4f} -> "
            f"{final['reconstruction']:.4f} after {m['steps']} steps "
            f"(loss {initial['loss']:.4f} -> {final['loss']:.4f}, "
            f"commitment {final['commitment']:.4f})"
        )
    else:
        lines.append(
            f"  inertia {m['fit']['inertia']:.1f} over {m['fit']['particles']} training particles "
            f"({m['fit']['inertia_per_particle']:.4f} per particle; val "
            f"{final['inertia_per_particle']:.4f})"
        )
    lines.append(
        f"  val codebook usage {final['usage']:.3f} ({final['used']}/{t.n_tokens}), perplexity "
        f"{final['perplexity']:.1f}, over {final['particles']} particles of {m['val_jets']} jets"
    )
    lines.append(
        f"wrote {run.out}/{TOKENIZER_FILE}, weights.pt"
        + (", logs/, checkpoints/" if t.kind == "vqvae" else "")
    )
    return lines
