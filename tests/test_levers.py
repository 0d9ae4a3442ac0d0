"""The pre-training levers: the linear probe and its random twin, the order-of-masked null
tokens, the Huber loss, the joint class target, batches bucketed by multiplicity, and the
standardisation of targets and inputs; scoring on bucketed batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_skim

from hepmpm.config import resolve_config
from hepmpm.data.loader import JetDataset, make_dataloader
from hepmpm.errors import HepmpmError
from hepmpm.features import get_feature_set
from hepmpm.models.backbone import BACKBONE_SIZES, Backbone
from hepmpm.models.mpm import MaskedParticleModel, MPMConfig, choose_masked, mpm_losses
from hepmpm.training.pretrain import MPMModule, PretrainConfig, labelled_domains
from hepmpm.training.probe import ProbeConfig, ProbeSets, probe_accuracy

PART17 = get_feature_set("part17")


def _model(**mpm) -> MaskedParticleModel:
    config = MPMConfig(targets=mpm.pop("targets", {"regression": 1.0, "id": 1.0}), **mpm)
    return MaskedParticleModel(PART17, BACKBONE_SIZES["tiny"], config)


def _batch(skim_dir, n: int = 32):
    dataset = JetDataset(skim_dir, None, n)
    return next(iter(make_dataloader(dataset)))


# ---------------------------------------------------------------------------- probe


def test_probe_separates_separable_classes_and_not_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    centres = rng.normal(size=(3, 16)) * 3
    separable = centres[labels] + rng.normal(size=(600, 16))
    noise = rng.normal(size=(600, 16))
    fit, score = slice(0, 300), slice(300, 600)
    assert probe_accuracy((separable[fit], labels[fit]), (separable[score], labels[score])) > 0.95
    chance = probe_accuracy((noise[fit], labels[fit]), (noise[score], labels[score]))
    assert chance < 0.45  # three classes: 1/3 expected


def test_probe_sets_never_use_the_test_split(skim_dir):
    sets = ProbeSets(ProbeConfig(skim=str(skim_dir), labels=20, score_jets=10), PART17.names)
    assert sets.fit_set.split == "train" and sets.score_set.split == "val"
    with pytest.raises(Exception, match="features"):
        ProbeSets(ProbeConfig(skim=str(skim_dir)), get_feature_set("mpm7id").names)


# ---------------------------------------------------------------------------- MPM options


def test_order_tokens_number_the_masked_particles():
    model = _model(mask_position="order")
    masked = torch.tensor([[False, True, False, True, True], [True, False, False, False, True]])
    code = model._position_code(masked, 32)  # [B, P, D]
    table = model.order_tokens
    assert torch.equal(code[0, 1], table[0]) and torch.equal(code[0, 3], table[1])
    assert torch.equal(code[0, 4], table[2])
    assert torch.equal(code[1, 0], table[0]) and torch.equal(code[1, 4], table[1])


@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_pair_bias_never_shows_a_masked_particle(skim_dir, mode):
    """With pair features on, what the model predicts for the masked particles does not change
    when their raw features do: their pairs carry no bias (v1) or they are not encoded (v2)."""
    backbone = BACKBONE_SIZES["tiny"].model_copy(update={"pair_bias": True, "pair_dim": 8})
    config = MPMConfig(mode=mode, targets={"regression": 1.0, "id": 1.0})
    torch.manual_seed(0)
    model = MaskedParticleModel(PART17, backbone, config).eval()
    batch = _batch(skim_dir)
    masked = choose_masked(batch.mask, 0.4, torch.Generator().manual_seed(1))
    altered = batch.features.clone()
    altered[masked] = altered[masked] * 1.5 + 0.3  # other kinematics for the hidden particles
    with torch.no_grad():
        before = model(batch.features, batch.mask, masked)
        after = model(altered, batch.mask, masked)
    for target in before:
        torch.testing.assert_close(before[target], after[target])
    visible = batch.mask & ~masked
    altered = batch.features.clone()
    altered[visible] = altered[visible] * 1.5 + 0.3
    with torch.no_grad():  # the visible particles' kinematics do count
        assert not torch.allclose(
            before["regression"], model(altered, batch.mask, masked)["regression"]
        )


def test_huber_is_quadratic_then_linear():
    prediction = {"regression": torch.tensor([[0.5], [3.0]])}
    target = {"regression": torch.zeros(2, 1)}
    mse = mpm_losses(prediction, target, "mse")["regression"]
    huber = mpm_losses(prediction, target, "huber")["regression"]
    assert torch.isclose(mse, torch.tensor((0.25 + 9.0) / 2))
    assert torch.isclose(huber, torch.tensor((0.5 * 0.25 + (3.0 - 0.5)) / 2))


def test_class_target_ignores_unlabelled_and_disallowed_jets(skim_dir):
    batch = _batch(skim_dir)
    allowed = sorted({int(v) for v in batch.labels[:8]})
    model = _model(targets={"regression": 1.0, "class": 1.0}, class_labels=allowed)
    masked = choose_masked(batch.mask, 0.4)
    labels = batch.labels.clone()
    labels[::2] = -1  # half the jets unlabelled
    targets = model.targets(batch.features, masked, None, labels)["class"]
    keep = (labels >= 0) & torch.isin(labels, torch.tensor(allowed))
    assert torch.equal(targets >= 0, keep)
    logits = model(batch.features, batch.mask, masked)["class"]  # [B, C]
    loss = mpm_losses({"class": logits}, {"class": targets})["class"]
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert torch.isclose(loss, expected)
    # No labelled jet in a batch: zero, not NaN, and no gradient.
    none = mpm_losses({"class": logits}, {"class": torch.full_like(targets, -1)})["class"]
    assert none.item() == 0.0


def test_class_domains_train_on_the_labels_of_those_domains_only(shift_samples, tmp_path):
    """Pre-training on data and simulation together: the class target reads the labels of the
    sim jets and never the truth of the pseudo-data."""
    make_skim(list(shift_samples), tmp_path / "mixed")  # each folder's domain: its preset
    dataset = JetDataset(tmp_path / "mixed", None, 512)  # every jet in one batch
    assert set(dataset.domains) == {"sim", "data"}
    batch = next(iter(make_dataloader(dataset)))
    config = resolve_config(
        PretrainConfig, "tiny", "pretrain",
        ["mpm.targets={regression: 1.0, class: 1.0}", "mpm.class_domains=[sim]"],
    )  # fmt: skip
    module = MPMModule("part17", config.model_dump(), domains=dataset.domains)
    _, _, _, targets = module._step(batch)
    is_sim = batch.domain == dataset.domains.index("sim")
    assert is_sim.any() and (~is_sim).any()  # both domains in the batch
    assert torch.equal(targets["class"][is_sim], batch.labels[is_sim])
    assert bool((targets["class"][~is_sim] == -1).all())
    with pytest.raises(HepmpmError, match=r"class_domains: domain\(s\) \['mc'\] not in"):
        labelled_domains(["mc"], dataset.domains)


def test_class_target_needs_a_particle_target():
    with pytest.raises(ValueError, match="masked-particle target"):
        MPMConfig(targets={"class": 1.0})


# ---------------------------------------------------------------------------- bucketing


def test_bucketed_batches_cover_the_same_jets_with_less_padding(skim_dir):
    def epoch(bucket: bool, epoch_number: int = 0):
        dataset = JetDataset(
            skim_dir, None, 16, shuffle=True, drop_last=True, bucket=bucket, shuffle_buffer=128
        )
        dataset.set_epoch(epoch_number)
        return list(make_dataloader(dataset))

    plain, bucketed = epoch(False), epoch(True)
    assert len(plain) == len(bucketed)
    ids = sorted(int(i) for b in plain for i in b.jet_id)
    assert ids == sorted(int(i) for b in bucketed for i in b.jet_id)  # the same jets

    def padding(batches):
        return 1 - np.mean([b.mask.float().mean().item() for b in batches])

    assert padding(bucketed) < 0.5 * padding(plain)
    again = epoch(True)  # deterministic (resume replays it) ...
    assert all(torch.equal(a.jet_id, b.jet_id) for a, b in zip(bucketed, again, strict=True))
    other = epoch(True, 1)  # ... and another epoch mixes differently
    assert any(not torch.equal(a.jet_id, b.jet_id) for a, b in zip(bucketed, other, strict=True))


def test_bucketed_scoring_gives_each_jet_its_own_scores_in_order(skim_dir):
    from hepmpm.evaluation.scoring import predict
    from hepmpm.models.classifier import HeadConfig, JetTagger

    torch.manual_seed(0)
    tagger = JetTagger(PART17, BACKBONE_SIZES["tiny"], HeadConfig(heads=4, layers=1), 4)
    with torch.no_grad():
        tagger.head.classify.weight.mul_(20.0)  # scores that differ from jet to jet

    def scores(bucket: bool):
        return predict(tagger, JetDataset(skim_dir, None, 16, bucket=bucket, shuffle_buffer=64))

    (plain, labels), (bucketed, bucketed_labels) = scores(False), scores(True)
    np.testing.assert_array_equal(labels, bucketed_labels)
    np.testing.assert_allclose(plain, bucketed, atol=1e-5)  # padding changes nothing
    assert plain.std(axis=0).max() > 0.1  # so that a jet given another's scores would fail
    dataset = JetDataset(skim_dir, None, 16, bucket=True, shuffle_buffer=64)
    batches = list(make_dataloader(dataset))
    ids = np.concatenate([b.jet_id.numpy() for b in batches])
    assert not np.array_equal(ids, np.sort(ids))  # the batches did come out of order
    counts = np.concatenate([b.mask.sum(1).numpy() for b in batches[:-1]])
    padded = sum(b.mask.numel() for b in batches[:-1])
    assert padded < 1.5 * counts.sum()  # and padded little


def test_standardised_regression_targets_have_unit_spread(skim_dir):
    batch = _batch(skim_dir, 64)
    model = _model(standardise_regression=True)
    masked = batch.mask.clone()  # every real particle "masked": the targets of all of them
    raw = model.targets(batch.features, masked, None)["regression"]
    model.set_target_statistics(model.backbone.embed.normalise(batch.features)[0][batch.mask])
    standardised = model.targets(batch.features, masked, None)["regression"]
    assert torch.allclose(standardised.mean(0), torch.zeros(raw.shape[1]), atol=1e-4)
    varying = raw.std(0) > 1e-3  # constant features keep their floor-clamped scale
    assert torch.allclose(standardised.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-3)
    assert raw.std(0).min() < 0.05  # the impact parameters: what the option is for
    # The statistics are buffers: saved with the weights, and restored on resume.
    assert {"target_mean", "target_std"} <= set(model.state_dict())


def test_standardised_inputs_reach_the_embedding_with_unit_spread(skim_dir):
    batch = _batch(skim_dir, 64)
    plain = Backbone(PART17, BACKBONE_SIZES["tiny"])
    config = BACKBONE_SIZES["tiny"].model_copy(update={"standardise_inputs": True})
    backbone = Backbone(PART17, config)
    embed = backbone.embed
    assert not plain.embed.needs_statistics and "embed.input_std" not in plain.state_dict()
    assert embed.needs_statistics  # the identity until fitted
    continuous = embed.normalise(batch.features)[0]  # [B, P, F_cont]
    embed.set_input_statistics(continuous[batch.mask])
    assert not embed.needs_statistics
    standardised = (continuous[batch.mask] - embed.input_mean) / embed.input_std
    varying = continuous[batch.mask].std(0) > 1e-3
    assert torch.allclose(standardised.mean(0), torch.zeros(standardised.shape[1]), atol=1e-4)
    assert torch.allclose(standardised.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-3)
    assert continuous[batch.mask].std(0).min() < 0.05  # what it is for: the impact parameters
    # The embedding's linear layer reads the standardised features (ids add their lookups).
    by_hand = embed.continuous((continuous - embed.input_mean) / embed.input_std)
    categories = embed.normalise(batch.features)[1]
    for i, table in enumerate(embed.categorical):
        by_hand = by_hand + table(categories[..., i].clamp(0, table.num_embeddings - 1))
    assert torch.allclose(embed(batch.features), by_hand, atol=1e-6)
    assert {"embed.input_mean", "embed.input_std"} <= set(backbone.state_dict())
    with pytest.raises(ValueError, match="does not standardise"):
        plain.embed.set_input_statistics(continuous[batch.mask])
