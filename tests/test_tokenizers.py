"""Tokenizers on the generated jets: a tiny VQ-VAE trained through the CLI, k-means, storage.

The VQ-VAE uses the packaged ``tiny`` config (64 codes, 300 steps, ~10 s on one core): the ~380
training jets of the ``skim_dir`` fixture (~12k particles) fill 64 codes, and the ~45 validation
jets (~1.4k particles) are enough to measure their usage. 512 codes train too (0.82 usage
measured on the same sample) but would need more jets for a stable usage figure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math

import numpy as np
import pytest
import torch
from conftest import make_skim

from hepmpm.cli import main
from hepmpm.config import packaged_configs
from hepmpm.data.loader import JetDataset
from hepmpm.errors import ConfigError, HepmpmError
from hepmpm.features import MPM7ID, PART17, FeatureSet, Transform
from hepmpm.tokenizers import (
    KMeansTokenizer,
    TokenCounts,
    VQVAETokenizer,
    load_tokenizer,
    save_tokenizer,
)
from hepmpm.training.tokenizer import (
    VQVAEModule,
    load_tokenizer_config,
    run_tokenizer,
    staging_path,
)


@pytest.fixture(scope="module")
def tiny_vqvae(skim_dir, tmp_path_factory):
    """``hepmpm tokenizer --config tiny`` on the part17 skim: (output folder, printed text)."""
    out = tmp_path_factory.mktemp("tokenizers") / "tiny"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(
            ["tokenizer", "--config", "tiny", "--data", str(skim_dir), "--out", str(out),
             "--no-progress"]
        )  # fmt: skip
    assert code == 0
    return out, stdout.getvalue()


@pytest.fixture(scope="module")
def skim_mpm7id(sim_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("skim_mpm7id")
    make_skim([sim_sample], out, feature_set="mpm7id")
    return out


@pytest.fixture(scope="module")
def kmeans_run(skim_mpm7id, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizers") / "kmeans"
    return run_tokenizer("tiny_kmeans", skim_mpm7id, out, show_progress=False)


def first_batch(skim, split="val", batch_size=16, pad_to=None):
    return next(iter(JetDataset(skim, split, batch_size, pad_to=pad_to)))


# ---------------------------------------------------------------------------- VQ-VAE


def test_vqvae_learns_and_uses_its_codebook(tiny_vqvae):
    out, printed = tiny_vqvae
    record = json.loads((out / "tokenizer.json").read_text())
    initial, final = record["metrics"]["initial"], record["metrics"]["final"]
    assert record["metrics"]["steps"] == 300
    # Validation split, before vs after training (measured: 0.59 -> 0.019).
    assert final["reconstruction"] < 0.3 * initial["reconstruction"]
    assert final["usage"] > 0.5  # measured 1.0: all 64 codes
    assert 16 < final["perplexity"] <= 64
    assert record["n_tokens"] == 64 and record["kind"] == "vqvae"
    assert record["skim"]["settings_hash"] and record["feature_set"]["name"] == "part17"
    assert record["training"]["trainer"]["max_steps"] == 300
    assert f"-> {final['reconstruction']:.4f}" in printed and "usage" in printed
    assert "perplexity" in printed and str(out) in printed
    # Lightning's CSV log and checkpoints; nothing staged is left behind.
    header = (out / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "val/usage" in header and "val/perplexity" in header and "train/loss" in header
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    assert not staging_path(out).exists() and not (out / "run.json").exists()


def test_vqvae_tokens(tiny_vqvae, skim_dir):
    tokenizer = load_tokenizer(tiny_vqvae[0], PART17)
    assert isinstance(tokenizer, VQVAETokenizer) and tokenizer.kind == "vqvae"
    assert tokenizer.n_tokens == 64 and tokenizer.feature_set is PART17
    batch = first_batch(skim_dir)
    tokens = tokenizer.tokenize(batch.features, batch.mask)
    assert tokens.dtype == torch.long and tokens.shape == batch.mask.shape
    assert (tokens[~batch.mask] == -1).all()
    assert ((tokens[batch.mask] >= 0) & (tokens[batch.mask] < 64)).all()
    # Deterministic, leaves the training mode alone, same whatever the padding.
    tokenizer.train()
    assert torch.equal(tokenizer.tokenize(batch.features, batch.mask), tokens)
    assert tokenizer.training
    padded = first_batch(skim_dir, pad_to=200)
    assert torch.equal(
        tokenizer.tokenize(padded.features, padded.mask)[padded.mask], tokens[batch.mask]
    )
    # No positional encoding: permuting the particles permutes the tokens.
    perm = torch.randperm(batch.mask.shape[1], generator=torch.Generator().manual_seed(1))
    permuted = tokenizer.tokenize(batch.features[:, perm], batch.mask[:, perm])
    assert torch.equal(permuted, tokens[:, perm])


def test_vqvae_on_mpm7id_reconstructs_ids(skim_mpm7id):
    config = load_tokenizer_config("tiny").model
    torch.manual_seed(0)
    model = VQVAETokenizer(MPM7ID, config)
    batch = first_batch(skim_mpm7id, "train", batch_size=32)
    out = model(batch.features, batch.mask)
    losses = model.losses(out, batch.mask)
    assert out.reconstruction.shape == (*batch.mask.shape, 7)
    assert [logits.shape[-1] for logits in out.id_logits] == [8]
    assert losses["id"] > 0.5  # ~log(8) before training
    losses["loss"].backward()
    assert model.encoder.embed.categorical[0].weight.grad.abs().sum() > 0
    assert (out.tokens[~batch.mask] == -1).all() and len(out.codes) == batch.mask.sum()


def test_vqvae_round_trip_and_weights_only(tiny_vqvae, skim_dir, tmp_path):
    tokenizer = load_tokenizer(tiny_vqvae[0])
    save_tokenizer(tokenizer, tmp_path / "copy", extra={"metrics": {"note": 1}})
    assert not list(tmp_path.glob(".copy*"))  # the temporary folder is gone
    copy = load_tokenizer(tmp_path / "copy", PART17)
    batch = first_batch(skim_dir, "test")
    assert torch.equal(
        copy.tokenize(batch.features, batch.mask), tokenizer.tokenize(batch.features, batch.mask)
    )
    state = torch.load(tmp_path / "copy" / "weights.pt", weights_only=True)
    assert state.keys() == tokenizer.state_dict().keys()
    record = json.loads((tmp_path / "copy" / "tokenizer.json").read_text())
    assert record["metrics"] == {"note": 1} and record["hepmpm_version"]
    assert record["feature_set"]["features"] == list(PART17.names)
    with pytest.raises(ValueError, match="kind"):
        save_tokenizer(tokenizer, tmp_path / "other", extra={"kind": "x"})


def test_loading_refuses_other_feature_sets_and_non_tokenizers(tiny_vqvae, tmp_path):
    out = tiny_vqvae[0]
    with pytest.raises(HepmpmError, match=r"fitted on feature set 'part17', the data is 'mpm7id'"):
        load_tokenizer(out, MPM7ID)
    # Same name, another normalisation of one feature: named in the error.
    features = list(PART17.features)
    features[0] = dataclasses.replace(features[0], transform=Transform(sub=1.0, mul=0.7))
    changed = FeatureSet(PART17.name, tuple(features), PART17.description)
    with pytest.raises(HepmpmError, match="normalisation of 'part_pt_log'"):
        load_tokenizer(out, changed)
    reordered = FeatureSet(PART17.name, PART17.features[::-1], PART17.description)
    with pytest.raises(HepmpmError, match="features"):
        load_tokenizer(out, reordered)
    with pytest.raises(HepmpmError, match="not a tokenizer folder"):
        load_tokenizer(tmp_path)


def test_interrupted_run_resumes(skim_dir, tmp_path, monkeypatch):
    config = load_tokenizer_config(
        "tiny", ["trainer.max_steps=80", "trainer.val_every_steps=40", "data.limit_val_jets=16"]
    )
    out = tmp_path / "tok"
    step = VQVAEModule.training_step

    def crash_at_step_50(self, batch, batch_idx):
        if self.global_step == 50:
            raise RuntimeError("node lost")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(VQVAEModule, "training_step", crash_at_step_50)
    with pytest.raises(RuntimeError, match="node lost"):
        run_tokenizer(config, skim_dir, out, show_progress=False)
    assert not out.exists()
    assert (staging_path(out) / "checkpoints" / "last.ckpt").is_file()
    monkeypatch.setattr(VQVAEModule, "training_step", step)
    with pytest.raises(HepmpmError, match="already holds a tokenizer run; add --resume"):
        run_tokenizer(config, skim_dir, out, show_progress=False)
    other = config.model_copy(update={"trainer": config.trainer.model_copy(update={"seed": 5})})
    seed_differs = r"config\.trainer\.seed = 0, this run has config\.trainer\.seed = 5"
    with pytest.raises(HepmpmError, match=seed_differs):
        run_tokenizer(other, skim_dir, out, show_progress=False, resume=True)
    run = run_tokenizer(config, skim_dir, out, show_progress=False, resume=True)
    assert run.resumed and run.metrics["steps"] == 80
    assert load_tokenizer(out).n_tokens == 64 and not staging_path(out).exists()


# ---------------------------------------------------------------------------- k-means


def test_kmeans_fit_and_tokens(kmeans_run, skim_mpm7id):
    tokenizer, metrics = kmeans_run.tokenizer, kmeans_run.metrics
    assert isinstance(tokenizer, KMeansTokenizer) and tokenizer.n_tokens == 32
    assert tokenizer.centroids.shape == (32, 7 + 8)  # 7 continuous + one-hot 8-class id
    assert metrics["fit"]["inertia"] > 0 and metrics["fit"]["particles"] > 10_000
    assert metrics["fit"]["usage"] == 1.0 and metrics["final"]["usage"] > 0.5
    assert 8 < metrics["final"]["perplexity"] <= 32
    batch = first_batch(skim_mpm7id)
    tokens = tokenizer.tokenize(batch.features, batch.mask)
    assert tokens.dtype == torch.long and (tokens[~batch.mask] == -1).all()
    assert torch.equal(tokenizer.tokenize(batch.features, batch.mask), tokens)
    # The nearest centroid, by brute force in float64.
    vectors = tokenizer.vectors(batch.features[batch.mask]).double().numpy()
    centroids = tokenizer.centroids.double().numpy()
    distances = ((vectors[:, None, :] - centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(tokens[batch.mask].numpy(), distances.argmin(1))


def test_kmeans_round_trip(kmeans_run, skim_mpm7id, skim_dir):
    loaded = load_tokenizer(kmeans_run.out, MPM7ID)
    batch = first_batch(skim_mpm7id, "test")
    assert torch.equal(
        loaded.tokenize(batch.features, batch.mask),
        kmeans_run.tokenizer.tokenize(batch.features, batch.mask),
    )
    with pytest.raises(HepmpmError, match="fitted on feature set 'mpm7id', the data is 'part17'"):
        load_tokenizer(kmeans_run.out, PART17)


def test_failed_fit_writes_nothing(skim_dir, tmp_path):
    config = load_tokenizer_config("tiny_kmeans", ["model.n_clusters=100000"])
    with pytest.raises(HepmpmError, match="needs at least 100000 particles"):
        run_tokenizer(config, skim_dir, tmp_path / "tok", show_progress=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- CLI, configs


def test_cli_errors_name_the_bad_key(skim_dir, tmp_path, capsys, tiny_vqvae):
    def run(*args):
        code = main(["tokenizer", "--data", str(skim_dir), "--out", str(tmp_path / "t"), *args])
        return code, capsys.readouterr().err

    code, err = run("--config", "tiny", "--set", "model.codebok_size=8")
    assert code == 2 and "unknown key 'model.codebok_size'" in err
    code, err = run("--config", "tiny", "--set", "trainer.max_steps=many")
    assert code == 2 and "key 'trainer.max_steps'" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("inherit: missing.yaml\n")
    code, err = run("--config", str(bad))
    assert code == 2 and "missing.yaml" in err
    bad.write_text("kind: vqvae\nmodel:\n  quantizer:\n    kmeans_init: 3\n")
    code, err = run("--config", str(bad))
    assert code == 2 and "model.quantizer.kmeans_init" in err and str(bad) in err
    code, err = run("--config", "huge")
    assert code == 2 and "unknown tokenizer config 'huge'" in err and "tiny_kmeans" in err
    code, err = run("--config", "tiny", "--set", "kind=bpe")
    assert code == 2 and "key 'kind'" in err
    # An existing tokenizer is never overwritten.
    code = main(
        ["tokenizer", "--config", "tiny", "--data", str(skim_dir), "--out", str(tiny_vqvae[0])]
    )
    assert code == 2 and "already holds a tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_packaged_configs():
    assert {"vqvae", "kmeans", "tiny", "tiny_kmeans"} <= set(packaged_configs("tokenizer"))
    vqvae = load_tokenizer_config("vqvae")
    assert vqvae.model.codebook_size == 512 and vqvae.model.latent_dim == 16  # MPMv1
    assert vqvae.model.quantizer.kmeans_init and vqvae.model.quantizer.threshold_ema_dead_code > 0
    assert load_tokenizer_config("kmeans").model.n_clusters == 512
    with pytest.raises(ConfigError, match=r"unknown key 'model\.quantizer\.dead_codes'"):
        load_tokenizer_config("vqvae", ["model.quantizer.dead_codes=1"])


def test_token_counts_by_hand():
    counts = TokenCounts(4)
    counts.update(torch.tensor([[0, 0, 1, -1], [1, -1, -1, -1]]))
    assert counts.total == 4 and counts.usage() == 0.5
    assert counts.perplexity() == pytest.approx(2.0)
    assert math.isnan(TokenCounts(3).perplexity())


def test_a_jet_limit_is_an_upper_bound(skim_dir, tmp_path, caplog):
    """A packaged limit larger than a small skim uses what there is, and says so."""
    config = load_tokenizer_config(
        "tiny_kmeans", ["data.limit_val_jets=100000", "data.limit_train_jets=100000"]
    )
    with caplog.at_level("WARNING"):
        run_tokenizer(config, skim_dir, tmp_path / "tok", show_progress=False)
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    assert "data.limit_val_jets = 100000, but split 'val'" in caplog.text
