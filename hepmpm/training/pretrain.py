"""Masked particle pre-training with Lightning: the module, its config, and ``run_pretrain``.

Output folder: ``checkpoints/{last,best}.ckpt`` (Lightning, for ``--resume``), ``logs/`` (CSV,
and TensorBoard when installed), ``config.yaml`` (the resolved config), and at the end
``mpm.pt`` (the whole model, heads included, which ``--init`` continues from) and
``backbone.pt`` + ``backbone.json`` (:func:`hepmpm.models.store.save_backbone`: weights that
load with ``torch.load(weights_only=True)``, the feature set, backbone config, metrics) for
fine-tuning.

Resume is exact: the training batches come from
:class:`~hepmpm.training.datamodule.ResumableBatches`, whose position is
the number of optimizer steps taken (epoch = steps // batches per epoch, then the batches of
that epoch already trained are skipped), and the masked particles of step ``s`` are drawn from
a generator seeded with ``(seed, s, rank)``. A run stopped at step ``k`` and resumed therefore
trains on the same batches with the same masks as one uninterrupted run (bit-identical weights
on CPU; dropout, 0 in the packaged configs, draws from the global RNG and is not replayed).
The learning-rate schedule spans ``trainer.schedule_steps`` (default ``max_steps``): stop early
with ``max_steps=k, schedule_steps=N`` and resume with ``max_steps=N`` to follow the schedule of
an N-step run; resuming with a larger ``max_steps`` alone stretches the schedule from there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from pydantic import Field

from hepmpm import __version__
from hepmpm.atomic import write_json_atomic
from hepmpm.config import StrictModel, parse_config, resolve_config
from hepmpm.data.index import UNKNOWN_LABEL
from hepmpm.data.manifest import load_manifest
from hepmpm.errors import HepmpmError
from hepmpm.features import FeatureSet, get_feature_set
from hepmpm.models.backbone import Backbone, BackboneConfig, count_parameters
from hepmpm.models.mpm import (
    TOKEN_TARGETS,
    MaskedParticleModel,
    MPMConfig,
    choose_masked,
    mpm_losses,
)
from hepmpm.models.store import load_backbone, read_backbone_record, save_backbone
from hepmpm.pretrained import resolve_backbone
from hepmpm.training.datamodule import DataConfig, JetDataModule
from hepmpm.training.probe import OnlineProbe, ProbeConfig
from hepmpm.training.runs import (
    TrainerConfig,
    claim_run_folder,
    fit,
    holding_run_folder,
    make_trainer,
    start_run_folder,
    step_seed,
)
from hepmpm.training.schedule import OptimizerConfig, adamw_stepwise, decay_groups, lr_factor
from hepmpm.training.statistics import particle_sample
from hepmpm.weights import load_weights, save_weights

#: What a resumed run must share with the run in its folder (keys of ``run.json``).
RESUMED_KEYS = ("feature_set", "features", "backbone", "mpm", "n_tokens", "tokenizer", "init")
#: The whole masked-particle model (backbone, mask tokens, decoder, heads) of a finished run.
MPM_WEIGHTS = "mpm.pt"
#: A continued run's starting point with its validation before the first step (kept for a resume).
START_RECORD = "init.json"


class PretrainConfig(StrictModel):
    """Everything ``hepmpm pretrain`` needs besides the data and the tokenizer."""

    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    mpm: MPMConfig = Field(default_factory=MPMConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The random generator of training step ``step`` on ``rank`` (masks replay on resume)."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, step, rank))


def labelled_domains(allowed: list[str] | None, domains: Sequence[str]) -> torch.Tensor | None:
    """Which domain codes the class target may take labels from: bool [len(domains)], or
    ``None`` when ``allowed`` is (every domain). A name the skim lacks is an error."""
    if allowed is None:
        return None
    unknown = sorted(set(allowed) - set(domains))
    if unknown:
        raise HepmpmError(
            f"mpm.class_domains: domain(s) {unknown} not in the skim "
            f"(domains there: {list(domains)})"
        )
    return torch.tensor([name in allowed for name in domains], dtype=torch.bool)


class MPMModule(L.LightningModule):
    """Lightning wrapper of :class:`MaskedParticleModel`, with a frozen tokenizer for tokens."""

    def __init__(
        self,
        feature_set: str,
        config: dict[str, Any],
        n_tokens: int | None = None,
        tokenizer: torch.nn.Module | None = None,
        domains: tuple[str, ...] = (),
    ) -> None:
        """``domains``: the skim's domain names, in the order of ``JetBatch.domain``'s codes
        (what ``mpm.class_domains`` is matched against)."""
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.config = PretrainConfig.model_validate(config)
        self.labelled_domain = labelled_domains(self.config.mpm.class_domains, domains)
        self.model = MaskedParticleModel(
            get_feature_set(feature_set), self.config.backbone, self.config.mpm, n_tokens
        )
        self.tokenizer = tokenizer
        if tokenizer is not None:
            tokenizer.requires_grad_(False)
        self._val: dict[str, torch.Tensor] = {}

    def _step(self, batch: Any, generator: torch.Generator | None = None):
        features, mask = batch.features, batch.mask
        masked = choose_masked(mask, self.config.mpm.mask_fraction, generator)
        tokens = None
        if self.tokenizer is not None:
            self.tokenizer.eval()
            with torch.no_grad():
                tokens = self.tokenizer.tokenize(features, mask)
        predictions = self.model(features, mask, masked)
        labels = batch.labels
        if self.labelled_domain is not None:  # the truth of other domains is never trained on
            keep = self.labelled_domain.to(labels.device)[batch.domain]
            labels = torch.where(keep, labels, torch.full_like(labels, UNKNOWN_LABEL))
        targets = self.model.targets(features, masked, tokens, labels)
        losses = mpm_losses(predictions, targets, self.config.mpm.regression_loss)
        weights = self.config.mpm.targets
        loss = sum(weights[name] * value for name, value in losses.items())
        return loss, losses, predictions, targets

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        generator = step_generator(
            self.config.trainer.seed, self.global_step, self.global_rank, batch.mask.device
        )
        loss, losses, _, _ = self._step(batch, generator)
        size = batch.features.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in losses.items():
            self.log(f"train/loss_{name}", value, batch_size=size)
        return loss

    def on_fit_start(self) -> None:
        """Fix the regression targets' and the inputs' standardisation from the training jets,
        once: a resumed run (or ``--init``) keeps the statistics its checkpoint holds."""
        model, embed = self.model, self.model.backbone.embed
        if self.global_step > 0 or not (model.needs_target_statistics or embed.needs_statistics):
            return
        dataset = self.trainer.datamodule.val_set  # a fixed, shuffled sample of the corpus
        sample = particle_sample(embed.normalise, dataset, self.device)
        if model.needs_target_statistics:
            model.set_target_statistics(sample)
        if embed.needs_statistics:
            embed.set_input_statistics(sample)

    def on_validation_epoch_start(self) -> None:
        self._val = {}

    def _accumulate(self, key: str, value: torch.Tensor) -> None:
        self._val[key] = self._val.get(key, 0) + value.detach().double()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        # The same particles are masked at every validation: a fixed generator per batch.
        generator = torch.Generator(device=batch.mask.device).manual_seed(batch_idx)
        loss, losses, predictions, targets = self._step(batch, generator)
        n_masked = torch.tensor(float(batch.mask.shape[0]), device=loss.device)
        self._accumulate("jets", n_masked)
        self._accumulate("loss", loss * n_masked)
        for name, value in losses.items():
            self._accumulate(f"loss_{name}", value * n_masked)
        for name, logits in predictions.items():
            if name == "regression":
                continue
            target = targets[name]
            if name == "class":  # labelled jets only
                logits, target = logits[target >= 0], target[target >= 0]
            top5 = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
            self._accumulate(f"correct_{name}", (top5[:, 0] == target).sum())
            self._accumulate(f"top5_{name}", (top5 == target[:, None]).any(-1).sum())
            self._accumulate(f"count_{name}", torch.bincount(target, minlength=logits.shape[-1]))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        # Sums over all ranks first, then ratios: exact metrics of the whole validation set.
        strategy = self.trainer.strategy
        values = {k: strategy.reduce(v, reduce_op="sum") for k, v in self._val.items()}
        jets = values["jets"]
        self.log("val/loss", (values["loss"] / jets).float(), prog_bar=True)
        for key in [k for k in values if k.startswith("loss_")]:
            self.log(f"val/{key}", (values[key] / jets).float())
        for key in [k for k in values if k.startswith("count_")]:
            name = key.removeprefix("count_")
            counts = values[key]
            total = counts.sum()
            self.log(f"val/acc_{name}", (values[f"correct_{name}"] / total).float())
            self.log(f"val/top5_{name}", (values[f"top5_{name}"] / total).float())
            # What always guessing the most frequent token/class would score.
            self.log(f"val/baseline_{name}", (counts.max() / total).float())

    def configure_optimizers(self) -> dict[str, Any]:
        c = self.config.optimizer
        total = self.config.trainer.schedule_steps or self.config.trainer.max_steps
        groups = decay_groups(self.model, c.weight_decay)
        return adamw_stepwise(groups, c, lambda s: lr_factor(s, total, c))


def _load_tokenizer_for(
    config: PretrainConfig, tokenizer_dir: Path | None, feature_set: FeatureSet
):
    token_targets = [t for t in config.mpm.targets if t in TOKEN_TARGETS]
    if not token_targets:
        return None
    if tokenizer_dir is None:
        raise HepmpmError(
            f"mpm.targets: {token_targets[0]!r} needs a tokenizer (--tokenizer DIR from "
            "`hepmpm tokenizer`, or a study's tokenizer: section)"
        )
    from hepmpm.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir, feature_set)
    if tokenizer.kind != token_targets[0]:
        raise HepmpmError(
            f"target {token_targets[0]!r} needs a {token_targets[0]} tokenizer; "
            f"{tokenizer_dir} holds a {tokenizer.kind} tokenizer"
        )
    return tokenizer


def _tokenizer_identity(tokenizer: torch.nn.Module | None) -> dict[str, Any] | None:
    """Kind, size and a hash of the weights: a resumed run must use the same tokenizer."""
    if tokenizer is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(tokenizer.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return {
        "kind": tokenizer.kind,
        "n_tokens": tokenizer.n_tokens,
        "weights_sha256": digest.hexdigest()[:16],
    }


def continued_config(
    config: str | Path | PretrainConfig, init: str | Path, overrides: list[str] | None = None
) -> PretrainConfig:
    """The config of a run that continues the pre-training of ``init`` (``pretrained:NAME`` or
    a pre-training folder): ``config`` with the architecture (``backbone``, all but dropout) and
    the masked-particle recipe (``mpm``) of ``init``'s ``backbone.json``, as fine-tuning takes
    its backbone's; then the explicit ``overrides``. The config itself is a fresh run's recipe
    (``compact`` masks 40 % without standardised inputs): what is continued keeps its own.

    An override may change the recipe (the heads then start afresh, the backbone continues) or
    the dropout; one that asks for another architecture is an error naming it, since the weights
    cannot take it. A record without ``mpm`` (a random-init control) keeps the config's."""
    base = resolve_config(PretrainConfig, config, "pretrain")
    folder = resolve_backbone(init)
    source = read_backbone_record(folder)
    theirs = parse_config(BackboneConfig, source["backbone"], str(folder / "backbone.json"))
    inherited = base.model_dump()
    inherited["backbone"] = {**theirs.architecture(), "dropout": base.backbone.dropout}
    if source.get("mpm") is not None:
        # Through the config model: a record written before an MPM option existed reads as
        # that option's default.
        inherited["mpm"] = parse_config(
            MPMConfig, source["mpm"], str(folder / "backbone.json")
        ).model_dump()
    continued = resolve_config(
        PretrainConfig, PretrainConfig.model_validate(inherited), "pretrain", overrides
    )
    _check_architecture(init, theirs.architecture(), continued.backbone, overrides or [])
    return continued


