"""Fine-tuning a backbone into a jet tagger with Lightning: config, module, ``run_finetune``.

Three modes (``FinetuneConfig.mode``):

- ``frozen``: the pre-trained backbone is fixed (no gradients, evaluation mode, not in the
  optimizer, so its weights stay bit-identical); only the class-attention head trains.
- ``finetune``: everything trains; the backbone's learning rate is ``backbone_lr_ratio`` times
  the head's, and it is held at 0 for the first ``head_warmup_steps`` (a head-only warm-up).
  Then it either gets its own warm-up and decay (``catchup_steps: 0``), or (JetSSL-Lite's
  "catch-up") ramps linearly from 0 to ``backbone_lr_ratio`` times the head's current rate over
  ``catchup_steps`` and follows the head's schedule from there.
- ``scratch``: the same architecture from a random initialisation, all at the head's rate;
  any pre-trained backbone is ignored.

``model: part`` trains weaver-core's Particle Transformer (:class:`~hepmpm.models.part.ParTTagger`,
sized by the ``part`` section) instead of a hepmpm tagger, from scratch only: a reference arm on
the same labels, test jets, step budget and best-validation checkpoint. Its folder has
``tagger.pt`` and a ``tagger.json`` that says ``"model": "part"``
(:func:`~hepmpm.models.store.save_part_tagger`; export and
:func:`~hepmpm.models.store.load_tagger` read hepmpm taggers only,
:func:`~hepmpm.models.store.load_run_tagger` either kind).

``labels: N`` trains on a class-balanced subset of N jets of the train split
(:meth:`hepmpm.data.index.JetIndex.select`, chosen by the seed); training runs ``max_steps``
optimizer steps over as many epochs of that subset as it takes. The tagger's output ``c`` is the
``c``-th chosen class in JetClass order; ``tagger.json`` records the class names and JetClass
labels (:func:`hepmpm.models.store.save_tagger`).

Every mode is judged on its best validation point: ``checkpoints/best.ckpt`` (lowest
``val/loss``) holds the weights that are tested and saved (``evaluate: best``, the default;
``last`` keeps the final step's), and ``early_stopping_patience`` stops a run after that many
validations without a better ``val/loss``, so no arm trains far past its best point.

Output folder: ``checkpoints/{last,best}.ckpt`` (Lightning, for ``--resume``), ``logs/`` (CSV),
``run.json``, ``config.yaml`` (the resolved config), and at the end ``tagger.pt`` +
``tagger.json`` and ``metrics.json`` (test-split metrics of the evaluated weights,
:func:`hepmpm.evaluation.scoring.evaluate_tagger`; an unbounded rejection is ``Infinity``;
``best_step`` says which step they come from).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from pydantic import Field

from hepmpm import __version__
from hepmpm.atomic import write_json_atomic
from hepmpm.config import StrictModel, parse_config, resolve_config
from hepmpm.data.index import UNKNOWN_LABEL, JetIndex
from hepmpm.data.loader import JetDataset
from hepmpm.errors import ConfigError, HepmpmError
from hepmpm.evaluation.scoring import evaluate_tagger
from hepmpm.features import get_feature_set
from hepmpm.jetclass import CLASS_INDEX, CLASS_NAMES, parse_classes
from hepmpm.models.backbone import Backbone, BackboneConfig, count_parameters
from hepmpm.models.classifier import HeadConfig, JetTagger
from hepmpm.models.part import PartConfig, ParTTagger
from hepmpm.models.store import Tagger, load_backbone, save_part_tagger, save_tagger
from hepmpm.pretrained import resolve_backbone
from hepmpm.records import settings_hash
from hepmpm.training.adaptation import AdaptationConfig, check_levers, check_target
from hepmpm.training.adapted import (
    Adaptation,
    PreparedAdaptation,
    apply_target_statistics,
    prepare_adaptation,
)
from hepmpm.training.datamodule import DataConfig, JetDataModule
from hepmpm.training.devices import torch_threads, uses_cuda
from hepmpm.training.frozen_outputs import FrozenOutputs
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
from hepmpm.weights import read_torch_file

#: What a resumed run must share with the run in its folder (keys of ``run.json``).
RESUMED_KEYS = (
    "kind",
    "model",
    "feature_set",
    "mode",
    "labels",
    "classes",
    "backbone",
    "head",
    "part",
    "adaptation",
)


class FinetuneConfig(StrictModel):
    """Everything ``hepmpm finetune`` needs besides the data and the pre-trained backbone.

    ``backbone`` is the architecture built from random weights in ``scratch`` mode; otherwise
    the architecture is the pre-trained backbone's (``backbone.json``) and only the config's
    ``backbone.dropout`` (the fine-tuning's own) is used. ``model: part`` trains
    weaver-core's ParT sized by ``part`` instead (``backbone`` and ``head`` unused; ``mode``
    must be ``scratch``, which :func:`load_finetune_config` checks).
    """

    model: Literal["hepmpm", "part"] = Field(
        "hepmpm", description="hepmpm's tagger, or weaver-core's ParT (scratch mode only)"
    )
    mode: Literal["frozen", "finetune", "scratch"] = "finetune"
    labels: int | None = Field(
        None, ge=1, description="class-balanced labelled training jets (None: the whole split)"
    )
    classes: list[str] | None = Field(
        None,
        description="class names, e.g. [QCD, Wqq, Tbqq] (None: every class in the skim); the "
        "tagger's outputs follow JetClass order whatever the order given",
    )
    backbone_lr_ratio: float = Field(
        0.1, gt=0, le=1, description="finetune mode: backbone learning rate / head learning rate"
    )
    head_warmup_steps: int = Field(
        0, ge=0, description="finetune mode: steps with the backbone held fixed (lr 0) first"
    )
    catchup_steps: int = Field(
        0,
        ge=0,
        description="finetune mode: after head_warmup_steps, steps over which the backbone's "
        "rate ramps linearly up to backbone_lr_ratio x the head's (0: own warm-up and decay)",
    )
    layer_lr_decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description="finetune mode: each backbone block trains at this factor x the rate of "
        "the block above it (the top block at the backbone's rate, the embedding and registers "
        "below the first block); 1: one rate for the whole backbone (BEiT-style layer-wise "
        "decay keeps the pre-trained lower layers closer to what they learned)",
    )
    val_jets: int | None = Field(
        None,
        ge=1,
        description="validate on (at most) this many class-balanced val-split jets, the same "
        "for every seed (None: trainer.val_batches batches of the split)",
    )
    evaluate: Literal["best", "last"] = Field(
        "best", description="weights tested and saved: lowest val/loss, or the final step's"
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop after this many validations without a lower val/loss"
    )
    frozen_cache_jets: int = Field(
        20000,
        ge=0,
        description="frozen mode: keep the backbone's outputs of up to this many jets and train "
        "the head on them, not on a backbone pass per step (0: a pass per step)",
    )
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    head: HeadConfig = Field(default_factory=HeadConfig)
    part: PartConfig = Field(default_factory=PartConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    adaptation: AdaptationConfig = Field(
        default_factory=AdaptationConfig,
        description="domain-adaptation levers on unlabelled target jets (hepmpm.training."
        "adaptation); all off by default",
    )

    def model_post_init(self, _context: object) -> None:
        if self.classes is not None:
            parse_classes(",".join(self.classes) or " ")  # unknown or no names: HepmpmError


def load_finetune_config(
    config: str | Path | FinetuneConfig,
    overrides: list[str] | None = None,
    **fields: Any,
) -> FinetuneConfig:
    """A config from a packaged name (``tiny``), a YAML file or a :class:`FinetuneConfig`, with
    ``a.b=value`` ``overrides`` and then the non-``None`` top-level ``fields`` (``mode``,
    ``labels``, ``classes``) and ``seed`` (``trainer.seed``) applied."""
    resolved = resolve_config(FinetuneConfig, config, "finetune", overrides)
    seed = fields.pop("seed", None)
    data = resolved.model_dump()
    data.update({k: v for k, v in fields.items() if v is not None})
    if seed is not None:
        data["trainer"]["seed"] = seed
    return _check_model(parse_config(FinetuneConfig, data, "fine-tuning config and arguments"))


def _check_model(config: FinetuneConfig) -> FinetuneConfig:
    """``config``, or an error for a ParT that is not trained from scratch.

    Checked once every override and argument is in (not by the model itself), so that
    ``model=part`` with ``--mode scratch`` given apart is accepted."""
    if config.model == "part" and config.mode != "scratch":
        raise ConfigError(
            f"model: part (weaver-core's ParT) trains from scratch only, but mode is "
            f"{config.mode!r}: set mode: scratch (--mode scratch)"
        )
    _check_adaptation(config)
    return config


def _check_adaptation(config: FinetuneConfig) -> None:
    """Levers a run cannot take, refused with the rest of the config (before any work)."""
    levers = config.adaptation
    check_levers(levers, config.model, standardises_inputs=True)  # the architecture: later
    if levers.enabled and config.mode == "frozen":
        raise ConfigError(
            "adaptation levers train the backbone or re-weight its inputs; mode frozen keeps "
            "it fixed: use mode finetune or scratch"
        )


class FinetuneModule(L.LightningModule):
    """Lightning wrapper of a :class:`JetTagger` (or, ``model: part``, a
    :class:`~hepmpm.models.part.ParTTagger`): cross-entropy on the chosen classes.

    ``labels``: the JetClass label of each output; batches carry JetClass labels, which are
    mapped to output positions 0..C-1 here.
    """

    def __init__(self, feature_set: str, config: dict[str, Any], labels: list[int]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = _check_model(FinetuneConfig.model_validate(config))
        c = self.config
        features = get_feature_set(feature_set)
        self.tagger: Tagger
        if c.model == "part":
            self.tagger = ParTTagger(features, c.part, len(labels))
        else:
            self.tagger = JetTagger(features, c.backbone, c.head, len(labels))
        lookup = torch.full((len(CLASS_NAMES),), -1, dtype=torch.long)
        lookup[torch.tensor(labels)] = torch.arange(len(labels))
        self.register_buffer("label_lookup", lookup, persistent=False)
        self.frozen = c.mode == "frozen"
        if self.frozen:
            self.tagger.backbone.requires_grad_(False)
        self.frozen_outputs = None
        if self.frozen and c.model == "hepmpm" and c.frozen_cache_jets > 0:
            self.frozen_outputs = FrozenOutputs(c.frozen_cache_jets)
        self._val: dict[str, torch.Tensor] = {}
        # Domain-adaptation levers (hepmpm.training.adapted), attached by run_finetune.
        self.adaptation: Adaptation | None = None
        self.target_batches = None
        self.domain_sets = None

    def attach_adaptation(self, prepared: PreparedAdaptation) -> None:
        """Train with the levers of ``prepared`` (before the trainer starts)."""
        self.adaptation = prepared.module
        self.target_batches = prepared.target_batches
        self.domain_sets = prepared.domain_sets

    def train(self, mode: bool = True) -> FinetuneModule:
        """As ``nn.Module.train``, but a frozen backbone stays in evaluation mode (no dropout)."""
        super().train(mode)
        if self.frozen:
            self.tagger.backbone.eval()
        return self

    def _loss(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.frozen_outputs is not None:  # the head on the jets' kept backbone outputs
            particles, registers = self.frozen_outputs(self.tagger.backbone, batch)
            logits, _ = self.tagger.head_outputs(particles, registers, batch.mask)
        else:
            logits, _ = self.tagger(batch.features, batch.mask)  # [B, C]
        target = self.label_lookup[batch.labels]  # [B], 0..C-1
        return F.cross_entropy(logits, target), logits, target

    def _adapted_loss(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training loss with the domain-adaptation levers (target batch of this step)."""
        from hepmpm.training.pretrain import step_generator

        step, t = self.global_step, self.config.trainer
        target_batch = None
        if self.target_batches is not None:
            target_batch = self.target_batches.batch(step).to(self.device)
        generator = step_generator(t.seed, step, self.global_rank, batch.mask.device)
        target = self.label_lookup[batch.labels]
        # DANN's ramp runs over the run's schedule unless it is told to be quicker: with few
        # labels the best validation step comes early, before a full-schedule ramp has acted.
        ramp_steps = self.config.adaptation.dann_ramp_steps or t.schedule_steps or t.max_steps
        progress = step / max(1, ramp_steps)
        loss, logs, logits = self.adaptation.training_loss(
            self.tagger, batch, target_batch, target, progress, generator
        )
        for name, value in logs.items():
            self.log(name, value, batch_size=batch.features.shape[0])
        return loss, logits, target

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.adaptation is not None:
            loss, logits, target = self._adapted_loss(batch)
        else:
            loss, logits, target = self._loss(batch)
        size = batch.features.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        accuracy = (logits.argmax(-1) == target).float().mean()
        self.log("train/acc", accuracy, batch_size=size)
        return loss

    def on_fit_start(self) -> None:
        """From scratch with ``backbone.standardise_inputs``: fit the input standardisation on
        the validation jets' features (a fixed sample, the same for every seed; no labels), once
        (a resumed run keeps its checkpoint's). A pre-trained backbone brings its own."""
        if not isinstance(self.tagger, JetTagger):  # ParT normalises with its own BatchNorm
            return
        embed = self.tagger.backbone.embed
        if self.global_step == 0 and embed.needs_statistics:
            dataset = self.trainer.datamodule.val_set
            embed.set_input_statistics(particle_sample(embed.normalise, dataset, self.device))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout draws from torch's global generator, whose state no checkpoint keeps: seeded
        # per step, a resumed run draws what the uninterrupted one drew.
        torch.manual_seed(step_seed(self.config.trainer.seed, self.global_step, self.global_rank))

    def on_validation_epoch_start(self) -> None:
        self._val = {}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, logits, target = self._loss(batch)
        n = float(len(target))
        for key, value in (
            ("jets", torch.tensor(n, device=loss.device)),
            ("loss", loss * n),
            ("correct", (logits.argmax(-1) == target).sum()),
        ):
            self._val[key] = self._val.get(key, 0) + value.detach().double()

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        jets = self._val["jets"]
        self.log("val/loss", (self._val["loss"] / jets).float(), prog_bar=True, sync_dist=True)
        self.log("val/acc", (self._val["correct"] / jets).float(), prog_bar=True, sync_dist=True)
        if self.domain_sets is not None and not self.trainer.sanity_checking:
            auc = self.adaptation.domain_auc(self.tagger, *self.domain_sets)
            self.log("val/domain_auc", auc, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        c, t = self.config, self.config.trainer
        total = t.schedule_steps or t.max_steps
        o = c.optimizer
        groups: list[dict[str, Any]] = []
        schedules = []

        def head_schedule(step: int) -> float:
            return lr_factor(step, total, o)

        def backbone_schedule(step: int) -> float:
            if c.mode == "scratch":
                return lr_factor(step, total, o)
            if step < c.head_warmup_steps:
                return 0.0
            since = step - c.head_warmup_steps
            if c.catchup_steps:
                return min(1.0, (since + 1) / c.catchup_steps) * lr_factor(step, total, o)
            return lr_factor(since, total - c.head_warmup_steps, o)

        skip: set[str] = set()
        if isinstance(self.tagger, ParTTagger):
            # ParT is scratch-only: all of it at the head's rate, weaver's no-decay list kept.
            parts = [(self.tagger, o.lr, head_schedule)]
            skip = self.tagger.no_weight_decay()
        else:
            parts = [(self.tagger.head, o.lr, head_schedule)]
        for module, lr, schedule in parts:
            for group in decay_groups(module, o.weight_decay, skip):
                groups.append({**group, "lr": lr})
                schedules.append(schedule)
        if not self.frozen and isinstance(self.tagger, JetTagger):
            ratio, decay = (
                (1.0, 1.0) if c.mode == "scratch" else (c.backbone_lr_ratio, c.layer_lr_decay)
            )
            backbone = self.tagger.backbone
            depth = backbone.config.depth
            # One group per level (one level in all without decay: the optimiser is unchanged).
            levels = {
                name: blocks_above(name, depth) if decay < 1 else 0
                for name, _ in backbone.named_parameters()
            }
            for level in sorted(set(levels.values())):
                chosen = {name for name, lv in levels.items() if lv == level}
                for group in decay_groups(backbone, o.weight_decay, only=chosen):
                    groups.append({**group, "lr": o.lr * ratio * decay**level})
                    schedules.append(backbone_schedule)
        if self.adaptation is not None and self.adaptation.own_parameters():
            # The domain classifier and the auxiliary MPM heads learn at the head's rate.
            groups.append({"params": self.adaptation.own_parameters(), "lr": o.lr,
                           "weight_decay": 0.0})  # fmt: skip
            schedules.append(head_schedule)
        return adamw_stepwise(groups, o, schedules)


def blocks_above(name: str, depth: int) -> int:
    """How many transformer blocks lie above the backbone parameter ``name`` (layer-wise
    learning-rate decay): 0 for the top block and the final norm, ``depth`` for what comes
    before the first block (embedding, registers, pair-feature MLP)."""
    if name.startswith("encoder.blocks."):
        return depth - 1 - int(name.split(".")[2])
    return 0 if name.startswith("encoder.norm") else depth


class FinetuneDataModule(JetDataModule):
    """The jets of the chosen classes; ``n_labelled`` class-balanced ones for training (batches
    that resume mid-epoch, as in pre-training).

    The training batch size is capped at the number of training jets, so that a few labelled
    jets still give one full batch per epoch.
    """

    def __init__(
        self,
        skim: Path,
        config: DataConfig,
        seed: int,
        labels: list[int],
        n_labelled: int | None,
        val_jets: int | None = None,
    ) -> None:
        super().__init__(skim, config, seed=seed, labels=labels)
        self.n_labelled = n_labelled
        self.val_jets = val_jets
        limited = n_labelled is not None
        selection = self.index.select("train", labels, config.domains, n_labelled, limited, seed)
        self.train_jets = len(selection)
        self.train_batch_size = min(config.batch_size, self.train_jets)
        self.batches_per_epoch = self.train_jets // self.train_batch_size

    def setup(self, stage: str | None = None) -> None:
        c = self.config
        self.train_set = JetDataset(
            self.index,
            "train",
            self.train_batch_size,
            pad_to=c.pad_to,
            labels=self.labels,
            domains=c.domains,
            limit=self.n_labelled,
            balanced=self.n_labelled is not None,
            shuffle=True,
            shuffle_buffer=c.shuffle_buffer,
            seed=self.seed,
            drop_last=True,
            cache=c.cache,
            bucket=c.bucket,
        )
        if self.val_jets is None:
            self.val_set = self._dataset("val", shuffle=True, training=False)
            return
        # The same class-balanced jets for every seed and arm (seed 0), so that best-validation
        # selection compares like with like; the split's first batches would hold the jets of
        # its first shards, often one class.
        # An upper bound (a config's number, meant for big skims): as many as every class has.
        counts = self.index.select("val", self.labels, c.domains).class_counts()
        val_jets = min(self.val_jets, min(counts.values()) * len(counts))
        self.val_set = JetDataset(
            self.index, "val", c.batch_size, pad_to=c.pad_to, labels=self.labels,
            domains=c.domains, limit=val_jets, balanced=True, seed=0, cache=c.cache,
        )  # fmt: skip


def _chosen_labels(config: FinetuneConfig, index: JetIndex) -> list[int]:
    """JetClass labels of the chosen classes (config, else every labelled class of the skim)."""
    if config.classes is not None:
        return [CLASS_INDEX[name] for name in parse_classes(",".join(config.classes))]
    present = sorted(int(v) for v in np.unique(index.labels) if v != UNKNOWN_LABEL)
    if not present:
        raise HepmpmError(f"skim {index.directory} holds no labelled jets to fine-tune on")
    return present


def _pretrained(backbone_dir: Path, datamodule: JetDataModule) -> Backbone:
    with torch.random.fork_rng():  # loading leaves the seeded stream to the tagger's init
        return load_backbone(backbone_dir, datamodule.feature_set)


def _with_architecture(config: FinetuneConfig, backbone: BackboneConfig) -> FinetuneConfig:
    """``config`` with the pre-trained ``backbone``'s architecture (the config's dropout kept),
    checked against the head; the config states an architecture only for ``scratch``."""
    merged = BackboneConfig(**{**backbone.architecture(), "dropout": config.backbone.dropout})
    if merged.dim % config.head.heads:
        raise HepmpmError(
            f"head.heads = {config.head.heads} does not divide the backbone's dim {merged.dim}"
        )
    return config.model_copy(update={"backbone": merged})


def _load_best(module: FinetuneModule, trainer: L.Trainer) -> int:
    """Put the lowest-``val/loss`` weights of the run into ``module``; returns their step (the
    final weights stay when no validation ran)."""
    best = trainer.checkpoint_callback.best_model_path
    if not best or not Path(best).is_file():
        return trainer.global_step
    checkpoint = read_torch_file(Path(best), "checkpoint")
    module.load_state_dict(checkpoint["state_dict"])
    return int(checkpoint["global_step"])


def _best_score(trainer: L.Trainer) -> float | None:
    """The lowest ``val/loss`` of the run (what selects its best weights and its learning rate
    in a study), ``None`` without a validation."""
    score = trainer.checkpoint_callback.best_model_score
    return None if score is None else float(score)


def config_hash(config: FinetuneConfig) -> str:
    """A short SHA-256 of the resolved config (recorded in tagger.json)."""
    return settings_hash(config.model_dump(mode="json"))


def _adaptation(
    config: FinetuneConfig,
    module: FinetuneModule,
    datamodule: FinetuneDataModule,
    chosen: list[int],
    backbone_dir: Path | None,
) -> PreparedAdaptation | None:
    """Build and attach the domain-adaptation levers of ``config`` (None when all are off)."""
    if not config.adaptation.enabled:
        return None
    pretraining = None if backbone_dir is None or config.mode == "scratch" else backbone_dir
    with torch_threads(config.trainer.cpu_threads):
        prepared = prepare_adaptation(
            config.adaptation, module.tagger, datamodule.index, chosen, config.data.domains,
            config.labels, datamodule.train_batch_size, config.trainer.seed,
            None if pretraining is None else resolve_backbone(pretraining),
        )  # fmt: skip
    module.attach_adaptation(prepared)
    return prepared


def _adaptation_metrics(prepared: PreparedAdaptation, trainer: L.Trainer) -> dict[str, Any]:
    """What metrics.json records of the levers: how they were set up (DCTR weights, MPM heads)
    and the domain classifier's last validation AUC."""
    found = dict(prepared.record)
    auc = trainer.callback_metrics.get("val/domain_auc")
    if auc is not None:
        found["dann_domain_auc"] = float(auc)
    return found


def run_finetune(
    config: str | Path | FinetuneConfig,
    data: Path,
    out: Path,
    *,
    backbone_dir: Path | None = None,
    mode: str | None = None,
    labels: int | None = None,
    classes: list[str] | None = None,
    overrides: list[str] | None = None,
    seed: int | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune on the skim folder ``data``, evaluate on its test split, write the tagger.

    ``config``: packaged name (tiny, small, base), YAML path or :class:`FinetuneConfig`;
    ``overrides`` (``a.b=value``) and then ``mode``, ``labels`` (N class-balanced training
    jets), ``classes`` (names) and ``seed`` replace the config's values when given.
    ``backbone_dir``: a pre-training folder (backbone.json + backbone.pt) or
    ``pretrained:NAME`` (a backbone shipped with hepmpm, :mod:`hepmpm.pretrained`), required unless
    ``mode`` is ``scratch``, where it is ignored. Returns what ``metrics.json`` holds: ``mode``,
    ``classes``, ``labels``, ``train_jets``, ``seed``, ``steps``, ``train`` (last logged
    training/validation values) and ``test`` (``classification_metrics``).
    """
    config = load_finetune_config(
        config, overrides, mode=mode, labels=labels, classes=classes, seed=seed
    )
    if config.mode != "scratch" and backbone_dir is None:
        raise HepmpmError(
            f"mode {config.mode!r} needs a pre-trained backbone (--backbone PRETRAIN_DIR), "
            "or mode: scratch"
        )
    t = config.trainer
    L.seed_everything(t.seed, workers=True, verbose=False)
    probe = JetIndex.from_skim(data)  # cheap: per-jet columns only
    chosen = _chosen_labels(config, probe)
    if config.labels is not None and config.labels < len(chosen):
        raise HepmpmError(
            f"labels = {config.labels} (--labels) is fewer than the {len(chosen)} classes "
            f"({', '.join(CLASS_NAMES[c] for c in chosen)}): each class needs a labelled jet"
        )
    datamodule = FinetuneDataModule(
        data, config.data, t.seed, chosen, config.labels, config.val_jets
    )
    feature_set = datamodule.feature_set
    pretrained = None
    if config.mode != "scratch":
        pretrained = _pretrained(resolve_backbone(backbone_dir), datamodule)
        config = _with_architecture(config, pretrained.config)
    elif config.model == "hepmpm" and config.backbone.dim % config.head.heads:
        raise HepmpmError(
            f"head.heads = {config.head.heads} does not divide backbone.dim {config.backbone.dim}"
        )
    if config.model == "hepmpm":  # the architecture is known now (a pre-trained one's)
        check_levers(config.adaptation, config.model, config.backbone.standardise_inputs)
        check_target(config.adaptation, datamodule.index.feature_names)
    out = Path(out)
    class_names = [CLASS_NAMES[c] for c in chosen]
    record = {
        "kind": "finetune",
        "feature_set": feature_set.name,
        "mode": config.mode,
        "labels": config.labels,
        "classes": class_names,
        "backbone": config.backbone.model_dump(mode="json"),
        "head": config.head.model_dump(mode="json"),
    }
    if config.model == "part":  # the hepmpm architecture sections are unused
        record |= {"model": "part", "part": config.part.model_dump(mode="json")}
        record |= {"backbone": None, "head": None}
    if config.adaptation.enabled:
        record["adaptation"] = config.adaptation.model_dump(mode="json")
    with holding_run_folder(out, "fine-tuning"):
        ckpt_path = claim_run_folder(out, "fine-tuning", record, RESUMED_KEYS, resume)
        module = FinetuneModule(feature_set.name, config.model_dump(), chosen)
        if pretrained is not None:
            module.tagger.backbone.load_state_dict(pretrained.state_dict())
        adaptation = _adaptation(config, module, datamodule, chosen, backbone_dir)
        callbacks = []
        if config.early_stopping_patience is not None:
            callbacks.append(
                EarlyStopping("val/loss", patience=config.early_stopping_patience, verbose=False)
            )
        trainer = make_trainer(
            t,
            out,
            config.optimizer.grad_clip,
            show_progress,
            # An epoch of a few labelled jets can be shorter than the logging interval.
            log_every_steps=min(t.log_every_steps, datamodule.batches_per_epoch),
            callbacks=callbacks,
        )
        if trainer.is_global_zero:
            start_run_folder(out, {**record, "hepmpm_version": __version__}, config)
        fit(trainer, module, datamodule, ckpt_path, t.cpu_threads)
        best_step = trainer.global_step
        if config.evaluate == "best":
            best_step = _load_best(module, trainer)
        metrics: dict[str, Any] = {
            "mode": config.mode,
            "classes": class_names,
            "labels": config.labels,
            "train_jets": datamodule.train_jets,
            "seed": t.seed,
            "steps": trainer.global_step,
            "best_step": best_step,
            "best_val_loss": _best_score(trainer),
            "train": {k: float(v) for k, v in trainer.callback_metrics.items()},
        }
        if config.model == "part":  # a reference arm: say so where studies read the results
            metrics["model"] = "part"
        if adaptation is not None:
            metrics["adaptation"] = _adaptation_metrics(adaptation, trainer)
        if not trainer.is_global_zero:
            return metrics
        device = "cuda" if uses_cuda(t.accelerator) else "cpu"
        with torch_threads(t.cpu_threads):
            metrics["test"] = evaluate_tagger(
                module.tagger, datamodule.index, chosen, "test", config.data.domains,
                config.data.batch_size, device,
            )  # fmt: skip
        module.tagger.cpu()
        adapted: dict[str, Any] = {}
        if adaptation is not None:
            adapted = {"adaptation": {**config.adaptation.model_dump(mode="json"),
                                      **metrics["adaptation"]}}  # fmt: skip
            if config.adaptation.target_statistics:  # the saved tagger is the target domain's
                with torch_threads(t.cpu_threads):
                    adapted["adaptation"] |= apply_target_statistics(
                        module.tagger, config.adaptation, t.seed
                    )
        extra = {
            "mode": config.mode,
            "pretrained": None if pretrained is None else str(backbone_dir),
            "parameters": sum(p.numel() for p in module.tagger.parameters()),
            "trainable_parameters": count_parameters(module.tagger),
            "config": config.model_dump(mode="json"),
            "config_hash": config_hash(config),
            "skim": {
                "path": str(data),
                "settings_hash": datamodule.manifest.raw["settings_hash"],
            },
            "metrics": {k: metrics[k] for k in ("train_jets", "steps", "best_step", "train")}
            | {"test_accuracy": metrics["test"]["accuracy"]},
            **adapted,
        }
        if isinstance(module.tagger, ParTTagger):
            save_part_tagger(module.tagger, out, class_names, chosen, extra)
        else:
            save_tagger(module.tagger, out, class_names, chosen, config.head, extra=extra)
        write_json_atomic(out / "metrics.json", metrics)
        return metrics
