"""weaver-core's ParT as a hepmpm tagger (:mod:`hepmpm.models.part`) and as a ``model: part``
fine-tuning arm, on a small real sample (QCD, W and top jets, Pythia 8, skimmed)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from conftest import generated_skim

from hepmpm.data.index import JetIndex
from hepmpm.data.loader import JetDataset, make_dataloader
from hepmpm.errors import ConfigError, HepmpmError
from hepmpm.evaluation.scoring import evaluate_tagger
from hepmpm.features import PART17
from hepmpm.models.part import PartConfig, ParTTagger
from hepmpm.models.store import load_run_tagger, load_tagger
from hepmpm.training.finetune import load_finetune_config, run_finetune
from hepmpm.weights import load_weights

pytest.importorskip("weaver.nn.model.ParticleTransformer")

CLASSES = ("QCD", "Wqq", "Tbqq")
LABELS = [0, 7, 8]  # their JetClass labels
#: A ParT small enough for seconds on a shared CPU.
SMALL = PartConfig(
    num_layers=2, embed_dims=[32, 32], pair_embed_dims=[16, 16], num_heads=4, num_cls_layers=1
)
SMALL_OVERRIDES = [
    "model=part",
    "part.num_layers=1",
    "part.embed_dims=[16]",
    "part.pair_embed_dims=[8]",
    "part.num_heads=2",
    "part.num_cls_layers=1",
]
FAST = [
    "data.pad_to=48",
    "data.batch_size=16",
    "trainer.val_every_steps=10",
    "trainer.val_batches=2",
    "trainer.log_every_steps=5",
    "trainer.cpu_threads=1",
]


@pytest.fixture(scope="module")
def skim(tmp_path_factory):
    """40 jets of each of QCD, Wqq, Tbqq (part17 skim)."""
    return generated_skim(tmp_path_factory, "part", CLASSES, jets=40, seed=13)


@pytest.fixture(scope="module")
def batch(skim):
    """One batch of 32 training jets, padded to the longest one."""
    dataset = JetDataset(JetIndex.from_skim(skim), "train", 32, labels=LABELS)
    return next(iter(make_dataloader(dataset)))


@pytest.fixture
def tagger():
    """A small ParT in evaluation mode, past weaver's 5 trimmer warm-up calls (after which its
    trimmer cuts padding: the path every later call takes)."""
    torch.manual_seed(0)
    model = ParTTagger(PART17, SMALL, len(CLASSES)).eval()
    features, mask = torch.randn(2, 6, PART17.n_features), torch.ones(2, 6, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(6):
            model(features, mask)
    return model


@torch.no_grad()
def test_forward_on_real_jets(tagger, batch):
    assert batch.mask.sum(1).min() < batch.mask.shape[1]  # some jets are padded
    logits, embedding = tagger(batch.features, batch.mask)
    assert logits.shape == (len(batch.labels), len(CLASSES)) and tagger.n_outputs == 3
    assert embedding.shape == (len(batch.labels), SMALL.embed_dims[-1])
    assert torch.isfinite(logits).all() and torch.isfinite(embedding).all()
    # The embedding is what the final layer reads.
    torch.testing.assert_close(tagger.classify(embedding), logits)


@torch.no_grad()
def test_permutation_and_padding_invariance(tagger, batch):
    features, mask = batch.features, batch.mask
    logits, embedding = tagger(features, mask)
    # Each jet's slots shuffled, padded ones among the real ones.
    generator = torch.Generator().manual_seed(1)
    order = torch.stack([torch.randperm(mask.shape[1], generator=generator) for _ in mask])
    shuffled, _ = tagger(features.gather(1, order[..., None].expand_as(features)),
                         mask.gather(1, order))  # fmt: skip
    torch.testing.assert_close(shuffled, logits, atol=1e-5, rtol=0)
    # More padded slots.
    n, _, f = features.shape
    padded = torch.cat([features, torch.zeros(n, 17, f)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(n, 17, dtype=torch.bool)], dim=1)
    more, more_embedding = tagger(padded, padded_mask)
    torch.testing.assert_close(more, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(more_embedding, embedding, atol=1e-5, rtol=0)


def test_part_arm_trains_and_writes_its_folder(skim, tmp_path):
    out = tmp_path / "part"
    metrics = run_finetune(
        "tiny", skim, out, mode="scratch", labels=60,
        overrides=[*SMALL_OVERRIDES, *FAST, "trainer.max_steps=20"], show_progress=False,
    )  # fmt: skip
    assert metrics["model"] == "part" and metrics["steps"] == 20
    assert metrics["test"]["class_names"] == list(CLASSES)
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    record = json.loads((out / "tagger.json").read_text())
    assert record["model"] == "part" and record["labels"] == LABELS
    assert json.loads((out / "run.json").read_text())["model"] == "part"
    # The saved weights are the tested ones.
    tagger = ParTTagger(PART17, PartConfig(**record["part"]), len(CLASSES))
    load_weights(tagger, out / "tagger.pt", out / "tagger.json")
    again = evaluate_tagger(tagger, skim, LABELS)
    assert again["accuracy"] == metrics["test"]["accuracy"]
    # A study tests it on other jets through the loader of either kind of run.
    loaded, loaded_record = load_run_tagger(out)
    assert isinstance(loaded, ParTTagger) and loaded_record == record
    assert evaluate_tagger(loaded, skim, LABELS)["accuracy"] == metrics["test"]["accuracy"]
    # hepmpm's tagger loader (and so export) refuses it, clearly.
    with pytest.raises(HepmpmError, match="ParT reference tagger"):
        load_tagger(out)


def test_part_is_scratch_only(skim, tmp_path):
    with pytest.raises(ConfigError, match="from scratch only, but mode is 'finetune'"):
        run_finetune("tiny", skim, tmp_path / "x", mode="finetune", overrides=["model=part"])
    assert not (tmp_path / "x").exists()
    # The packaged config: a scratch ParT of about the compact backbone's size.
    config = load_finetune_config("part_compact")
    assert config.model == "part" and config.mode == "scratch"
    assert config.part.num_layers == 4 and config.part.embed_dims[-1] == 64
    with pytest.raises(ConfigError, match="scratch only"):
        load_finetune_config("part_compact", mode="frozen")


def test_missing_weaver_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "weaver.nn.model.ParticleTransformer", None)
    with pytest.raises(HepmpmError, match="pip install weaver-core --no-deps"):
        ParTTagger(PART17, SMALL, 2)
