"""The backbone: permutation equivariance, padding, normalisation twin, named sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepmpm.features import FEATURE_SETS, MPM7ID, PART17
from hepmpm.models.backbone import BACKBONE_SIZES, Backbone, count_parameters
from hepmpm.models.embedding import FeatureNormalisation


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


@pytest.mark.parametrize("feature_set", [PART17, MPM7ID], ids=lambda f: f.name)
def test_permuting_particles_permutes_outputs(feature_set):
    torch.manual_seed(0)
    model = Backbone(feature_set, BACKBONE_SIZES["tiny"]).eval()
    x, mask = _jets(feature_set)
    perm = torch.randperm(x.shape[1])
    with torch.no_grad():
        particles, registers = model(x, mask)
        particles_p, registers_p = model(x[:, perm], mask[:, perm])
    real = mask[:, perm]
    torch.testing.assert_close(particles[:, perm][real], particles_p[real], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(registers, registers_p, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(particles[:, 0], particles[:, 1])  # outputs do depend on inputs


def test_padded_particles_do_not_change_real_outputs():
    torch.manual_seed(0)
    model = Backbone(PART17, BACKBONE_SIZES["tiny"]).eval()
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