def _check_architecture(
    init: str | Path, theirs: dict[str, Any], ours: BackboneConfig, overrides: list[str]
) -> None:
    """A one-line error when an override gave the continued backbone another architecture
    than ``init``'s (``theirs``), naming the override and the value ``init`` has."""
    ours_architecture = ours.architecture()
    differ = [key for key in theirs if theirs[key] != ours_architecture.get(key)]
    if not differ:
        return
    key = differ[0]
    named = [o for o in overrides if o.partition("=")[0].strip() in ("backbone", f"backbone.{key}")]
    asked = named[-1] if named else f"backbone.{key}={ours_architecture.get(key)}"
    raise HepmpmError(
        f"--set {asked} conflicts with init {init}, which has backbone.{key}={theirs[key]}: "
        "a continued backbone keeps its architecture (drop the override, or pre-train "
        "without --init)"
    )


def _initial_weights(
    module: MPMModule, init: str | Path, feature_set: FeatureSet, record: dict[str, Any]
) -> dict[str, Any]:
    """Load the weights of ``init`` (``pretrained:NAME`` or a pre-training folder) into
    ``module``: the whole masked-particle model when ``init`` has one of the same MPM settings
    and tokenizer (``mpm.pt``), else the backbone alone (the heads start afresh). Returns what
    the run records about where it started from. ``module``'s architecture is ``init``'s
    (:func:`continued_config`)."""
    folder = resolve_backbone(init)
    source = read_backbone_record(folder)
    backbone = load_backbone(folder, feature_set)  # a feature set that differs is an error
    token_targets = [t for t in module.config.mpm.targets if t in TOKEN_TARGETS]
    if token_targets and source.get("tokenizer") != record["tokenizer"]:
        raise HepmpmError(
            f"init {init} was pre-trained with tokenizer {source.get('tokenizer')}, this run "
            f"has {record['tokenizer']}: continue with the tokenizer it was trained with"
        )
    whole = folder / MPM_WEIGHTS
    # Through the config model, so a record written before an MPM option existed reads as
    # that option's default.
    source_mpm = MPMConfig.model_validate(source.get("mpm") or {}).model_dump()
    same = (source_mpm, source.get("n_tokens")) == (record["mpm"], record["n_tokens"])
    if whole.is_file() and same:
        load_weights(module.model, whole, folder / "backbone.json")
        weights = "mpm"
    else:
        module.model.backbone.load_state_dict(backbone.state_dict())
        weights = "backbone"
    return {"from": str(init), "folder": str(folder), "weights": weights}


