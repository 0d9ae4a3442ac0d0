"""Fitting a tokenizer on the training split of a skim folder: ``hepmpm tokenizer``'s library side.

:func:`run_tokenizer` reads the config's ``kind``:

- ``vqvae``: a :class:`~hepmpm.tokenizers.vqvae.VQVAETokenizer` trained by the stack every
  hepmpm training shares (:func:`~hepmpm.training.runs.make_trainer`): the same ``optimizer``
  (AdamW, :func:`~hepmpm.training.schedule.lr_factor`), ``trainer`` and ``data`` keys as
  pre-training and fine-tuning, checkpoints of the best (lowest ``val/loss``) and last step, CSV
  logs, training batches that resume mid-epoch, bf16 autocast on CUDA. The saved tokenizer is
  the best checkpoint's.
- ``kmeans``: ``MiniBatchKMeans`` on up to ``fit.max_particles`` training particles.

Both report their metrics on the ``val`` split (the VQ-VAE also before training). Everything is
written into a hidden sibling ``.OUT.partial`` of the output folder, renamed to ``OUT`` when the
tokenizer is complete, so ``OUT`` is never half-written. An interrupted VQ-VAE run continues
from the partial folder's last checkpoint with ``resume=True`` (``--resume``), as every training
command does; without it, an interrupted run's folder is an error that says so.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from pydantic import Field

from hepmpm.atomic import write_json_atomic
from hepmpm.config import (
    StrictModel,
    apply_overrides,
    load_yaml_with_inheritance,
    parse_config,
    resolve_config_path,
)
from hepmpm.data.index import JetIndex
from hepmpm.data.loader import JetBatch, make_dataloader
from hepmpm.data.manifest import SkimManifest, load_manifest
from hepmpm.errors import ConfigError, HepmpmError
from hepmpm.folder_lock import folder_is_empty
from hepmpm.tokenizers.base import TokenCounts, Tokenizer
from hepmpm.tokenizers.kmeans import (
    KMeansConfig,
    KMeansFitConfig,
    KMeansTokenizer,
    collect_vectors,
    evaluate_kmeans,
    fit_kmeans,
)
from hepmpm.tokenizers.store import TOKENIZER_FILE, save_tokenizer
from hepmpm.tokenizers.vqvae import (
    LOSS_NAMES,
    VQVAEConfig,
    VQVAEMeter,
    VQVAETokenizer,
    evaluate_vqvae,
)
from hepmpm.training.datamodule import DataConfig, JetDataModule
from hepmpm.training.devices import torch_threads, uses_cuda
from hepmpm.training.runs import (
    RUN_RECORD,
    TrainerConfig,
    claim_run_folder,
    fit,
    holding_run_folder,
    last_checkpoint,
    make_trainer,
)
from hepmpm.training.schedule import OptimizerConfig, adamw_stepwise, decay_groups, lr_factor
from hepmpm.weights import read_torch_file

RESUMED_KEYS = ("config", "skim")  #: what a resumed run shares with the one it continues


# ---------------------------------------------------------------------------- configs


class TokenizerDataConfig(DataConfig):
    """:class:`~hepmpm.training.datamodule.DataConfig` plus the number of jets a tokenizer is
    fitted and validated on; each limit is an upper bound (a smaller split is used whole)."""

    pad_to: int | None = Field(
        64, ge=1, description="particle slots per jet; longer jets keep their hardest particles"
    )
    cache: bool = Field(False, description="keep read jets in memory (small skims only)")
    limit_train_jets: int | None = Field(None, ge=1, description="use at most this many jets")
    limit_val_jets: int | None = Field(None, ge=1, description="validate on at most this many")


class VQVAETrainingConfig(StrictModel):
    """``kind: vqvae``: train a VQ-VAE tokenizer."""

    kind: Literal["vqvae"]
    model: VQVAEConfig = Field(default_factory=VQVAEConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    data: TokenizerDataConfig = Field(default_factory=TokenizerDataConfig)


class KMeansTrainingConfig(StrictModel):
    """``kind: kmeans``: fit a k-means tokenizer (``data.batch_size``: jets per read)."""

    kind: Literal["kmeans"]
    model: KMeansConfig = Field(default_factory=KMeansConfig)
    fit: KMeansFitConfig = Field(default_factory=KMeansFitConfig)
    data: TokenizerDataConfig = Field(default_factory=TokenizerDataConfig)


TokenizerRunConfig = VQVAETrainingConfig | KMeansTrainingConfig

_CONFIG_CLASSES: dict[str, type[StrictModel]] = {
    "vqvae": VQVAETrainingConfig,
    "kmeans": KMeansTrainingConfig,
}


def load_tokenizer_config(
    config: str | Path | TokenizerRunConfig, overrides: list[str] | None = None
) -> TokenizerRunConfig:
    """A tokenizer config from a packaged name (``configs/tokenizer/``), a YAML path
    (``inherit:`` allowed) or a loaded config, with ``a.b=value`` overrides applied, validated
    as the class its ``kind`` names."""
    if isinstance(config, (VQVAETrainingConfig, KMeansTrainingConfig)):
        source = "tokenizer config"
        data = apply_overrides(config.model_dump(), overrides or [])
    else:
        path = resolve_config_path(config, "tokenizer")
        source = f"config {path}"
        data = apply_overrides(load_yaml_with_inheritance(path), overrides or [])
    kind = data.get("kind")
    if kind not in _CONFIG_CLASSES:
        raise ConfigError(
            f"{source}: key 'kind' must be one of {list(_CONFIG_CLASSES)}, got {kind!r}"
        )
    return parse_config(_CONFIG_CLASSES[kind], data, source)


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


# ---------------------------------------------------------------------------- VQ-VAE


class VQVAEModule(L.LightningModule):
    """Trains a :class:`VQVAETokenizer`; logs ``train/*`` each step and ``val/*`` (losses,
    ``usage``, ``perplexity`` of the codes over the validation pass)."""

    def __init__(
        self, tokenizer: VQVAETokenizer, optimizer: OptimizerConfig, trainer: TrainerConfig
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.optimizer_config = optimizer
        self.schedule_steps = trainer.schedule_steps or trainer.max_steps
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
        c = self.optimizer_config
        groups = decay_groups(self.tokenizer, c.weight_decay)
        return adamw_stepwise(groups, c, lambda step: lr_factor(step, self.schedule_steps, c))


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


class TokenizerDataModule(JetDataModule):
    """At most ``data.limit_train_jets`` shuffled training jets (batches that resume mid-epoch)
    and at most ``data.limit_val_jets`` validation jets in a fixed shuffle: each validation
    reads ``trainer.val_batches`` of them, the final metrics all of them."""

    config: TokenizerDataConfig

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):  # set up before fit (the initial metrics): read once
            return
        c = self.config
        train_jets = at_most(self.index, "train", c.limit_train_jets, "data.limit_train_jets")
        val_jets = at_most(self.index, "val", c.limit_val_jets, "data.limit_val_jets")
        self.train_set = self._dataset("train", shuffle=True, limit=train_jets)
        # Validation too reads a fixed shuffle: trainer.val_batches then see every shard.
        self.val_set = self._dataset("val", shuffle=True, training=False, limit=val_jets)
        if self.train_set.rank_jets() < self.config.batch_size:
            raise HepmpmError(
                f"{self.skim}: the train split has {self.train_set.n_jets} jets, fewer than one "
                f"batch (data.batch_size={self.config.batch_size}); use a smaller batch or a "
                "bigger skim"
            )
        if self.val_set.n_jets == 0:
            raise HepmpmError(f"{self.skim}: the val split holds no jets; use a bigger skim")


def _train_vqvae(
    config: VQVAETrainingConfig, manifest: SkimManifest, staging: Path, resume: bool,
    show_progress: bool,
) -> tuple[VQVAETokenizer, dict[str, Any], bool]:  # fmt: skip
    t = config.trainer
    datamodule = TokenizerDataModule(manifest.directory, config.data, seed=t.seed)
    datamodule.setup()
    val_loader = make_dataloader(datamodule.val_set, config.data.num_workers)
    device = "cuda" if uses_cuda(t.accelerator) else "cpu"  # of the evaluations outside Lightning
    L.seed_everything(t.seed, workers=True, verbose=False)
    tokenizer = VQVAETokenizer(manifest.feature_set, config.model)
    run_record = json.loads((staging / RUN_RECORD).read_text())
    if "initial" not in run_record:
        # Before training, on a copy: the copy's k-means codebook init must not touch the model.
        untrained = copy.deepcopy(tokenizer).to(device)
        run_record["initial"] = evaluate_vqvae(untrained, val_loader, device)
        del untrained
        write_json_atomic(staging / RUN_RECORD, run_record)
    L.seed_everything(t.seed, workers=True, verbose=False)

    module = VQVAEModule(tokenizer, config.optimizer, t)
    trainer = make_trainer(t, staging, config.optimizer.grad_clip, show_progress)
    last = last_checkpoint(staging)
    fit(trainer, module, datamodule, last if resume and last.is_file() else None, t.cpu_threads)
    if not trainer.is_global_zero:
        return tokenizer, {}, False

    checkpoints = trainer.checkpoint_callback
    best = checkpoints.best_model_path
    if best:
        state = read_torch_file(best, "checkpoint")["state_dict"]
        module.load_state_dict(state)
    with torch_threads(t.cpu_threads):
        final = evaluate_vqvae(tokenizer.to(device), val_loader, device)
    tokenizer.cpu().eval()
    score = checkpoints.best_model_score
    metrics = {
        "initial": run_record["initial"],
        "final": final,
        "steps": trainer.global_step,
        "best_checkpoint": Path(best).name if best else None,
        "best_val_loss": float(score) if score is not None else None,
        "train_jets": datamodule.train_set.n_jets,
        "val_jets": datamodule.val_set.n_jets,
    }
    return tokenizer, metrics, True


# ---------------------------------------------------------------------------- k-means


def _fit_kmeans(
    config: KMeansTrainingConfig, manifest: SkimManifest, show_progress: bool
) -> tuple[KMeansTokenizer, dict[str, Any]]:
    datamodule = TokenizerDataModule(manifest.directory, config.data, seed=config.fit.seed)
    datamodule.setup()
    workers = config.data.num_workers
    tokenizer = KMeansTokenizer(manifest.feature_set, config.model)
    vectors = collect_vectors(
        tokenizer,
        make_dataloader(datamodule.train_set, workers),
        config.fit.max_particles,
        show_progress,
    )
    fit_metrics = fit_kmeans(tokenizer, vectors, config.fit)
    final = evaluate_kmeans(tokenizer, make_dataloader(datamodule.val_set, workers))
    metrics = {
        "fit": fit_metrics,
        "final": final,
        "train_jets": datamodule.train_set.n_jets,
        "val_jets": datamodule.val_set.n_jets,
    }
    return tokenizer.eval(), metrics


# ---------------------------------------------------------------------------- the run


def _run_record(config: TokenizerRunConfig, manifest: SkimManifest) -> dict[str, Any]:
    """What the run is made with (its resolved config and skim): compared on ``--resume``."""
    skim = {
        "path": str(manifest.directory.resolve()),
        "settings_hash": manifest.raw.get("settings_hash"),
    }
    return {"config": config.model_dump(mode="json"), "skim": skim}


def _check_out(out: Path) -> None:
    if (out / TOKENIZER_FILE).exists():
        raise HepmpmError(f"{out} already holds a tokenizer; choose another --out or delete it")
    if out.exists() and (not out.is_dir() or not folder_is_empty(out)):
        raise HepmpmError(f"{out} exists and is not an empty folder; choose another --out")


def staging_path(out: Path) -> Path:
    """The hidden sibling folder a run writes into before it is renamed to ``out``."""
    return out.with_name(f".{out.name}.partial")


def _claim_staging(staging: Path, record: dict[str, Any], resume: bool) -> bool:
    """Claim the staging folder by the rule of every training run
    (:func:`~hepmpm.training.runs.claim_run_folder`); whether a checkpoint is resumed."""
    resumed = claim_run_folder(staging, "tokenizer", record, RESUMED_KEYS, resume) is not None
    if not (staging / RUN_RECORD).is_file():
        staging.mkdir(parents=True, exist_ok=True)
        write_json_atomic(staging / RUN_RECORD, record)
    return resumed


def run_tokenizer(
    config: str | Path | TokenizerRunConfig,
    data: Path,
    out: Path,
    *,
    overrides: list[str] | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> TokenizerRun:
    """Fit the tokenizer ``config`` describes on the skim folder ``data``; write it to ``out``.

    ``out`` must not exist or be empty. It appears only once complete (``tokenizer.json``,
    ``weights.pt``; for a VQ-VAE also ``logs/`` and ``checkpoints/``). ``resume`` continues an
    interrupted run of the same config and skim (see the module docstring).
    """
    config = load_tokenizer_config(config, overrides)
    out = Path(out)
    manifest = load_manifest(Path(data))
    # The staging folder beside ``out`` is renamed to it once complete: hold ``out`` meanwhile.
    with holding_run_folder(out, "tokenizer"):
        _check_out(out)
        staging = staging_path(out)
        record = _run_record(config, manifest)
        resumed = _claim_staging(staging, record, resume)

        if isinstance(config, VQVAETrainingConfig):
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

        extra = {"skim": record["skim"], "metrics": metrics, "training": record["config"]}
        save_tokenizer(tokenizer, staging, extra=extra)
        (staging / RUN_RECORD).unlink()
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
