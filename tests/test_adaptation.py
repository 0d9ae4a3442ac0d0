"""The domain-adaptation levers of fine-tuning (hepmpm.training.adaptation / adapted): the
gradient reversal and its ramp, DCTR weights, the auxiliary masked-particle loss with the
pre-training's heads, the domain-adversarial gradient, target-domain statistics in the saved
tagger and its ONNX export, and a fine-tuning run with every lever on."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_skim

from hepmpm.data.loader import JetDataset, make_dataloader
from hepmpm.errors import ConfigError, HepmpmError
from hepmpm.features import get_feature_set
from hepmpm.jetclass import CLASS_INDEX
from hepmpm.models.backbone import BACKBONE_SIZES
from hepmpm.models.classifier import HeadConfig, JetTagger
from hepmpm.models.mpm import MPMConfig
from hepmpm.models.store import load_backbone, load_tagger
from hepmpm.pretrained import resolve_backbone
from hepmpm.training.adaptation import (
    AdaptationConfig,
    TargetBatches,
    auxiliary_mpm,
    dann_ramp,
    dctr_weights,
    domain_loss,
    effective_sample_size,
    fit_domain_classifier,
    grad_reverse,
    separability_auc,
    target_dataset,
)
from hepmpm.training.adapted import Adaptation
from hepmpm.training.finetune import load_finetune_config, run_finetune
from hepmpm.training.statistics import particle_sample

PART17 = get_feature_set("part17")
SHIPPED = "pretrained:compact-sim4-stdin-mask60-gpu"
CLASSES = [CLASS_INDEX["Wqq"], CLASS_INDEX["Tbqq"]]


@pytest.fixture(scope="module")
def domains(shift_samples, tmp_path_factory) -> tuple:
    """Skims of the ``sim`` and the ``data`` preset (W and top jets, 64 each)."""
    sim_dir, data_dir = shift_samples
    root = tmp_path_factory.mktemp("adaptation")
    make_skim([sim_dir], root / "sim")
    make_skim([data_dir], root / "data")
    return root / "sim", root / "data"


def _batch(skim, n=32, split=None):
    return next(iter(make_dataloader(JetDataset(skim, split, n))))


# ---------------------------------------------------------------------------- primitives


def test_gradient_reversal_and_the_dann_ramp():
    x = torch.randn(5, 3, requires_grad=True)
    y = grad_reverse(x, 0.7)
    assert torch.equal(y, x)  # the identity forward
    (y * torch.arange(3.0)).sum().backward()
    assert torch.allclose(x.grad, -0.7 * torch.arange(3.0).expand(5, 3))
    assert dann_ramp(0.0) == 0.0
    assert math.isclose(dann_ramp(0.5), 2 / (1 + math.exp(-5)) - 1)
    assert 0.9999 < dann_ramp(1.0) < 1.0 and dann_ramp(2.0) == dann_ramp(1.0)
    ramp = [dann_ramp(p) for p in np.linspace(0, 1, 11)]
    assert all(a < b for a, b in itertools.pairwise(ramp))


def test_dctr_weights_make_sim_look_like_the_target():
    """Sim holds two kinds of jets 50/50, the target 90/10: the weighted sim must hold ~90 %
    of the first kind, and the effective sample size drops accordingly."""
    rng = np.random.default_rng(0)

    def jets(n, fraction_a):
        kind_a = rng.random(n) < fraction_a
        centre = np.where(kind_a[:, None], 1.5, -1.5)
        return centre + rng.normal(size=(n, 4)), kind_a

    sim, _ = jets(4000, 0.5)
    target, _ = jets(4000, 0.9)
    labelled, is_a = jets(1000, 0.5)
    classifier = fit_domain_classifier(sim, target)
    weights = dctr_weights(classifier.predict_proba(labelled)[:, 1], clip=20.0)
    assert math.isclose(weights.mean(), 1.0)
    weighted_a = weights[is_a].sum() / weights.sum()
    assert abs(weighted_a - 0.9) < 0.04, weighted_a
    ess = effective_sample_size(weights)
    assert 0.2 * len(weights) < ess < 0.8 * len(weights)
    # Clipping bounds the ratio of the largest to the smallest weight.
    clipped = dctr_weights(np.array([1e-9, 0.5, 1 - 1e-9]), clip=4.0)
    assert math.isclose(clipped.max() / clipped.min(), 16.0)
    assert effective_sample_size(np.ones(7)) == 7.0
    assert math.isclose(effective_sample_size(np.array([1.0, 0.0, 0.0])), 1.0)
    # Separable sets score an AUC near 1, one set against itself about 0.5.
    assert separability_auc(sim[:500], sim[:500] + 10.0) > 0.99
    assert 0.4 < separability_auc(sim[:1000], sim[1000:2000]) < 0.6


def test_target_batches_depend_on_the_step_alone(domains):
    _, data_skim = domains
    dataset = target_dataset(data_skim, "train", 16, shuffle=True, seed=3)
    first = TargetBatches(dataset)
    ids = [first.batch(step).jet_id for step in range(2 * first.n_batches + 1)]
    again = TargetBatches(target_dataset(data_skim, "train", 16, shuffle=True, seed=3))
    step = first.n_batches + 1  # a resumed run starts mid-epoch
    assert torch.equal(again.batch(step).jet_id, ids[step])
    assert torch.equal(again.batch(step + 1).jet_id, ids[step + 1])
    epoch0 = torch.cat(ids[: first.n_batches])
    assert len(set(epoch0.tolist())) == len(epoch0)  # each target jet once an epoch
    assert not torch.equal(epoch0, torch.cat(ids[first.n_batches : 2 * first.n_batches]))


# ---------------------------------------------------------------------------- levers


def test_auxiliary_mpm_uses_the_pretrainings_heads_on_the_taggers_backbone(domains):
    folder = resolve_backbone(SHIPPED)
    backbone = load_backbone(folder, PART17)
    auxiliary, source = auxiliary_mpm(backbone, PART17, folder, None)
    assert source.endswith("mpm.pt")
    assert auxiliary.model.backbone is backbone  # the loss trains the tagger's backbone
    saved = torch.load(folder / "mpm.pt", map_location="cpu", weights_only=True)
    for name, value in auxiliary.model.state_dict().items():
        assert torch.equal(value, saved[name]), name  # heads, decoder and tokens as saved
    assert auxiliary.model.config.mask_fraction == 0.6  # the pre-training's own objective
    shared = {id(p) for p in backbone.parameters()}
    assert all(id(p) not in shared for p in auxiliary.own_parameters())
    batch = _batch(domains[1])
    loss = auxiliary.loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert backbone.embed.continuous.weight.grad.abs().sum() > 0
    # From scratch (no folder): fresh heads of the fallback objective.
    fresh, source = auxiliary_mpm(backbone, PART17, None, None)
    assert source == "fresh heads" and set(fresh.model.config.targets) == {"regression", "id"}
    with pytest.raises(HepmpmError, match="tokenizer or labels"):
        auxiliary_mpm(backbone, PART17, None, MPMConfig(targets={"kmeans": 1.0}))


def test_dann_hands_the_tagger_the_reversed_ramped_domain_gradient(domains):
    sim_skim, data_skim = domains
    torch.manual_seed(0)
    tagger = JetTagger(
        PART17, BACKBONE_SIZES["tiny"], HeadConfig(layers=1, heads=4, dropout=0.0), 2
    )
    config = AdaptationConfig(target=str(data_skim), dann_weight=0.8)
    adaptation = Adaptation(config, tagger, None, None)
    batch, target = _batch(sim_skim, 16), _batch(data_skim, 16)
    classes = torch.zeros(16, dtype=torch.long)
    weight = tagger.backbone.embed.continuous.weight

    def gradient(target_batch, progress=0.7):
        tagger.zero_grad()
        adaptation.zero_grad()
        loss, logs, _ = adaptation.training_loss(
            tagger, batch, target_batch, classes, progress, None
        )
        loss.backward()
        return weight.grad.clone(), logs

    plain, _ = gradient(None)
    adversarial, logs = gradient(target)
    coefficient = float(logs["train/dann_coefficient"])
    assert math.isclose(coefficient, 0.8 * dann_ramp(0.7), rel_tol=1e-6)
    tagger.zero_grad()
    _, sim_embedding = tagger(batch.features, batch.mask)
    _, target_embedding = tagger(target.features, target.mask)
    domain_loss(adaptation.domain(sim_embedding), adaptation.domain(target_embedding)).backward()
    expected = plain - 0.8 * dann_ramp(0.7) * weight.grad
    torch.testing.assert_close(adversarial, expected, rtol=1e-4, atol=1e-6)
    start, _ = gradient(target, progress=0.0)  # at the start the ramp is 0: no reversal yet
    torch.testing.assert_close(start, plain, rtol=1e-5, atol=1e-7)


def test_lever_options_are_checked_before_any_work(domains, tmp_path):
    with pytest.raises(ConfigError, match=r"adaptation\.target"):
        load_finetune_config("tiny", ["adaptation.dann_weight=1.0"])
    with pytest.raises(ConfigError, match=r"unknown key 'adaptation\.dan_weight'"):
        load_finetune_config("tiny", ["adaptation.dan_weight=1.0"])
    target = f"adaptation.target={domains[1]}"
    with pytest.raises(ConfigError, match="mode frozen"):
        load_finetune_config("tiny", [target, "adaptation.dctr=true"], mode="frozen")
    with pytest.raises(ConfigError, match="standardise_inputs"):
        run_finetune(
            "tiny", domains[0], tmp_path / "no", mode="scratch", labels=8,
            overrides=[target, "adaptation.target_statistics=true"], show_progress=False,
        )  # fmt: skip
    assert not (tmp_path / "no").exists()
    with pytest.raises(HepmpmError, match="manifest"):
        run_finetune(
            "tiny", domains[0], tmp_path / "nowhere", mode="scratch", labels=8,
            overrides=[f"adaptation.target={tmp_path / 'absent'}", "adaptation.dctr=true"],
            show_progress=False,
        )  # fmt: skip
    assert not (tmp_path / "nowhere").exists()
    assert not AdaptationConfig().enabled  # all off by default


def test_finetuning_with_every_lever(domains, tmp_path):
    """DANN + masked-particle loss on data jets + DCTR weights + data statistics, from the
    shipped sim backbone: the run records each lever, and the saved tagger (and its ONNX
    export) standardises its inputs with the data jets' statistics."""
    import onnxruntime as ort
    from hepmpm.export import export_tagger

    sim_skim, data_skim = domains
    out = tmp_path / "adapted"
    levers = [
        f"adaptation.target={data_skim}", "adaptation.mpm_weight=0.5",
        "adaptation.dann_weight=1.0", "adaptation.dann_ramp_steps=4",
        "adaptation.dctr=true", "adaptation.dctr_jets=40",
        "adaptation.target_statistics=true", "adaptation.domain_val_jets=10",
        "adaptation.target_batch_size=8",
        "head.heads=4", "trainer.max_steps=6", "trainer.val_every_steps=3",
        "trainer.val_batches=1", "data.batch_size=8", "head_warmup_steps=0",
    ]  # fmt: skip
    metrics = run_finetune(
        "tiny", sim_skim, out, backbone_dir=SHIPPED, mode="finetune", labels=12,
        overrides=levers, seed=1, show_progress=False,
    )  # fmt: skip
    adapted = metrics["adaptation"]
    assert adapted["mpm_heads"].endswith("mpm.pt")
    assert 0.0 <= adapted["dann_domain_auc"] <= 1.0
    assert 1.0 <= adapted["dctr_ess"] <= 12 and adapted["dctr_ess_fraction"] <= 1.0
    assert 0.0 <= adapted["dctr_classifier_auc"] <= 1.0
    logged = pd.read_csv(next(out.glob("logs/version_*/metrics.csv")))
    for column in ("val/domain_auc", "train/loss_mpm_target", "train/loss_domain"):
        assert column in logged.columns, column
    ramp = logged.dropna(subset=["train/dann_coefficient"])  # ramped over 4 steps, not 6
    assert len(ramp) >= 2
    for step, coefficient in zip(ramp["step"], ramp["train/dann_coefficient"], strict=True):
        assert math.isclose(coefficient, dann_ramp(step / 4), rel_tol=1e-5), step
    record = json.loads((out / "tagger.json").read_text())
    assert record["adaptation"]["target"] == str(data_skim)
    source = record["adaptation"]["source_input_statistics"]
    tagger, _ = load_tagger(out)
    embed = tagger.backbone.embed
    dataset = target_dataset(data_skim, "train", 256, shuffle=True, seed=1)
    expected = particle_sample(embed.normalise, dataset, batches=16)
    torch.testing.assert_close(embed.input_mean, expected.mean(0))
    assert not np.allclose(embed.input_mean.numpy(), source["input_mean"], atol=1e-3)
    report = export_tagger(out, tmp_path / "adapted.onnx")
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    batch = _batch(data_skim, 16)
    probs, _ = session.run(
        None,
        {"pf_features": batch.features.numpy(), "pf_mask": batch.mask.numpy().astype(np.float32)},
    )
    with torch.no_grad():
        adapted_probs = tagger(batch.features, batch.mask)[0].softmax(-1).numpy()
        embed.input_mean.copy_(torch.tensor(source["input_mean"]))
        embed.input_std.copy_(torch.tensor(source["input_std"]))
        source_probs = tagger(batch.features, batch.mask)[0].softmax(-1).numpy()
    np.testing.assert_allclose(probs, adapted_probs, atol=1e-5)  # the graph: data statistics
    assert np.abs(probs - source_probs).max() > 1e-4


def test_no_lever_no_change(domains, tmp_path):
    """Levers off (the default): nothing about the run changes, and it records none."""
    overrides = ["trainer.max_steps=3", "trainer.val_every_steps=3", "trainer.val_batches=1",
                 "data.batch_size=8"]  # fmt: skip
    plain = run_finetune("tiny", domains[0], tmp_path / "a", mode="scratch", labels=8,
                         overrides=overrides, show_progress=False)  # fmt: skip
    assert "adaptation" not in plain
    assert "adaptation" not in json.loads((tmp_path / "a" / "tagger.json").read_text())