def save_random_backbone(
    config: str | Path | PretrainConfig,
    data: Path,
    out: Path,
    *,
    overrides: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """The backbone of a pre-training config at random initialisation (seeded; no training),
    saved as a pre-training folder ``out`` (``backbone.pt`` + ``backbone.json``, ``"init":
    "random"``) for the skim ``data``'s feature set: the control that tells what pre-training
    adds beyond the architecture (a frozen random transformer already gives useful features)."""
    config = resolve_config(PretrainConfig, config, "pretrain", overrides)
    feature_set = load_manifest(Path(data)).feature_set
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = Backbone(feature_set, config.backbone)
    if backbone.embed.needs_statistics:  # fitted as a pre-training would, on the same jets
        datamodule = JetDataModule(Path(data), config.data, seed=config.trainer.seed)
        datamodule.setup()
        backbone.embed.set_input_statistics(
            particle_sample(backbone.embed.normalise, datamodule.val_set)
        )
    save_backbone(backbone, Path(out), extra={"init": "random", "seed": seed, "steps": 0})
    return Path(out)


def run_pretrain(
    config: str | Path | PretrainConfig,
    data: Path,
    out: Path,
    *,
    overrides: list[str] | None = None,
    tokenizer_dir: Path | None = None,
    init: str | Path | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Pre-train a backbone on the skim folder ``data`` into ``out``; returns the final metrics,
    the step count and this process's ``rank`` (under DDP every process returns; rank 0 writes).

    ``config``: a packaged name (``compact``), a YAML path or a :class:`PretrainConfig`, with
    ``overrides`` applied last (the signature of every training entry point:
    ``run_pretrain``, ``run_finetune``, ``run_tokenizer``).

    ``init``: continue pre-training from the weights of ``pretrained:NAME`` or a pre-training
    folder (domain-adaptive pre-training on one's own data) with its architecture, input
    statistics and masked-particle recipe (:func:`continued_config`); the run records where it
    started. On ``resume`` the checkpoint's weights are used, and ``init`` must be the one
    recorded."""
    if init is None:
        config = resolve_config(PretrainConfig, config, "pretrain", overrides)
    else:
        config = continued_config(config, init, overrides)
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    datamodule = JetDataModule(data, config.data, seed=config.trainer.seed)
    feature_set = datamodule.feature_set
    tokenizer = _load_tokenizer_for(config, tokenizer_dir, feature_set)
    n_tokens = tokenizer.n_tokens if tokenizer is not None else None
    out = Path(out)
    record = {
        "feature_set": feature_set.name,
        "features": list(feature_set.names),
        "backbone": config.backbone.model_dump(),
        "mpm": config.mpm.model_dump(),
        "n_tokens": n_tokens,
        "tokenizer": _tokenizer_identity(tokenizer),
        "init": None if init is None else str(init),
    }
    # Built before the folder is claimed: a bad mpm.class_domains fails before any work.
    module = MPMModule(
        feature_set.name, config.model_dump(), n_tokens, tokenizer, datamodule.index.domains
    )
    with holding_run_folder(out, "pre-training"):
        ckpt_path = claim_run_folder(out, "pre-training", record, RESUMED_KEYS, resume)
        started_from = None
        if init is not None:
            started_from = _initial_weights(module, init, feature_set, record)
        t = config.trainer
        callbacks = []
        if config.probe.skim is not None:
            callbacks.append(OnlineProbe(config.probe, feature_set.names))
        trainer = make_trainer(
            t, out, config.optimizer.grad_clip, show_progress, callbacks=callbacks
        )
        if trainer.is_global_zero:
            start_run_folder(out, {**record, "hepmpm_version": __version__}, config)
        # A continued run validates its starting weights first (the loss it must improve on,
        # logged at step 0); a resumed one reads what it recorded when it began.
        fresh_start = started_from is not None and ckpt_path is None
        start = fit(trainer, module, datamodule, ckpt_path, t.cpu_threads, fresh_start)
        if start is not None:
            started_from["val_loss"] = start.get("val/loss")
            if trainer.is_global_zero:
                write_json_atomic(out / START_RECORD, started_from)
        elif started_from is not None and (out / START_RECORD).is_file():
            started_from = json.loads((out / START_RECORD).read_text())
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if trainer.is_global_zero:
            save_weights(module.model, out / MPM_WEIGHTS)  # heads too: for continued pre-training
            save_backbone(
                module.model.backbone,
                out,
                extra={
                    "mpm": record["mpm"],
                    "n_tokens": n_tokens,
                    "tokenizer": record["tokenizer"],
                    "init": started_from,
                    "parameters": count_parameters(module.model.backbone),
                    "steps": trainer.global_step,
                    "world_size": trainer.world_size,
                    "skim": {
                        "path": str(data),
                        "settings_hash": datamodule.manifest.raw["settings_hash"],
                    },
                    "metrics": metrics,
                },
            )
        return {"steps": trainer.global_step, "rank": trainer.global_rank, **metrics}
