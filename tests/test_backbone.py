"""The backbone: permutation equivariance, padding, normalisation twin, named sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hepmpm.features import FEATURE_SETS, MPM7ID, PART17
from hepmpm.models.backbone import BACKBONE_SIZES, Backbone, count_parameters
from hepmpm.models.embedding import FeatureNormalisation
from hepmpm.models.pairs import pair_features


def _jets(feature_set, batch=4, particles=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, particles, feature_set.n_features, generator=generator) * 4 + 0.05
    for i, feature in enumerate(feature_set.features):
        if feature.categories:
            x[..., i] = torch.randint(
                0, feature.categories, (batch, particles), generator=generator
            )
    mask = torch.rand(batch, particles, generator=generator) > 0.3
    mask[:, 0] = True
    return x, mask


TINY_PAIRS = BACKBONE_SIZES["tiny"].model_copy(update={"pair_bias": True, "pair_dim": 8})


@pytest.mark.parametrize("config", [BACKBONE_SIZES["tiny"], TINY_PAIRS], ids=["plain", "pairs"])
@pytest.mark.parametrize("feature_set", [PART17, MPM7ID], ids=lambda f: f.name)
def test_permuting_particles_permutes_outputs(feature_set, config):
    torch.manual_seed(0)
    model = Backbone(feature_set, config).eval()
    x, mask = _jets(feature_set)
    perm = torch.randperm(x.shape[1])
    with torch.no_grad():
        particles, registers = model(x, mask)
        particles_p, registers_p = model(x[:, perm], mask[:, perm])
    real = mask[:, perm]
    torch.testing.assert_close(particles[:, perm][real], particles_p[real], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(registers, registers_p, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(particles[:, 0], particles[:, 1])  # outputs do depend on inputs


@pytest.mark.parametrize("config", [BACKBONE_SIZES["tiny"], TINY_PAIRS], ids=["plain", "pairs"])
def test_padded_particles_do_not_change_real_outputs(config):
    torch.manual_seed(0)
    model = Backbone(PART17, config).eval()
    x, mask = _jets(PART17)
    garbage = x.clone()
    garbage[~mask] = 123.0
    with torch.no_grad():
        a, _ = model(x, mask)
        b, _ = model(garbage, mask)
    torch.testing.assert_close(a[mask], b[mask])


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_torch_normalisation_equals_the_numpy_definition(name):
    feature_set = FEATURE_SETS[name]
    x, _ = _jets(feature_set, particles=50)
    x[0, 0, 0] = 1e4  # something to clip
    continuous, categories = FeatureNormalisation(feature_set)(x)
    reference = feature_set.normalise(x.numpy())
    cont = [i for i, f in enumerate(feature_set.features) if f.categories is None]
    np.testing.assert_allclose(continuous.numpy(), reference[..., cont], rtol=1e-5, atol=1e-6)
    if categories.shape[-1]:
        assert torch.equal(categories[..., 0].float(), x[..., -1])


def test_named_sizes():
    parameters = {n: count_parameters(Backbone(PART17, c)) for n, c in BACKBONE_SIZES.items()}
    assert parameters["tiny"] < 100_000
    assert 500_000 <= parameters["small"] <= 2_000_000
    assert parameters["base"] > 10_000_000


def test_pair_features_by_hand():
    """ln ΔR, ln kT, ln z, ln m² of two massless particles, Δφ wrapped across ±π."""
    pt = torch.tensor([[100.0, 20.0]])
    eta = torch.tensor([[0.1, -0.2]])
    phi = torch.tensor([[3.1, -3.1]])  # 0.083 apart across the wrap, not 6.2
    pairs = pair_features(pt, eta, phi)[0, 0, 1]
    dphi = 2 * math.pi - 6.2
    delta_r = math.hypot(0.3, dphi)
    mass2 = 2 * 100 * 20 * (math.cosh(0.3) - math.cos(dphi))
    expected = [math.log(delta_r), math.log(20 * delta_r), math.log(20 / 120), math.log(mass2)]
    np.testing.assert_allclose(pairs.numpy(), expected, rtol=1e-5)
    # the same from four-vectors: m² = (E1 + E2)² − |p1 + p2|²
    p4 = [(p * math.cos(f), p * math.sin(f), p * math.sinh(e), p * math.cosh(e))
          for p, e, f in ((100, 0.1, 3.1), (20, -0.2, -3.1))]  # fmt: skip
    total = [a + b for a, b in zip(*p4, strict=True)]
    np.testing.assert_allclose(math.exp(pairs[3]), total[3] ** 2 - sum(c**2 for c in total[:3]),
                               rtol=1e-4)  # fmt: skip
    assert torch.allclose(pair_features(pt, eta, phi)[0, 1, 0], pairs)  # symmetric


def test_pair_bias_changes_attention_and_leaves_registers_unbiased():
    torch.manual_seed(0)
    plain = Backbone(PART17, BACKBONE_SIZES["tiny"]).eval()
    paired = Backbone(PART17, TINY_PAIRS).eval()
    paired.load_state_dict(plain.state_dict(), strict=False)  # same weights but the pair MLP
    x, mask = _jets(PART17)
    with torch.no_grad():
        bias = paired.pairs(x, mask, registers=1)  # [B, H, 1 + P, 1 + P]
        assert bias.shape == (4, 4, 13, 13) and torch.all(bias[:, :, 0] == 0)
        pairs_real = (mask[:, None, :, None] & mask[:, None, None, :]).expand(-1, 4, -1, -1)
        assert torch.all(bias[:, :, 1:, 1:][~pairs_real] == 0)
        assert torch.any(bias[:, :, 1:, 1:][pairs_real] != 0)
        assert not torch.allclose(plain(x, mask)[0][mask], paired(x, mask)[0][mask])


def test_pair_bias_trains_under_bf16_autocast():
    """The bias enters the fused attention in the logits' dtype (bf16 on a GPU, here on CPU)."""
    torch.manual_seed(0)
    model = Backbone(PART17, TINY_PAIRS)
    x, mask = _jets(PART17)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        particles, _ = model(x, mask)
    particles[mask].float().square().mean().backward()
    grads = [p.grad for p in model.pairs.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
